package devicectl

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/draw"
	"image/jpeg"
	"sync"
)

// LiveRequest starts or stops the live screen of a computer for one
// conversation. It travels as a notice of type "live".
type LiveRequest struct {
	Conversation string `json:"conversation"`
	On           bool   `json:"on"`
	// Source is "screen" (the desktop, needs the desktop toggle) or
	// "browser" (the controlled tab, needs the browser toggle).
	Source  string `json:"source"`
	FPS     int    `json:"fps"`
	MaxEdge int    `json:"max_edge"`
	Quality int    `json:"quality"`
	// Mode is LiveUpdates (the default: what changed, see LiveUpdate) or
	// LiveJPEG (every frame a whole JPEG, for the simplest viewers).
	Mode string `json:"mode,omitempty"`
	// Key asks a running stream for a whole frame now.
	Key bool `json:"key,omitempty"`
}

// Capability is what the stream needs the conversation to hold: the
// browser for its tab, the desktop for the screen.
func (r LiveRequest) Capability() Capability {
	if r.Source == "browser" {
		return CapBrowser
	}
	return CapDesktop
}

// Live stream modes.
const (
	LiveUpdates = "updates"
	LiveJPEG    = "jpeg"
)

// DecodeLiveRequest reads a "live" notice body.
func DecodeLiveRequest(b json.RawMessage) (LiveRequest, error) {
	var r LiveRequest
	if err := json.Unmarshal(b, &r); err != nil {
		return r, err
	}
	if r.Source != "screen" && r.Source != "browser" {
		return r, errors.New("live source is screen or browser")
	}
	switch r.Mode {
	case "":
		r.Mode = LiveUpdates
	case LiveUpdates, LiveJPEG:
	default:
		return r, errors.New("live mode is updates or jpeg")
	}
	r.FPS = min(max(r.FPS, 1), 30)
	return r, nil
}

// A LiveUpdate is one step of the live screen in the updates mode: a
// whole frame (Key) or what changed since the update before it (Seq-1):
// regions copied from elsewhere on the previous picture (a scroll) and
// JPEG tiles drawn over it, in order.
//
// On the wire, big-endian: "LKU1", flags (1 = key, 2 = pointer), width,
// height (2 bytes each), seq (4), op count (2); with a pointer, its x, y (2
// each); each op: kind (1: 0 tile, 1 copy), x, y, w, h (2 bytes each),
// then a copy's source x, y (2 each) or a tile's JPEG length (4) and bytes.
type LiveUpdate struct {
	Key           bool
	Width, Height int
	Seq           uint32
	// Pointer is where the mouse pointer is now (the screen's pictures do
	// not show it), when known.
	Pointer *image.Point
	Ops     []LiveOp
}

// LiveOp is one step of an update.
type LiveOp struct {
	Copy       bool
	X, Y, W, H int
	// SrcX, SrcY: where a copy's region was on the previous picture.
	SrcX, SrcY int
	// JPEG: a tile's picture, W×H, drawn at X, Y.
	JPEG []byte
}

var liveMagic = []byte("LKU1")

// Marshal writes the update in its wire form.
func (u *LiveUpdate) Marshal() []byte {
	n := 19
	for _, op := range u.Ops {
		n += 9 + 4 + len(op.JPEG)
	}
	b := make([]byte, 0, n)
	b = append(b, liveMagic...)
	flags := byte(0)
	if u.Key {
		flags |= 1
	}
	if u.Pointer != nil {
		flags |= 2
	}
	b = append(b, flags)
	b = binary.BigEndian.AppendUint16(b, uint16(u.Width))
	b = binary.BigEndian.AppendUint16(b, uint16(u.Height))
	b = binary.BigEndian.AppendUint32(b, u.Seq)
	b = binary.BigEndian.AppendUint16(b, uint16(len(u.Ops)))
	if u.Pointer != nil {
		b = binary.BigEndian.AppendUint16(b, uint16(u.Pointer.X))
		b = binary.BigEndian.AppendUint16(b, uint16(u.Pointer.Y))
	}
	for _, op := range u.Ops {
		kind := byte(0)
		if op.Copy {
			kind = 1
		}
		b = append(b, kind)
		for _, v := range []int{op.X, op.Y, op.W, op.H} {
			b = binary.BigEndian.AppendUint16(b, uint16(v))
		}
		if op.Copy {
			b = binary.BigEndian.AppendUint16(b, uint16(op.SrcX))
			b = binary.BigEndian.AppendUint16(b, uint16(op.SrcY))
			continue
		}
		b = binary.BigEndian.AppendUint32(b, uint32(len(op.JPEG)))
		b = append(b, op.JPEG...)
	}
	return b
}

// ErrBadLiveUpdate is an update that does not parse or does not fit its
// own picture.
var ErrBadLiveUpdate = errors.New("malformed live update")

// ParseLiveUpdate reads an update's wire form and checks every region
// lies inside the picture.
func ParseLiveUpdate(b []byte) (*LiveUpdate, error) {
	if len(b) < 15 || string(b[:4]) != string(liveMagic) || len(b) > MaxLiveFrame {
		return nil, ErrBadLiveUpdate
	}
	u := &LiveUpdate{Key: b[4]&1 == 1, Width: int(binary.BigEndian.Uint16(b[5:])), Height: int(binary.BigEndian.Uint16(b[7:])),
		Seq: binary.BigEndian.Uint32(b[9:])}
	count := int(binary.BigEndian.Uint16(b[13:]))
	flags := b[4]
	b = b[15:]
	if flags&^3 != 0 {
		return nil, ErrBadLiveUpdate
	}
	if flags&2 != 0 {
		if len(b) < 4 {
			return nil, ErrBadLiveUpdate
		}
		u.Pointer = &image.Point{X: int(binary.BigEndian.Uint16(b)), Y: int(binary.BigEndian.Uint16(b[2:]))}
		if u.Pointer.X >= u.Width || u.Pointer.Y >= u.Height {
			return nil, ErrBadLiveUpdate
		}
		b = b[4:]
	}
	inside := func(x, y, w, h int) bool { return w > 0 && h > 0 && x+w <= u.Width && y+h <= u.Height }
	for range count {
		if len(b) < 9 {
			return nil, ErrBadLiveUpdate
		}
		op := LiveOp{Copy: b[0] == 1, X: int(binary.BigEndian.Uint16(b[1:])), Y: int(binary.BigEndian.Uint16(b[3:])),
			W: int(binary.BigEndian.Uint16(b[5:])), H: int(binary.BigEndian.Uint16(b[7:]))}
		if b[0] > 1 || !inside(op.X, op.Y, op.W, op.H) {
			return nil, ErrBadLiveUpdate
		}
		b = b[9:]
		if op.Copy {
			if len(b) < 4 {
				return nil, ErrBadLiveUpdate
			}
			op.SrcX, op.SrcY = int(binary.BigEndian.Uint16(b)), int(binary.BigEndian.Uint16(b[2:]))
			if !inside(op.SrcX, op.SrcY, op.W, op.H) || u.Key {
				return nil, ErrBadLiveUpdate
			}
			b = b[4:]
		} else {
			if len(b) < 4 {
				return nil, ErrBadLiveUpdate
			}
			n := binary.BigEndian.Uint32(b)
			b = b[4:]
			if uint64(n) > uint64(len(b)) {
				return nil, ErrBadLiveUpdate
			}
			op.JPEG, b = b[:n], b[n:]
		}
		u.Ops = append(u.Ops, op)
	}
	if len(b) != 0 {
		return nil, ErrBadLiveUpdate
	}
	return u, nil
}

// A live frame is split into parts of at most LivePart bytes, each with
// an 8-byte header: frame number, part index, part count.
const (
	LivePart   = 48 << 10
	liveHeader = 8
	// MaxLiveFrame bounds one reassembled frame.
	MaxLiveFrame = 4 << 20
)

// LiveParts splits one encoded frame into messages.
func LiveParts(frame uint32, data []byte) [][]byte {
	n := (len(data) + LivePart - 1) / LivePart
	out := make([][]byte, 0, n)
	for i := range n {
		part := data[i*LivePart : min(len(data), (i+1)*LivePart)]
		m := make([]byte, liveHeader+len(part))
		binary.BigEndian.PutUint32(m, frame)
		binary.BigEndian.PutUint16(m[4:], uint16(i))
		binary.BigEndian.PutUint16(m[6:], uint16(n))
		copy(m[liveHeader:], part)
		out = append(out, m)
	}
	return out
}

// LiveAssembler puts frames back together; a frame with a missing part is
// dropped when a newer one starts.
type LiveAssembler struct {
	mu    sync.Mutex
	frame uint32
	have  bool
	parts [][]byte
	got   int
	size  int
}

// Add takes one message and returns a whole frame when it completes one.
func (a *LiveAssembler) Add(m []byte) ([]byte, bool) {
	if len(m) < liveHeader {
		return nil, false
	}
	frame := binary.BigEndian.Uint32(m)
	idx, count := int(binary.BigEndian.Uint16(m[4:])), int(binary.BigEndian.Uint16(m[6:]))
	if count == 0 || idx >= count || count*LivePart > MaxLiveFrame+LivePart {
		return nil, false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.have && int32(frame-a.frame) < 0 {
		return nil, false // older than the one being built
	}
	if !a.have || frame != a.frame || len(a.parts) != count {
		a.frame, a.have, a.parts, a.got, a.size = frame, true, make([][]byte, count), 0, 0
	}
	if a.parts[idx] != nil {
		return nil, false
	}
	a.parts[idx] = append([]byte(nil), m[liveHeader:]...)
	a.got++
	a.size += len(m) - liveHeader
	if a.got < count {
		return nil, false
	}
	out := make([]byte, 0, a.size)
	for _, p := range a.parts {
		out = append(out, p...)
	}
	a.parts, a.got = nil, 0
	a.frame++ // anything for this frame now is a duplicate
	return out, true
}

// Apply draws the update onto a viewer's picture (nil before the first
// whole frame) and returns the picture, as the web app does.
func (u *LiveUpdate) Apply(pic *image.RGBA) (*image.RGBA, error) {
	if u.Key {
		pic = image.NewRGBA(image.Rect(0, 0, u.Width, u.Height))
	} else if pic == nil || pic.Rect.Dx() != u.Width || pic.Rect.Dy() != u.Height {
		return nil, fmt.Errorf("%w: update %d builds on a picture the viewer does not have", ErrBadLiveUpdate, u.Seq)
	}
	for _, op := range u.Ops {
		dst := image.Rect(op.X, op.Y, op.X+op.W, op.Y+op.H)
		if op.Copy {
			// image/draw copies within one picture in the safe direction.
			draw.Draw(pic, dst, pic, image.Pt(op.SrcX, op.SrcY), draw.Src)
			continue
		}
		tile, err := jpeg.Decode(bytes.NewReader(op.JPEG))
		if err != nil {
			return nil, fmt.Errorf("%w: tile at %v: %w", ErrBadLiveUpdate, dst, err)
		}
		if tile.Bounds().Dx() != op.W || tile.Bounds().Dy() != op.H {
			return nil, fmt.Errorf("%w: a %v tile for %v", ErrBadLiveUpdate, tile.Bounds().Size(), dst.Size())
		}
		draw.Draw(pic, dst, tile, tile.Bounds().Min, draw.Src)
	}
	return pic, nil
}
