//go:build linux

package screen

import (
	"errors"
	"fmt"
	"image"
	"io"
	"log"
	"os"
	"sync"

	"github.com/jezek/xgb"
	"github.com/jezek/xgb/shm"
	"github.com/jezek/xgb/xproto"
	"github.com/jezek/xgb/xtest"
	"github.com/lowkeyhq/lowkey/errcode"
	"golang.org/x/sys/unix"
)

// x11 is an X display: capture through MIT-SHM when the server shares
// memory with us (a local display), GetImage otherwise; input through XTEST.
type x11 struct {
	conn   *xgb.Conn
	root   xproto.Window
	w, h   int
	depth  byte
	minKey xproto.Keycode
	maxKey xproto.Keycode

	mu     sync.Mutex
	keymap map[uint32]keyPos // keysym → where it is
	spare  xproto.Keycode    // a keycode with nothing on it, for other characters
	per    int               // keysyms per keycode

	shmSeg  shm.Seg
	shmID   int
	shmData []byte
}

type keyPos struct {
	code  xproto.Keycode
	shift bool
}

func init() {
	// xgb logs to stderr by default; errors reach callers instead.
	xgb.Logger = log.New(io.Discard, "", 0)
}

// Open connects to an X display (":0"; "" means $DISPLAY).
func Open(display string) (*Screen, error) {
	if display == "" {
		display = os.Getenv("DISPLAY")
	}
	if display == "" {
		return nil, errors.New("no X display: DISPLAY is not set (pass --display :N)")
	}
	conn, err := xgb.NewConnDisplay(display)
	if err != nil {
		return nil, fmt.Errorf("cannot open X display %s: %w", display, err)
	}
	if err := xtest.Init(conn); err != nil {
		conn.Close()
		return nil, fmt.Errorf("X display %s has no XTEST extension, so input cannot be sent: %w", display, err)
	}
	setup := xproto.Setup(conn)
	scr := setup.DefaultScreen(conn)
	x := &x11{conn: conn, root: scr.Root, w: int(scr.WidthInPixels), h: int(scr.HeightInPixels), depth: scr.RootDepth,
		minKey: setup.MinKeycode, maxKey: setup.MaxKeycode}
	if err := x.loadKeymap(); err != nil {
		conn.Close()
		return nil, err
	}
	if os.Getenv("LOWKEY_NO_SHM") == "" {
		x.initSHM()
	}
	return New(x), nil
}

// initSHM sets up a shared segment the size of the screen; without it,
// capture falls back to GetImage over the socket.
func (x *x11) initSHM() {
	if shm.Init(x.conn) != nil {
		return
	}
	size := x.w * x.h * 4
	id, err := unix.SysvShmGet(unix.IPC_PRIVATE, size, unix.IPC_CREAT|0o600)
	if err != nil {
		return
	}
	data, err := unix.SysvShmAttach(id, 0, 0)
	if err != nil {
		_, _ = unix.SysvShmCtl(id, unix.IPC_RMID, nil)
		return
	}
	seg, err := shm.NewSegId(x.conn)
	if err == nil {
		err = shm.AttachChecked(x.conn, seg, uint32(id), false).Check()
	}
	// Marked for removal now: it goes away when both sides detach, even
	// if this process dies.
	_, _ = unix.SysvShmCtl(id, unix.IPC_RMID, nil)
	if err != nil {
		_ = unix.SysvShmDetach(data)
		return
	}
	x.shmSeg, x.shmID, x.shmData = seg, id, data
}

func (x *x11) Size() (int, int) { return x.w, x.h }

// SHM reports whether capture goes through shared memory.
func (x *x11) SHM() bool { return x.shmData != nil }

func (x *x11) Capture(r image.Rectangle) (*image.RGBA, error) {
	r = r.Intersect(image.Rect(0, 0, x.w, x.h))
	if r.Empty() {
		return nil, errcode.New(errcode.OutOfBounds, "the region is outside the screen")
	}
	if x.depth != 24 && x.depth != 32 {
		return nil, fmt.Errorf("the display's depth is %d bits; only 24 and 32 can be captured", x.depth)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	var pix []byte
	if x.shmData != nil {
		_, err := shm.GetImage(x.conn, xproto.Drawable(x.root), int16(r.Min.X), int16(r.Min.Y), uint16(r.Dx()), uint16(r.Dy()),
			0xffffffff, xproto.ImageFormatZPixmap, x.shmSeg, 0).Reply()
		if err != nil {
			return nil, fmt.Errorf("screen capture: %w", err)
		}
		pix = x.shmData[:r.Dx()*r.Dy()*4]
	} else {
		rep, err := xproto.GetImage(x.conn, xproto.ImageFormatZPixmap, xproto.Drawable(x.root), int16(r.Min.X), int16(r.Min.Y),
			uint16(r.Dx()), uint16(r.Dy()), 0xffffffff).Reply()
		if err != nil {
			return nil, fmt.Errorf("screen capture: %w", err)
		}
		pix = rep.Data
	}
	img := image.NewRGBA(image.Rect(0, 0, r.Dx(), r.Dy()))
	// The server's pixels are B, G, R, x.
	dst := img.Pix
	for i := 0; i+3 < len(pix) && i+3 < len(dst); i += 4 {
		dst[i], dst[i+1], dst[i+2], dst[i+3] = pix[i+2], pix[i+1], pix[i], 0xff
	}
	return img, nil
}

func (x *x11) Move(px, py int) error {
	return xtest.FakeInputChecked(x.conn, xproto.MotionNotify, 0, 0, x.root, int16(px), int16(py), 0).Check()
}

func (x *x11) Button(b int, down bool) error {
	t := byte(xproto.ButtonRelease)
	if down {
		t = xproto.ButtonPress
	}
	return xtest.FakeInputChecked(x.conn, t, byte(b), 0, x.root, 0, 0, 0).Check()
}

func (x *x11) keycode(code xproto.Keycode, down bool) error {
	t := byte(xproto.KeyRelease)
	if down {
		t = xproto.KeyPress
	}
	return xtest.FakeInputChecked(x.conn, t, byte(code), 0, x.root, 0, 0, 0).Check()
}

func (x *x11) Key(sym uint32, down bool) error {
	x.mu.Lock()
	pos, ok := x.keymap[sym]
	x.mu.Unlock()
	if !ok {
		return errcode.New(errcode.BadArgs, "the keyboard has no key for keysym 0x%x", sym)
	}
	return x.keycode(pos.code, down)
}

const shiftL = 0xffe1

// Type presses the key for r, with Shift where the layout needs it; a
// character the layout lacks is put on a spare keycode for the moment.
func (x *x11) Type(r rune) error {
	sym := keysymOf(r)
	x.mu.Lock()
	pos, ok := x.keymap[sym]
	x.mu.Unlock()
	if !ok {
		return x.typeSpare(sym)
	}
	if pos.shift {
		if err := x.Key(shiftL, true); err != nil {
			return err
		}
		defer x.Key(shiftL, false)
	}
	if err := x.keycode(pos.code, true); err != nil {
		return err
	}
	return x.keycode(pos.code, false)
}

func (x *x11) typeSpare(sym uint32) error {
	x.mu.Lock()
	spare, per := x.spare, x.per
	x.mu.Unlock()
	if spare == 0 {
		return errcode.New(errcode.UnsupportedChar, "the keyboard layout has no key for keysym 0x%x and no spare key to borrow", sym)
	}
	syms := make([]xproto.Keysym, per)
	for i := range syms {
		syms[i] = xproto.Keysym(sym)
	}
	if err := xproto.ChangeKeyboardMappingChecked(x.conn, 1, spare, byte(per), syms).Check(); err != nil {
		return err
	}
	err := x.keycode(spare, true)
	if err == nil {
		err = x.keycode(spare, false)
	}
	// Wait for the key events to be processed before the mapping changes back.
	_, _ = xproto.GetInputFocus(x.conn).Reply()
	clear(syms)
	if rerr := xproto.ChangeKeyboardMappingChecked(x.conn, 1, spare, byte(per), syms).Check(); err == nil {
		err = rerr
	}
	return err
}

func (x *x11) Pointer() (int, int, error) {
	rep, err := xproto.QueryPointer(x.conn, x.root).Reply()
	if err != nil {
		return 0, 0, err
	}
	return int(rep.RootX), int(rep.RootY), nil
}

func (x *x11) loadKeymap() error {
	count := int(x.maxKey) - int(x.minKey) + 1
	rep, err := xproto.GetKeyboardMapping(x.conn, x.minKey, byte(count)).Reply()
	if err != nil {
		return fmt.Errorf("reading the keyboard map: %w", err)
	}
	per := int(rep.KeysymsPerKeycode)
	km := map[uint32]keyPos{}
	var spare xproto.Keycode
	for i := range count {
		code := xproto.Keycode(int(x.minKey) + i)
		syms := rep.Keysyms[i*per : (i+1)*per]
		empty := true
		for j, s := range syms {
			if s == 0 {
				continue
			}
			empty = false
			if j > 1 {
				continue // groups beyond the first need more than Shift
			}
			if _, seen := km[uint32(s)]; !seen {
				km[uint32(s)] = keyPos{code: code, shift: j == 1}
			}
		}
		if empty {
			spare = code
		}
	}
	x.keymap, x.spare, x.per = km, spare, per
	return nil
}

func (x *x11) Close() error {
	// Not while a capture reads the shared memory.
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.shmData != nil {
		_ = shm.Detach(x.conn, x.shmSeg)
		_ = unix.SysvShmDetach(x.shmData)
		x.shmData = nil
	}
	x.conn.Close()
	return nil
}
