//go:build linux

package screen_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"image"
	"image/jpeg"
	"strings"
	"testing"
	"time"

	"github.com/jezek/xgb"
	"github.com/jezek/xgb/xproto"

	"github.com/lowkeyhq/lowkey/devicectl"
	"github.com/lowkeyhq/lowkey/devicectl/screen"
	"github.com/lowkeyhq/lowkey/errcode"
	"github.com/lowkeyhq/lowkey/internal/testenv"
)

func xvfb(t testing.TB, w, h int) string { return testenv.Xvfb(t, w, h) }

// window makes a mapped window of one colour that reports key and button
// events, and gives it the input focus.
func window(t *testing.T, display string, x, y, w, h int, rgb uint32) (*xgb.Conn, xproto.Window) {
	t.Helper()
	c, err := xgb.NewConnDisplay(display)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	scr := xproto.Setup(c).DefaultScreen(c)
	wid, _ := xproto.NewWindowId(c)
	err = xproto.CreateWindowChecked(c, scr.RootDepth, wid, scr.Root, int16(x), int16(y), uint16(w), uint16(h), 0,
		xproto.WindowClassInputOutput, scr.RootVisual, xproto.CwBackPixel|xproto.CwOverrideRedirect|xproto.CwEventMask,
		[]uint32{rgb, 1, xproto.EventMaskKeyPress | xproto.EventMaskButtonPress | xproto.EventMaskExposure}).Check()
	if err != nil {
		t.Fatal(err)
	}
	if err := xproto.MapWindowChecked(c, wid).Check(); err != nil {
		t.Fatal(err)
	}
	if err := xproto.SetInputFocusChecked(c, xproto.InputFocusParent, wid, xproto.TimeCurrentTime).Check(); err != nil {
		t.Fatal(err)
	}
	// Wait until it is drawn.
	for {
		ev, err := c.WaitForEvent()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := ev.(xproto.ExposeEvent); ok {
			break
		}
	}
	return c, wid
}

func open(t *testing.T, display string) *screen.Screen {
	t.Helper()
	s, err := screen.Open(display)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func do(t *testing.T, s *screen.Screen, action string, args any) (map[string]any, []byte) {
	t.Helper()
	res, err := try(s, action, args)
	if err != nil {
		t.Fatalf("%s: %v", action, err)
	}
	var m map[string]any
	if err := json.Unmarshal(res.JSON, &m); err != nil {
		t.Fatal(err)
	}
	return m, res.Blob
}

func try(s *screen.Screen, action string, args any) (*devicectl.Result, error) {
	raw, _ := json.Marshal(args)
	return s.Do(context.Background(), action, raw)
}

func TestCaptureShowsWhatWasDrawn(t *testing.T) {
	d := xvfb(t, 1280, 720)
	window(t, d, 100, 120, 200, 150, 0xff0000)
	s := open(t, d)
	if !s.SharedMemory() {
		t.Fatal("capture on a local Xvfb does not use MIT-SHM")
	}
	m, _ := do(t, s, "screen.size", nil)
	if m["width"] != 1280.0 || m["height"] != 720.0 {
		t.Fatalf("size %v", m)
	}
	img, err := s.Capture()
	if err != nil {
		t.Fatal(err)
	}
	px := func(x, y int) [3]uint8 {
		o := img.PixOffset(x, y)
		return [3]uint8{img.Pix[o], img.Pix[o+1], img.Pix[o+2]}
	}
	if got := px(150, 200); got != [3]uint8{255, 0, 0} {
		t.Fatalf("inside the red window: %v", got)
	}
	if got := px(50, 50); got != [3]uint8{0, 0, 0} {
		t.Fatalf("outside the window: %v", got)
	}
	// The screenshot action scales to max_edge and says so.
	m, blob := do(t, s, "screen.screenshot", map[string]any{"max_edge": 640})
	dec, err := jpeg.Decode(bytes.NewReader(blob))
	if err != nil {
		t.Fatal(err)
	}
	if dec.Bounds().Dx() != 640 || dec.Bounds().Dy() != 360 || m["scale"] != 0.5 || m["screen_width"] != 1280.0 {
		t.Fatalf("screenshot %v, decoded %v", m, dec.Bounds())
	}
	r, g, b, _ := dec.At(75, 100).RGBA() // (150, 200) at half scale
	if r>>8 < 200 || g>>8 > 60 || b>>8 > 60 {
		t.Fatalf("scaled screenshot at the red window: %d %d %d", r>>8, g>>8, b>>8)
	}
	// Zoom on the window's corner: half red, half black.
	_, blob = do(t, s, "screen.zoom", map[string]any{"x": 80, "y": 100, "w": 40, "h": 40, "format": "png"})
	zi, _, err := image.Decode(bytes.NewReader(blob))
	if err != nil || zi.Bounds().Dx() != 40 {
		t.Fatalf("zoom: %v %v", err, zi)
	}
	if r, _, _, _ := zi.At(30, 30).RGBA(); r>>8 != 255 {
		t.Fatal("zoom: no red where the window is")
	}
	if r, _, _, _ := zi.At(5, 5).RGBA(); r>>8 != 0 {
		t.Fatal("zoom: red where the window is not")
	}
}

func TestClickMovesThePointerAndReachesTheWindow(t *testing.T) {
	d := xvfb(t, 1280, 720)
	c, _ := window(t, d, 0, 0, 1280, 720, 0x00ff00)
	s := open(t, d)
	m, _ := do(t, s, "screen.click", map[string]any{"x": 300, "y": 200})
	if m["x"] != 300.0 || m["y"] != 200.0 {
		t.Fatalf("after click: %v", m)
	}
	ev := nextEvent(t, c)
	bp, ok := ev.(xproto.ButtonPressEvent)
	if !ok || bp.Detail != 1 || bp.EventX != 300 || bp.EventY != 200 {
		t.Fatalf("window got %#v", ev)
	}
	// Coordinates from a half-size screenshot land where they should.
	m, _ = do(t, s, "screen.click", map[string]any{"x": 100, "y": 50, "scale": 0.5, "button": "right"})
	if m["x"] != 200.0 || m["y"] != 100.0 {
		t.Fatalf("scaled click: %v", m)
	}
	if bp, ok := nextEvent(t, c).(xproto.ButtonPressEvent); !ok || bp.Detail != 3 {
		t.Fatal("right click did not arrive")
	}
	m, _ = do(t, s, "screen.cursor_position", map[string]any{"scale": 0.5})
	if m["x"] != 200.0 || m["scaled_x"] != 100.0 {
		t.Fatalf("cursor: %v", m)
	}
	// Outside the screen is refused, in screen or scaled coordinates.
	for _, args := range []map[string]any{{"x": 1280, "y": 10}, {"x": -1, "y": 10}, {"x": 700, "y": 10, "scale": 0.5}} {
		_, err := try(s, "screen.click", args)
		var ae *errcode.Error
		if !errors.As(err, &ae) || ae.Code != "out_of_bounds" {
			t.Fatalf("click %v: %v", args, err)
		}
	}
	// A drag ends where its path does; scroll arrives as wheel buttons.
	m, _ = do(t, s, "screen.drag", map[string]any{"path": [][2]int{{10, 10}, {50, 60}, {400, 300}}})
	if m["x"] != 400.0 || m["y"] != 300.0 {
		t.Fatalf("drag: %v", m)
	}
	if bp, ok := nextEvent(t, c).(xproto.ButtonPressEvent); !ok || bp.EventX != 10 {
		t.Fatal("drag did not press at its start")
	}
	do(t, s, "screen.scroll", map[string]any{"dy": 2})
	for range 2 {
		if bp, ok := nextEvent(t, c).(xproto.ButtonPressEvent); !ok || bp.Detail != 5 {
			t.Fatal("scroll down did not arrive as button 5")
		}
	}
}

func TestTypedKeysReachTheWindow(t *testing.T) {
	d := xvfb(t, 1280, 720)
	c, _ := window(t, d, 0, 0, 1280, 720, 0x0000ff)
	s := open(t, d)
	keymap := keyboard(t, c)
	do(t, s, "screen.type", map[string]string{"text": "Hi, Ada!"})
	var got strings.Builder
	for got.Len() < len("Hi, Ada!") {
		kp, ok := nextEvent(t, c).(xproto.KeyPressEvent)
		if !ok {
			continue
		}
		syms := keymap[kp.Detail]
		if kp.State&xproto.ModMaskShift != 0 && len(syms) > 1 && syms[1] != 0 {
			got.WriteRune(rune(syms[1]))
		} else if len(syms) > 0 && syms[0] < 0xff00 {
			got.WriteRune(rune(syms[0]))
		}
	}
	if got.String() != "Hi, Ada!" {
		t.Fatalf("the window got %q", got.String())
	}
	do(t, s, "screen.key", map[string]string{"combo": "ctrl+a"})
	for {
		kp, ok := nextEvent(t, c).(xproto.KeyPressEvent)
		if ok && keymap[kp.Detail][0] == 'a' {
			if kp.State&xproto.ModMaskControl == 0 {
				t.Fatal("ctrl+a arrived without Control")
			}
			break
		}
	}
	if _, err := try(s, "screen.key", map[string]string{"combo": "hyper+q"}); err == nil {
		t.Fatal("an unknown key was accepted")
	}
}

func keyboard(t *testing.T, c *xgb.Conn) map[xproto.Keycode][]xproto.Keysym {
	setup := xproto.Setup(c)
	n := int(setup.MaxKeycode) - int(setup.MinKeycode) + 1
	rep, err := xproto.GetKeyboardMapping(c, setup.MinKeycode, byte(n)).Reply()
	if err != nil {
		t.Fatal(err)
	}
	per := int(rep.KeysymsPerKeycode)
	m := map[xproto.Keycode][]xproto.Keysym{}
	for i := range n {
		m[xproto.Keycode(int(setup.MinKeycode)+i)] = rep.Keysyms[i*per : (i+1)*per]
	}
	return m
}

func nextEvent(t *testing.T, c *xgb.Conn) xgb.Event {
	t.Helper()
	ch := make(chan xgb.Event, 1)
	go func() {
		ev, _ := c.WaitForEvent()
		ch <- ev
	}()
	select {
	case ev := <-ch:
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no X event arrived")
		return nil
	}
}

func TestNoDisplaySaysWhy(t *testing.T) {
	_, err := screen.Open(":999")
	if err == nil || !strings.Contains(err.Error(), "cannot open X display :999") {
		t.Fatalf("open of a missing display: %v", err)
	}
}
