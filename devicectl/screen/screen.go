package screen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"math"
	"strings"

	"github.com/lowkeyhq/lowkey/devicectl"
	"github.com/lowkeyhq/lowkey/errcode"
)

// ErrUnsupported is the answer on systems without a supported display.
var ErrUnsupported = errors.New("desktop control is not supported on this system yet")

// Display is what the actions need from a display system.
type Display interface {
	Size() (w, h int)
	Capture(r image.Rectangle) (*image.RGBA, error)
	Move(x, y int) error
	Button(button int, down bool) error
	Key(keysym uint32, down bool) error
	// Type types one character, whatever the keyboard layout.
	Type(r rune) error
	Pointer() (x, y int, err error)
	Close() error
}

// Screen serves screen.* actions on one display.
type Screen struct {
	d    Display
	turn chan struct{}
}

// New wraps an open display.
func New(d Display) *Screen { return &Screen{d: d, turn: make(chan struct{}, 1)} }

// Close closes the display.
func (s *Screen) Close() error { return s.d.Close() }

// Capture grabs the whole screen (the live stream uses it).
func (s *Screen) Capture() (*image.RGBA, error) {
	w, h := s.d.Size()
	return s.d.Capture(image.Rect(0, 0, w, h))
}

// Pointer is where the mouse pointer is on the screen.
func (s *Screen) Pointer() (image.Point, error) {
	x, y, err := s.d.Pointer()
	return image.Point{X: x, Y: y}, err
}

// SharedMemory reports whether capture uses MIT-SHM.
func (s *Screen) SharedMemory() bool {
	m, ok := s.d.(interface{ SHM() bool })
	return ok && m.SHM()
}

// Size is the screen's size in pixels.
func (s *Screen) Size() (int, int) { return s.d.Size() }

// Do runs one screen.* action.
func (s *Screen) Do(ctx context.Context, action string, args json.RawMessage) (*devicectl.Result, error) {
	select {
	case s.turn <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-s.turn }()
	switch strings.TrimPrefix(action, "screen.") {
	case "size":
		w, h := s.d.Size()
		return devicectl.JSONResult(map[string]int{"width": w, "height": h})
	case "screenshot":
		return s.screenshot(args)
	case "zoom":
		return s.zoom(args)
	case "cursor_position":
		return s.cursor(args)
	case "move":
		return s.move(args)
	case "click":
		return s.click(ctx, args)
	case "drag":
		return s.drag(ctx, args)
	case "scroll":
		return s.scroll(ctx, args)
	case "type":
		return s.typeText(ctx, args)
	case "key":
		return s.key(args)
	}
	return nil, errcode.New(errcode.UnknownAction, "this computer does not know the action %s", action)
}

// Point is a position in the coordinates of an image the caller saw:
// Scale is that image's scale (from screen.screenshot), 1 for screen
// pixels.
type point struct {
	X     *float64 `json:"x"`
	Y     *float64 `json:"y"`
	Scale float64  `json:"scale"`
}

// toScreen converts to screen pixels and checks the bounds.
func (s *Screen) toScreen(x, y, scale float64) (int, int, error) {
	if scale <= 0 {
		scale = 1
	}
	if scale > 16 {
		return 0, 0, errcode.New(errcode.BadArgs, "scale %g is not one a screenshot gives", scale)
	}
	sx, sy := int(math.Floor(x/scale+0.5)), int(math.Floor(y/scale+0.5))
	w, h := s.d.Size()
	if sx < 0 || sy < 0 || sx >= w || sy >= h {
		return 0, 0, errcode.New(errcode.OutOfBounds, "(%g, %g) at scale %g is (%d, %d) on a %dx%d screen: outside it", x, y, scale, sx, sy, w, h)
	}
	return sx, sy, nil
}

func (s *Screen) at(p point) (int, int, error) {
	if p.X == nil || p.Y == nil {
		return 0, 0, errcode.New(errcode.BadArgs, "give x and y")
	}
	return s.toScreen(*p.X, *p.Y, p.Scale)
}

type shot struct {
	Format       string  `json:"format"`
	Width        int     `json:"width"`
	Height       int     `json:"height"`
	Scale        float64 `json:"scale"`
	ScreenWidth  int     `json:"screen_width"`
	ScreenHeight int     `json:"screen_height"`
	Bytes        int     `json:"bytes"`
}

// Encode scales img so its longer edge is at most maxEdge and encodes it.
func Encode(img image.Image, maxEdge, quality int, format string) ([]byte, float64, image.Point, error) {
	b := img.Bounds()
	scale := 1.0
	if edge := max(b.Dx(), b.Dy()); maxEdge > 0 && edge > maxEdge {
		scale = float64(maxEdge) / float64(edge)
		img = Scale(img, scale)
	}
	var buf bytes.Buffer
	var err error
	switch format {
	case "png":
		err = (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&buf, img)
	default:
		if quality <= 0 || quality > 100 {
			quality = 75
		}
		err = jpeg.Encode(&buf, img, &jpeg.Options{Quality: quality})
	}
	return buf.Bytes(), scale, img.Bounds().Size(), err
}

func (s *Screen) encode(img image.Image, maxEdge, quality int, format string) (*devicectl.Result, error) {
	switch format {
	case "":
		format = "jpeg"
	case "jpeg", "png":
	case "jpg":
		format = "jpeg"
	default:
		return nil, errcode.New(errcode.BadArgs, "format is jpeg or png")
	}
	data, scale, size, err := Encode(img, maxEdge, quality, format)
	if err != nil {
		return nil, err
	}
	w, h := s.d.Size()
	meta, _ := json.Marshal(shot{Format: format, Width: size.X, Height: size.Y, Scale: scale, ScreenWidth: w, ScreenHeight: h, Bytes: len(data)})
	return &devicectl.Result{JSON: meta, Blob: data}, nil
}

func (s *Screen) screenshot(args json.RawMessage) (*devicectl.Result, error) {
	var a struct {
		MaxEdge int    `json:"max_edge"`
		Quality int    `json:"quality"`
		Format  string `json:"format"`
	}
	if err := devicectl.DecodeArgs(args, &a); err != nil {
		return nil, err
	}
	img, err := s.Capture()
	if err != nil {
		return nil, err
	}
	return s.encode(img, a.MaxEdge, a.Quality, a.Format)
}

func (s *Screen) zoom(args json.RawMessage) (*devicectl.Result, error) {
	var a struct {
		X, Y, W, H float64
		Scale      float64 `json:"scale"`
		MaxEdge    int     `json:"max_edge"`
		Quality    int     `json:"quality"`
		Format     string  `json:"format"`
	}
	if err := devicectl.DecodeArgs(args, &a); err != nil {
		return nil, err
	}
	if a.W <= 0 || a.H <= 0 {
		return nil, errcode.New(errcode.BadArgs, "zoom needs a region: x, y, w, h")
	}
	x0, y0, err := s.toScreen(a.X, a.Y, a.Scale)
	if err != nil {
		return nil, err
	}
	x1, y1, err := s.toScreen(a.X+a.W-1, a.Y+a.H-1, a.Scale)
	if err != nil {
		return nil, err
	}
	img, err := s.d.Capture(image.Rect(x0, y0, x1+1, y1+1))
	if err != nil {
		return nil, err
	}
	return s.encode(img, a.MaxEdge, a.Quality, a.Format)
}

func (s *Screen) cursor(args json.RawMessage) (*devicectl.Result, error) {
	var a struct {
		Scale float64 `json:"scale"`
	}
	if err := devicectl.DecodeArgs(args, &a); err != nil {
		return nil, err
	}
	x, y, err := s.d.Pointer()
	if err != nil {
		return nil, err
	}
	out := map[string]any{"x": x, "y": y}
	if a.Scale > 0 && a.Scale != 1 {
		out["scaled_x"], out["scaled_y"], out["scale"] = float64(x)*a.Scale, float64(y)*a.Scale, a.Scale
	}
	return devicectl.JSONResult(out)
}

func (s *Screen) moved(x, y int) (*devicectl.Result, error) {
	px, py, err := s.d.Pointer()
	if err != nil {
		return nil, err
	}
	return devicectl.JSONResult(map[string]int{"x": px, "y": py, "asked_x": x, "asked_y": y})
}

func (s *Screen) move(args json.RawMessage) (*devicectl.Result, error) {
	var a point
	if err := devicectl.DecodeArgs(args, &a); err != nil {
		return nil, err
	}
	x, y, err := s.at(a)
	if err != nil {
		return nil, err
	}
	if err := s.d.Move(x, y); err != nil {
		return nil, err
	}
	return s.moved(x, y)
}

var buttons = map[string]int{"": 1, "left": 1, "middle": 2, "right": 3, "back": 8, "forward": 9}

func (s *Screen) click(ctx context.Context, args json.RawMessage) (*devicectl.Result, error) {
	var a struct {
		point
		Button string   `json:"button"`
		Count  int      `json:"count"`
		Mods   []string `json:"mods"`
	}
	if err := devicectl.DecodeArgs(args, &a); err != nil {
		return nil, err
	}
	btn, ok := buttons[a.Button]
	if !ok {
		return nil, errcode.New(errcode.BadArgs, "button is left, middle, right, back or forward")
	}
	if a.Count <= 0 {
		a.Count = 1
	}
	if a.Count > 3 {
		return nil, errcode.New(errcode.BadArgs, "count is 1, 2 or 3")
	}
	mods, err := keysyms(a.Mods)
	if err != nil {
		return nil, err
	}
	var x, y int
	if a.X != nil || a.Y != nil {
		if x, y, err = s.at(a.point); err != nil {
			return nil, err
		}
		if err := s.d.Move(x, y); err != nil {
			return nil, err
		}
	} else if x, y, err = s.d.Pointer(); err != nil {
		return nil, err
	}
	err = s.holding(mods, func() error {
		for i := range a.Count {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := s.d.Button(btn, true); err != nil {
				return err
			}
			if err := s.d.Button(btn, false); err != nil {
				return err
			}
			_ = i
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s.moved(x, y)
}

// holding presses modifier keys around f, and always releases them.
func (s *Screen) holding(mods []uint32, f func() error) error {
	for i, m := range mods {
		if err := s.d.Key(m, true); err != nil {
			for _, r := range mods[:i] {
				_ = s.d.Key(r, false)
			}
			return err
		}
	}
	err := f()
	for i := len(mods) - 1; i >= 0; i-- {
		if rerr := s.d.Key(mods[i], false); err == nil {
			err = rerr
		}
	}
	return err
}

func (s *Screen) drag(ctx context.Context, args json.RawMessage) (*devicectl.Result, error) {
	var a struct {
		Path   [][2]float64 `json:"path"`
		Scale  float64      `json:"scale"`
		Button string       `json:"button"`
	}
	if err := devicectl.DecodeArgs(args, &a); err != nil {
		return nil, err
	}
	if len(a.Path) < 2 {
		return nil, errcode.New(errcode.BadArgs, "drag needs a path of at least two points")
	}
	btn, ok := buttons[a.Button]
	if !ok {
		return nil, errcode.New(errcode.BadArgs, "button is left, middle or right")
	}
	pts := make([][2]int, len(a.Path))
	for i, p := range a.Path {
		x, y, err := s.toScreen(p[0], p[1], a.Scale)
		if err != nil {
			return nil, err
		}
		pts[i] = [2]int{x, y}
	}
	if err := s.d.Move(pts[0][0], pts[0][1]); err != nil {
		return nil, err
	}
	if err := s.d.Button(btn, true); err != nil {
		return nil, err
	}
	var err error
	for _, p := range pts[1:] {
		if err = ctx.Err(); err != nil {
			break
		}
		if err = s.d.Move(p[0], p[1]); err != nil {
			break
		}
	}
	if rerr := s.d.Button(btn, false); err == nil {
		err = rerr
	}
	if err != nil {
		return nil, err
	}
	last := pts[len(pts)-1]
	return s.moved(last[0], last[1])
}

func (s *Screen) scroll(ctx context.Context, args json.RawMessage) (*devicectl.Result, error) {
	var a struct {
		point
		DX int `json:"dx"`
		DY int `json:"dy"`
	}
	if err := devicectl.DecodeArgs(args, &a); err != nil {
		return nil, err
	}
	if a.X != nil && a.Y != nil {
		x, y, err := s.at(a.point)
		if err != nil {
			return nil, err
		}
		if err := s.d.Move(x, y); err != nil {
			return nil, err
		}
	}
	if abs(a.DX) > 100 || abs(a.DY) > 100 {
		return nil, errcode.New(errcode.BadArgs, "scroll at most 100 notches at a time")
	}
	// X buttons 4/5 scroll up/down, 6/7 left/right, one notch a click.
	steps := []struct{ n, up, down int }{{a.DY, 4, 5}, {a.DX, 6, 7}}
	for _, st := range steps {
		btn := st.down
		if st.n < 0 {
			btn = st.up
		}
		for range abs(st.n) {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if err := s.d.Button(btn, true); err != nil {
				return nil, err
			}
			if err := s.d.Button(btn, false); err != nil {
				return nil, err
			}
		}
	}
	return devicectl.JSONResult(map[string]int{"scrolled_x": a.DX, "scrolled_y": a.DY})
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// MaxTypeChars bounds one screen.type.
const MaxTypeChars = 10000

func (s *Screen) typeText(ctx context.Context, args json.RawMessage) (*devicectl.Result, error) {
	var a struct {
		Text string `json:"text"`
	}
	if err := devicectl.DecodeArgs(args, &a); err != nil {
		return nil, err
	}
	n := 0
	for _, r := range a.Text {
		if n >= MaxTypeChars {
			return nil, errcode.New(errcode.TooLarge, "type at most %d characters at a time", MaxTypeChars)
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("stopped after %d characters: %w", n, err)
		}
		if err := s.d.Type(r); err != nil {
			return nil, err
		}
		n++
	}
	return devicectl.JSONResult(map[string]int{"typed_chars": n})
}

func (s *Screen) key(args json.RawMessage) (*devicectl.Result, error) {
	var a struct {
		Combo string `json:"combo"`
	}
	if err := devicectl.DecodeArgs(args, &a); err != nil {
		return nil, err
	}
	if a.Combo == "" {
		return nil, errcode.New(errcode.BadArgs, "key needs a combo, like Return or ctrl+c")
	}
	// xdotool style: "ctrl+shift+t"; several combos separated by spaces.
	for _, combo := range strings.Fields(a.Combo) {
		parts := strings.Split(combo, "+")
		syms, err := keysyms(parts)
		if err != nil {
			return nil, err
		}
		last := syms[len(syms)-1]
		err = s.holding(syms[:len(syms)-1], func() error {
			if err := s.d.Key(last, true); err != nil {
				return err
			}
			return s.d.Key(last, false)
		})
		if err != nil {
			return nil, err
		}
	}
	return devicectl.JSONResult(map[string]string{"pressed": a.Combo})
}
