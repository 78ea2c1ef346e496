package testenv

import (
	"image"
	"image/color"
	"math/rand/v2"
	"testing"

	"github.com/jezek/xgb"
	"github.com/jezek/xgb/xproto"
	"github.com/lowkeyhq/lowkey/devicectl/screen"
)

// Paint puts a window of one colour over r of display's screen, above
// everything (override-redirect), and returns a function that takes it
// away. It is how tests change what a screen shows.
func Paint(t testing.TB, display string, r image.Rectangle, c color.RGBA) func() {
	t.Helper()
	conn, err := xgb.NewConnDisplay(display)
	if err != nil {
		t.Fatalf("paint on %s: %v", display, err)
	}
	scr := xproto.Setup(conn).DefaultScreen(conn)
	win, err := xproto.NewWindowId(conn)
	if err != nil {
		t.Fatal(err)
	}
	pixel := uint32(c.R)<<16 | uint32(c.G)<<8 | uint32(c.B)
	if err := xproto.CreateWindowChecked(conn, scr.RootDepth, win, scr.Root, int16(r.Min.X), int16(r.Min.Y), uint16(r.Dx()), uint16(r.Dy()), 0,
		xproto.WindowClassInputOutput, scr.RootVisual, xproto.CwBackPixel|xproto.CwOverrideRedirect, []uint32{pixel, 1}).Check(); err != nil {
		t.Fatal(err)
	}
	if err := xproto.MapWindowChecked(conn, win).Check(); err != nil {
		t.Fatal(err)
	}
	// A round trip: the window is on the screen when Paint returns.
	if _, err := xproto.GetInputFocus(conn).Reply(); err != nil {
		t.Fatal(err)
	}
	done := false
	remove := func() {
		if done {
			return
		}
		done = true
		_ = xproto.DestroyWindowChecked(conn, win).Check()
		conn.Close()
	}
	t.Cleanup(remove)
	return remove
}

// Noise covers display's screen with a window and returns a function that
// fills it with a new busy picture (gradients under noise, about 190 KiB
// as a JPEG: hard to compress, as a video is) each time it is called.
func Noise(t testing.TB, display string) func(seed uint64) {
	t.Helper()
	conn, err := xgb.NewConnDisplay(display)
	if err != nil {
		t.Fatalf("paint on %s: %v", display, err)
	}
	t.Cleanup(conn.Close)
	scr := xproto.Setup(conn).DefaultScreen(conn)
	w, h := int(scr.WidthInPixels), int(scr.HeightInPixels)
	win, _ := xproto.NewWindowId(conn)
	if err := xproto.CreateWindowChecked(conn, scr.RootDepth, win, scr.Root, 0, 0, uint16(w), uint16(h), 0,
		xproto.WindowClassInputOutput, scr.RootVisual, xproto.CwOverrideRedirect, []uint32{1}).Check(); err != nil {
		t.Fatal(err)
	}
	if err := xproto.MapWindowChecked(conn, win).Check(); err != nil {
		t.Fatal(err)
	}
	gc, _ := xproto.NewGcontextId(conn)
	if err := xproto.CreateGCChecked(conn, gc, xproto.Drawable(win), 0, nil).Check(); err != nil {
		t.Fatal(err)
	}
	rows := 16
	buf := make([]byte, w*rows*4)
	return func(seed uint64) {
		rng := rand.New(rand.NewPCG(seed, 1))
		for y0 := 0; y0 < h; y0 += rows {
			n := min(rows, h-y0)
			for y := range n {
				for x := range w {
					i, noise := (y*w+x)*4, uint8(rng.IntN(64))
					buf[i] = uint8(x*255/w) ^ noise                        // blue
					buf[i+1] = uint8((y0+y)*255/h) + noise/2 + uint8(seed) // green
					buf[i+2] = uint8((x+y0+y)%256) | noise                 // red
				}
			}
			if err := xproto.PutImageChecked(conn, xproto.ImageFormatZPixmap, xproto.Drawable(win), gc, uint16(w), uint16(n), 0, int16(y0), 0, scr.RootDepth, buf[:w*n*4]).Check(); err != nil {
				t.Errorf("paint: %v", err)
				return
			}
		}
	}
}

// Capture is what display's screen shows now.
func Capture(t testing.TB, display string) *image.RGBA {
	t.Helper()
	s, err := screen.Open(display)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	img, err := s.Capture()
	if err != nil {
		t.Fatal(err)
	}
	return img
}
