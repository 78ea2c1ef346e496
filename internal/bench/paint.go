package bench

import (
	"fmt"
	"math/rand/v2"

	"github.com/jezek/xgb"
	"github.com/jezek/xgb/xproto"
)

// paint covers a display with a busy picture (gradients and noise, harder
// to compress than a desktop) so the live benchmark encodes real work.
// The returned function closes the window.
func paint(display string) (func(), error) {
	c, err := xgb.NewConnDisplay(display)
	if err != nil {
		return nil, fmt.Errorf("paint %s: %w", display, err)
	}
	scr := xproto.Setup(c).DefaultScreen(c)
	w, h := int(scr.WidthInPixels), int(scr.HeightInPixels)
	win, _ := xproto.NewWindowId(c)
	if err := xproto.CreateWindowChecked(c, scr.RootDepth, win, scr.Root, 0, 0, uint16(w), uint16(h), 0,
		xproto.WindowClassInputOutput, scr.RootVisual, xproto.CwOverrideRedirect, []uint32{1}).Check(); err != nil {
		c.Close()
		return nil, err
	}
	_ = xproto.MapWindowChecked(c, win).Check()
	gc, _ := xproto.NewGcontextId(c)
	_ = xproto.CreateGCChecked(c, gc, xproto.Drawable(win), 0, nil).Check()
	rows := 40
	buf := make([]byte, w*rows*4)
	rng := rand.New(rand.NewPCG(1, 2))
	for y0 := 0; y0 < h; y0 += rows {
		n := min(rows, h-y0)
		for y := range n {
			for x := range w {
				i := (y*w + x) * 4
				noise := uint8(rng.IntN(64))
				buf[i] = uint8(x*255/w) ^ noise          // blue
				buf[i+1] = uint8((y0+y)*255/h) + noise/2 // green
				buf[i+2] = uint8((x+y0+y)%256) | noise   // red
			}
		}
		if err := xproto.PutImageChecked(c, xproto.ImageFormatZPixmap, xproto.Drawable(win), gc, uint16(w), uint16(n), 0, int16(y0), 0, scr.RootDepth, buf[:w*n*4]).Check(); err != nil {
			c.Close()
			return nil, err
		}
	}
	return func() { _ = xproto.DestroyWindowChecked(c, win).Check(); c.Close() }, nil
}
