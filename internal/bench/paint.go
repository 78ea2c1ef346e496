package bench

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"math/rand/v2"
	"strings"

	"github.com/jezek/xgb"
	"github.com/jezek/xgb/xproto"
	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// scene is a desktop the live benchmark watches: a window over the whole
// display showing a long page of text (headings, paragraphs, a coloured
// rule now and then) that can be scrolled, and a line a person types
// into.
type scene struct {
	c      *xgb.Conn
	win    xproto.Window
	gc     xproto.Gcontext
	depth  byte
	w, h   int
	doc    *image.RGBA
	top    int
	typed  int
	buf    []byte
	face   font.Face
	typing string
}

// paint opens the scene on display, showing the top of the page.
func paint(display string) (*scene, error) {
	c, err := xgb.NewConnDisplay(display)
	if err != nil {
		return nil, fmt.Errorf("paint %s: %w", display, err)
	}
	scr := xproto.Setup(c).DefaultScreen(c)
	s := &scene{c: c, depth: scr.RootDepth, w: int(scr.WidthInPixels), h: int(scr.HeightInPixels), face: basicfont.Face7x13}
	s.win, _ = xproto.NewWindowId(c)
	if err := xproto.CreateWindowChecked(c, scr.RootDepth, s.win, scr.Root, 0, 0, uint16(s.w), uint16(s.h), 0,
		xproto.WindowClassInputOutput, scr.RootVisual, xproto.CwOverrideRedirect, []uint32{1}).Check(); err != nil {
		c.Close()
		return nil, err
	}
	if err := xproto.MapWindowChecked(c, s.win).Check(); err != nil {
		c.Close()
		return nil, err
	}
	s.gc, _ = xproto.NewGcontextId(c)
	if err := xproto.CreateGCChecked(c, s.gc, xproto.Drawable(s.win), 0, nil).Check(); err != nil {
		c.Close()
		return nil, err
	}
	s.doc = document(s.w, 6*s.h, s.face)
	s.typing = "The quick brown fox jumps over the lazy dog; a person types a note while the agent works. "
	return s, s.scroll(0)
}

// words of the page's text.
var words = strings.Fields(`the box runs agent sessions with a real shell and the credentials of the box people
chat with agents in a web app computers the owner pairs run a companion an agent can drive that computer's
browser and screen only while the conversation's toggle is on pairing is done once with a short code and
both sides keep pinned keys after that`)

// document renders a page of text w wide and h tall.
func document(w, h int, face font.Face) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Rect, image.White, image.Point{}, draw.Src)
	rng := rand.New(rand.NewPCG(3, 5))
	d := &font.Drawer{Dst: img, Face: face}
	margin, line := 120, 18
	for y := 60; y < h-line; {
		if rng.IntN(12) == 0 {
			// A heading with a rule under it.
			d.Src = image.NewUniform(color.RGBA{20, 60, 160, 255})
			d.Dot = fixed.P(margin, y)
			d.DrawString(strings.ToUpper(words[rng.IntN(len(words))] + " " + words[rng.IntN(len(words))]))
			draw.Draw(img, image.Rect(margin, y+6, w-margin, y+8), image.NewUniform(color.RGBA{200, 210, 230, 255}), image.Point{}, draw.Src)
			y += 2 * line
			continue
		}
		d.Src = image.NewUniform(color.RGBA{30, 30, 35, 255})
		for l := 4 + rng.IntN(6); l > 0 && y < h-line; l-- {
			var b strings.Builder
			for b.Len() < (w-2*margin)/7-12 {
				b.WriteString(words[rng.IntN(len(words))] + " ")
			}
			d.Dot = fixed.P(margin, y)
			d.DrawString(b.String())
			y += line
		}
		y += line
	}
	return img
}

// scroll shows the page from row top (the whole window is drawn again, as
// a browser does when a page scrolls).
func (s *scene) scroll(top int) error {
	s.top = top % (s.doc.Rect.Dy() - s.h)
	return s.put(s.doc, image.Rect(0, s.top, s.w, s.top+s.h), 0, 0)
}

// typeNext types the next character of the note into a box mid-screen,
// with a caret after it.
func (s *scene) typeNext() error {
	box := image.Rect(200, s.h/2-20, s.w-200, s.h/2+20)
	if s.typed == 0 || s.typed*7 > box.Dx()-40 {
		// A fresh line: the box, empty.
		img := image.NewRGBA(box)
		draw.Draw(img, box, image.NewUniform(color.RGBA{248, 248, 252, 255}), image.Point{}, draw.Src)
		draw.Draw(img, image.Rect(box.Min.X, box.Max.Y-2, box.Max.X, box.Max.Y), image.NewUniform(color.RGBA{90, 120, 200, 255}), image.Point{}, draw.Src)
		if err := s.put(img, box, box.Min.X, box.Min.Y); err != nil {
			return err
		}
		s.typed = 0
	}
	// The character and the caret, in a cell of their own.
	x := box.Min.X + 12 + s.typed*7
	cell := image.Rect(x, box.Min.Y+8, x+9, box.Max.Y-8)
	img := image.NewRGBA(cell)
	draw.Draw(img, cell, image.NewUniform(color.RGBA{248, 248, 252, 255}), image.Point{}, draw.Src)
	d := &font.Drawer{Dst: img, Face: s.face, Src: image.Black, Dot: fixed.P(x, box.Min.Y+25)}
	d.DrawString(string(s.typing[s.typed%len(s.typing)]))
	draw.Draw(img, image.Rect(x+7, cell.Min.Y, x+8, cell.Max.Y), image.Black, image.Point{}, draw.Src)
	if s.typed > 0 {
		// Take the caret off the character before.
		prev := image.Rect(x-1, cell.Min.Y, x, cell.Max.Y)
		pimg := image.NewRGBA(prev)
		draw.Draw(pimg, prev, image.NewUniform(color.RGBA{248, 248, 252, 255}), image.Point{}, draw.Src)
		if err := s.put(pimg, prev, prev.Min.X, prev.Min.Y); err != nil {
			return err
		}
	}
	s.typed++
	return s.put(img, cell, cell.Min.X, cell.Min.Y)
}

// put draws r of img at x, y of the window.
func (s *scene) put(img *image.RGBA, r image.Rectangle, x, y int) error {
	w := r.Dx()
	rows := max(1, 64<<10/(w*4)) // stay under the request size X allows
	for y0 := r.Min.Y; y0 < r.Max.Y; y0 += rows {
		n := min(rows, r.Max.Y-y0)
		if cap(s.buf) < w*n*4 {
			s.buf = make([]byte, w*n*4)
		}
		buf := s.buf[:w*n*4]
		for row := range n {
			src := img.Pix[img.PixOffset(r.Min.X, y0+row):]
			for i := range w {
				// RGBA to the server's BGRX.
				buf[(row*w+i)*4], buf[(row*w+i)*4+1], buf[(row*w+i)*4+2] = src[i*4+2], src[i*4+1], src[i*4]
			}
		}
		if err := xproto.PutImageChecked(s.c, xproto.ImageFormatZPixmap, xproto.Drawable(s.win), s.gc, uint16(w), uint16(n),
			int16(x), int16(y+y0-r.Min.Y), 0, s.depth, buf).Check(); err != nil {
			return err
		}
	}
	return nil
}

func (s *scene) close() {
	_ = xproto.DestroyWindowChecked(s.c, s.win).Check()
	s.c.Close()
}
