package screen

import (
	"image"
	"image/color"
	"image/draw"
	"math/rand/v2"
	"testing"

	"github.com/lowkeyhq/lowkey/devicectl"
)

// page is a document-like picture: text-like marks in lines on white, a
// coloured band every so often, taller than the screen.
func page(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Rect, image.White, image.Point{}, draw.Src)
	rng := rand.New(rand.NewPCG(7, 9))
	for y := 20; y+14 < h; y += 22 {
		if y%440 == 20 {
			draw.Draw(img, image.Rect(0, y, w, y+18), &image.Uniform{color.RGBA{40, 90, 200, 255}}, image.Point{}, draw.Src)
			continue
		}
		for x := 40; x < w-80; {
			// A word: strokes that differ from one scanline to the next,
			// as glyphs do.
			word := 12 + rng.IntN(60)
			for r := 2; r < 13; r++ {
				for px := x; px < x+word; px++ {
					if rng.IntN(3) == 0 {
						img.Set(px, y+r, color.RGBA{20, 20, 30, 255})
					}
				}
			}
			x += word + 7
		}
	}
	return img
}

// view is the screen showing doc from row top.
func view(doc *image.RGBA, w, h, top int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Rect, doc, image.Pt(0, top), draw.Src)
	return img
}

// off is the mean difference per channel between what the viewer shows
// and the screen.
func off(a, b *image.RGBA) float64 {
	sum := 0
	for i := range a.Pix {
		d := int(a.Pix[i]) - int(b.Pix[i])
		sum += max(d, -d)
	}
	return float64(sum) / float64(len(a.Pix))
}

func size(u *devicectl.LiveUpdate) int { return len(u.Marshal()) }

// What a viewer composes from updates is the screen; a still screen costs
// nothing, typing costs a few tiles, a scroll is a copy and the strip that
// came into view, and tiles sent coarse are sent again fine once still.
func TestDeltaUpdates(t *testing.T) {
	const w, h = 1280, 720
	doc := page(w, 4000)
	var d Delta
	var pic *image.RGBA
	coarse := false
	var lastSeq uint32
	step := func(img *image.RGBA, q int, key bool) *devicectl.LiveUpdate {
		t.Helper()
		u, err := d.Next(img, nil, q, 80, key)
		if err != nil {
			t.Fatal(err)
		}
		if u == nil {
			// Nothing to send: the viewer's picture is already the screen.
			if diff := off(pic, img); diff > 4 && !coarse {
				t.Fatalf("nothing sent, and the viewer's picture is %.1f off the screen", diff)
			}
			return &devicectl.LiveUpdate{}
		}
		parsed, err := devicectl.ParseLiveUpdate(u.Marshal())
		if err != nil {
			t.Fatal(err)
		}
		// Updates sent are numbered one after another; one with nothing
		// in it is not sent.
		if u.Seq != lastSeq+1 {
			t.Fatalf("update %d after %d", u.Seq, lastSeq)
		}
		lastSeq = u.Seq
		if pic, err = parsed.Apply(pic); err != nil {
			t.Fatal(err)
		}
		limit := 4.0
		if coarse {
			limit = 12 // sent coarse on purpose, not all refined yet
		}
		if diff := off(pic, img); diff > limit {
			t.Fatalf("the viewer's picture is %.1f off the screen", diff)
		}
		return u
	}
	screen := view(doc, w, h, 0)
	key := step(screen, 80, false)
	if !key.Key || len(key.Ops) != 1 {
		t.Fatalf("the first update is not a whole frame: %+v", key.Ops)
	}
	t.Logf("whole frame: %d bytes", size(key))

	if u := step(screen, 80, false); len(u.Ops) != 0 {
		t.Fatalf("a still screen sent %d ops", len(u.Ops))
	}

	// Typing: a few characters and the caret.
	typed := view(doc, w, h, 0)
	draw.Draw(typed, image.Rect(300, 400, 340, 412), image.Black, image.Point{}, draw.Src)
	u := step(typed, 80, false)
	if len(u.Ops) == 0 || size(u)*20 > size(key) {
		t.Fatalf("typing sent %d ops, %d bytes (a whole frame is %d)", len(u.Ops), size(u), size(key))
	}
	t.Logf("typing: %d bytes", size(u))

	// Scrolling down the page, 24 px at a time, with a fixed header.
	header := func(img *image.RGBA) *image.RGBA {
		draw.Draw(img, image.Rect(0, 0, w, 40), &image.Uniform{color.RGBA{230, 230, 240, 255}}, image.Point{}, draw.Src)
		return img
	}
	step(header(view(doc, w, h, 100)), 80, true)
	total := 0
	for top := 124; top < 124+24*10; top += 24 {
		u := step(header(view(doc, w, h, top)), 80, false)
		if len(u.Ops) == 0 || !u.Ops[0].Copy || u.Ops[0].SrcY-u.Ops[0].Y != 24 {
			t.Fatalf("a 24 px scroll is not a copy: %d ops, the first copy=%v y=%d from %d", len(u.Ops), u.Ops[0].Copy, u.Ops[0].Y, u.Ops[0].SrcY)
		}
		total += size(u)
	}
	if total/10*5 > size(key) {
		t.Fatalf("a scroll step costs %d bytes, a whole frame %d", total/10, size(key))
	}
	t.Logf("scroll step: %d bytes", total/10)

	// Coarse while busy, fine once still.
	busy := header(view(doc, w, h, 1000))
	coarse = true
	step(busy, 30, false)
	u = step(busy, 80, false)
	if len(u.Ops) == 0 {
		t.Fatal("the still screen's coarse tiles were not sent again")
	}
	for i := 0; len(u.Ops) > 0 && i < 20; i++ {
		u = step(busy, 80, false)
	}
	coarse = false
	step(busy, 80, false)
	if len(u.Ops) != 0 {
		t.Fatal("refining never ended")
	}
	for _, q := range d.tileQ {
		if q != 80 {
			t.Fatalf("a tile left at quality %d", q)
		}
	}
}

// The pointer goes with an update when it moved, alone when nothing else
// changed, and not at all when it stayed.
func TestDeltaPointer(t *testing.T) {
	var d Delta
	img := page(320, 200)
	u, err := d.Next(img, &image.Point{X: 10, Y: 20}, 80, 80, false)
	if err != nil || !u.Key || u.Pointer == nil || *u.Pointer != (image.Point{X: 10, Y: 20}) {
		t.Fatalf("the first update: %v %+v", err, u)
	}
	if u, _ := d.Next(img, &image.Point{X: 10, Y: 20}, 80, 80, false); u != nil {
		t.Fatalf("nothing moved, and an update went: %+v", u)
	}
	u = d.PointerOnly(&image.Point{X: 30, Y: 40})
	if u == nil || u.Key || len(u.Ops) != 0 || *u.Pointer != (image.Point{X: 30, Y: 40}) || u.Seq != 2 {
		t.Fatalf("the pointer moved: %+v", u)
	}
	parsed, err := devicectl.ParseLiveUpdate(u.Marshal())
	if err != nil || *parsed.Pointer != *u.Pointer {
		t.Fatalf("read back: %v %+v", err, parsed)
	}
	if d.PointerOnly(&image.Point{X: 30, Y: 40}) != nil || d.PointerOnly(&image.Point{X: 999, Y: 40}) != nil {
		t.Fatal("a pointer that did not move, or off the screen, was sent")
	}
}

func TestParseLiveUpdateRefusesRegionsOutsideThePicture(t *testing.T) {
	for _, u := range []devicectl.LiveUpdate{
		{Width: 100, Height: 100, Ops: []devicectl.LiveOp{{X: 90, Y: 0, W: 20, H: 10, JPEG: []byte{1}}}},
		{Width: 100, Height: 100, Ops: []devicectl.LiveOp{{Copy: true, X: 0, Y: 0, W: 100, H: 50, SrcX: 0, SrcY: 60}}},
		{Width: 100, Height: 100, Ops: []devicectl.LiveOp{{X: 0, Y: 0, W: 0, H: 10}}},
		{Width: 100, Height: 100, Pointer: &image.Point{X: 100, Y: 5}},
	} {
		if _, err := devicectl.ParseLiveUpdate(u.Marshal()); err == nil {
			t.Errorf("an update with %+v was taken", u.Ops)
		}
	}
	good := devicectl.LiveUpdate{Width: 100, Height: 100, Seq: 3, Ops: []devicectl.LiveOp{{Copy: true, W: 100, H: 50, SrcY: 50}, {X: 10, Y: 10, W: 5, H: 5, JPEG: []byte("x")}}}
	got, err := devicectl.ParseLiveUpdate(good.Marshal())
	if err != nil || got.Seq != 3 || len(got.Ops) != 2 || got.Ops[0].SrcY != 50 || string(got.Ops[1].JPEG) != "x" {
		t.Fatalf("%v %+v", err, got)
	}
}
