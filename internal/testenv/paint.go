package testenv

import (
	"image"
	"image/color"
	"testing"

	"github.com/jezek/xgb"
	"github.com/jezek/xgb/xproto"
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
