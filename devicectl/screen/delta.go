package screen

import (
	"bytes"
	"hash/maphash"
	"image"
	"image/draw"
	"image/jpeg"

	"github.com/lowkeyhq/lowkey/devicectl"
)

// Delta turns captured frames into live updates: the first (and any asked
// for) a whole frame, then only what changed since the last one sent: a
// scroll found in it becomes a copy of the region that moved, and the
// tiles still different are sent as JPEG, neighbours joined into one
// rectangle. Once the screen is still, tiles last sent at a lower quality
// than asked for are sent again at that quality, a few at a time.
type Delta struct {
	prev       *image.RGBA
	prevRows   []uint64
	seq        uint32
	cols, rows int
	// tileQ is the quality each tile was last sent at.
	tileQ []int
	seed  maphash.Seed
	// pointer is the last pointer position sent (nil: none yet).
	pointer *image.Point
}

// Tile is the side of the squares changes are found in.
const Tile = 32

// refineTiles bounds the tiles re-sent at full quality in one still frame.
const refineTiles = 96

// Next is the update that takes a viewer from the last frame to img, with
// new tiles at quality; target is the quality still tiles are brought up
// to; pointer (nil: unknown) is where the mouse pointer is. Nil means
// nothing changed: there is nothing to send.
func (d *Delta) Next(img *image.RGBA, pointer *image.Point, quality, target int, key bool) (*devicectl.LiveUpdate, error) {
	img = atOrigin(img)
	w, h := img.Rect.Dx(), img.Rect.Dy()
	if d.seed == (maphash.Seed{}) {
		d.seed = maphash.MakeSeed()
	}
	rows := d.rowHashes(img)
	u := &devicectl.LiveUpdate{Width: w, Height: h, Seq: d.seq + 1}
	if err := d.next(u, img, rows, quality, target, key); err != nil {
		return nil, err
	}
	return d.finish(u, pointer), nil
}

// PointerOnly is an update that moves the pointer, nil when it has not
// moved (or no frame was sent yet).
func (d *Delta) PointerOnly(pointer *image.Point) *devicectl.LiveUpdate {
	if d.prev == nil {
		return nil
	}
	return d.finish(&devicectl.LiveUpdate{Width: d.prev.Rect.Dx(), Height: d.prev.Rect.Dy(), Seq: d.seq + 1}, pointer)
}

// finish adds the pointer where it moved and numbers an update that goes
// out; one that carries nothing is nil, and takes no number.
func (d *Delta) finish(u *devicectl.LiveUpdate, pointer *image.Point) *devicectl.LiveUpdate {
	if pointer != nil && (u.Key || d.pointer == nil || *d.pointer != *pointer) &&
		pointer.X >= 0 && pointer.Y >= 0 && pointer.X < u.Width && pointer.Y < u.Height {
		p := *pointer
		u.Pointer, d.pointer = &p, &p
	}
	if !u.Key && len(u.Ops) == 0 && u.Pointer == nil {
		return nil
	}
	d.seq++
	return u
}

func (d *Delta) next(u *devicectl.LiveUpdate, img *image.RGBA, rows []uint64, quality, target int, key bool) error {
	w, h := u.Width, u.Height
	if key || d.prev == nil || d.prev.Rect != img.Rect {
		u.Key = true
		d.cols, d.rows = (w+Tile-1)/Tile, (h+Tile-1)/Tile
		d.tileQ = make([]int, d.cols*d.rows)
		if err := d.tile(u, img, image.Rect(0, 0, w, h), quality); err != nil {
			return err
		}
		d.keep(img, rows)
		return nil
	}
	same := true
	for y := range rows {
		if rows[y] != d.prevRows[y] {
			same = false
			break
		}
	}
	if same {
		return d.refine(u, img, target)
	}
	if dy, lo, hi := findScroll(d.prevRows, rows); dy != 0 {
		// Rows lo..hi of the new frame are rows lo+dy..hi+dy of the last.
		u.Ops = append(u.Ops, devicectl.LiveOp{Copy: true, X: 0, Y: lo, W: w, H: hi - lo, SrcX: 0, SrcY: lo + dy})
		draw.Draw(d.prev, image.Rect(0, lo, w, hi), d.prev, image.Pt(0, lo+dy), draw.Src)
	}
	changed := d.changedTiles(img)
	n := 0
	for _, c := range changed {
		if c {
			n++
		}
	}
	if n*2 > len(changed) {
		// Most of the screen: one picture of all that changed.
		var box image.Rectangle
		for i, c := range changed {
			if c {
				box = box.Union(d.tileRect(i, w, h))
			}
		}
		if err := d.tile(u, img, box, quality); err != nil {
			return err
		}
	} else {
		for _, r := range joinTiles(changed, d.cols, d.rows) {
			if err := d.tile(u, img, image.Rect(r.Min.X*Tile, r.Min.Y*Tile, min(r.Max.X*Tile, w), min(r.Max.Y*Tile, h)), quality); err != nil {
				return err
			}
		}
	}
	d.keep(img, rows)
	return nil
}

// refine re-sends, into a still frame's update, tiles last sent below
// target.
func (d *Delta) refine(u *devicectl.LiveUpdate, img *image.RGBA, target int) error {
	low := make([]bool, len(d.tileQ))
	n := 0
	for i, q := range d.tileQ {
		if q < target && n < refineTiles {
			low[i] = true
			n++
		}
	}
	if n == 0 {
		return nil
	}
	w, h := img.Rect.Dx(), img.Rect.Dy()
	for _, r := range joinTiles(low, d.cols, d.rows) {
		if err := d.tile(u, img, image.Rect(r.Min.X*Tile, r.Min.Y*Tile, min(r.Max.X*Tile, w), min(r.Max.Y*Tile, h)), target); err != nil {
			return err
		}
	}
	return nil
}

// maxUpdate bounds one update; a picture that would make it larger is
// sent coarser (and refined once still).
const maxUpdate = devicectl.MaxLiveFrame / 2

// tile adds r of img as a JPEG and notes the quality of its tiles.
func (d *Delta) tile(u *devicectl.LiveUpdate, img *image.RGBA, r image.Rectangle, quality int) error {
	used := 0
	for _, op := range u.Ops {
		used += len(op.JPEG) + 13
	}
	var buf bytes.Buffer
	for {
		buf.Reset()
		if err := jpeg.Encode(&buf, img.SubImage(r), &jpeg.Options{Quality: quality}); err != nil {
			return err
		}
		if used+buf.Len() <= maxUpdate || quality <= 5 {
			break
		}
		quality /= 2
	}
	u.Ops = append(u.Ops, devicectl.LiveOp{X: r.Min.X, Y: r.Min.Y, W: r.Dx(), H: r.Dy(), JPEG: buf.Bytes()})
	for ty := r.Min.Y / Tile; ty < (r.Max.Y+Tile-1)/Tile; ty++ {
		for tx := r.Min.X / Tile; tx < (r.Max.X+Tile-1)/Tile; tx++ {
			d.tileQ[ty*d.cols+tx] = quality
		}
	}
	return nil
}

func (d *Delta) tileRect(i, w, h int) image.Rectangle {
	tx, ty := i%d.cols, i/d.cols
	return image.Rect(tx*Tile, ty*Tile, min((tx+1)*Tile, w), min((ty+1)*Tile, h))
}

// keep makes img the last frame sent.
func (d *Delta) keep(img *image.RGBA, rows []uint64) {
	if d.prev == nil || d.prev.Rect != img.Rect {
		d.prev = image.NewRGBA(img.Rect)
	}
	w := img.Rect.Dx() * 4
	for y := range img.Rect.Dy() {
		copy(d.prev.Pix[y*d.prev.Stride:y*d.prev.Stride+w], img.Pix[y*img.Stride:y*img.Stride+w])
	}
	d.prevRows = rows
}

// changedTiles compares img with the last frame (as moved by a scroll),
// tile by tile.
func (d *Delta) changedTiles(img *image.RGBA) []bool {
	out := make([]bool, d.cols*d.rows)
	w, h := img.Rect.Dx(), img.Rect.Dy()
	for ty := range d.rows {
		for y := ty * Tile; y < min((ty+1)*Tile, h); y++ {
			a := img.Pix[y*img.Stride : y*img.Stride+w*4]
			b := d.prev.Pix[y*d.prev.Stride : y*d.prev.Stride+w*4]
			if bytes.Equal(a, b) {
				continue
			}
			for tx := range d.cols {
				i := ty*d.cols + tx
				if out[i] {
					continue
				}
				x0, x1 := tx*Tile*4, min((tx+1)*Tile, w)*4
				if !bytes.Equal(a[x0:x1], b[x0:x1]) {
					out[i] = true
				}
			}
		}
	}
	return out
}

func (d *Delta) rowHashes(img *image.RGBA) []uint64 {
	w, h := img.Rect.Dx(), img.Rect.Dy()
	out := make([]uint64, h)
	for y := range h {
		out[y] = maphash.Bytes(d.seed, img.Pix[y*img.Stride:y*img.Stride+w*4])
	}
	return out
}

// findScroll finds how far the picture moved up (dy > 0) or down: rows
// seen once in the last frame vote for the shift that brings them to
// where they are now. It returns the shift and the rows of the new frame
// it covers, or 0 when nothing scrolled.
func findScroll(prev, cur []uint64) (dy, lo, hi int) {
	seen := make(map[uint64]int, len(prev))
	for y, hs := range prev {
		if _, ok := seen[hs]; ok {
			seen[hs] = -1 // repeated (a blank line): says nothing
		} else {
			seen[hs] = y
		}
	}
	votes := map[int]int{}
	for y, hs := range cur {
		if hs == prev[y] {
			continue
		}
		if py, ok := seen[hs]; ok && py >= 0 {
			votes[py-y]++
		}
	}
	best, most := 0, 0
	for v, n := range votes {
		if n > most || (n == most && abs(v) < abs(best)) {
			best, most = v, n
		}
	}
	// A scroll moves many distinct rows together.
	if most < 8 || most*8 < len(cur) {
		return 0, 0, 0
	}
	lo, hi = -1, -1
	for y := range cur {
		if y+best >= 0 && y+best < len(prev) && cur[y] == prev[y+best] && cur[y] != prev[y] {
			if lo < 0 {
				lo = y
			}
			hi = y + 1
		}
	}
	if lo < 0 {
		return 0, 0, 0
	}
	return best, lo, hi
}

// joinTiles turns marked tiles into rectangles (in tiles): runs along a
// row, then runs of the same span down the rows.
func joinTiles(marked []bool, cols, rows int) []image.Rectangle {
	var done []image.Rectangle
	open := map[[2]int]image.Rectangle{}
	for ty := range rows {
		next := map[[2]int]image.Rectangle{}
		for tx := 0; tx < cols; {
			if !marked[ty*cols+tx] {
				tx++
				continue
			}
			x0 := tx
			for tx < cols && marked[ty*cols+tx] {
				tx++
			}
			span := [2]int{x0, tx}
			if r, ok := open[span]; ok {
				r.Max.Y = ty + 1
				next[span] = r
				delete(open, span)
			} else {
				next[span] = image.Rect(x0, ty, tx, ty+1)
			}
		}
		for _, r := range open {
			done = append(done, r)
		}
		open = next
	}
	for _, r := range open {
		done = append(done, r)
	}
	return done
}

// atOrigin is img with its bounds starting at 0, 0.
func atOrigin(img *image.RGBA) *image.RGBA {
	if img.Rect.Min == (image.Point{}) {
		return img
	}
	return &image.RGBA{Pix: img.Pix[img.PixOffset(img.Rect.Min.X, img.Rect.Min.Y):], Stride: img.Stride,
		Rect: image.Rect(0, 0, img.Rect.Dx(), img.Rect.Dy())}
}
