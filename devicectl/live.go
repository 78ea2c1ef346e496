package devicectl

import (
	"encoding/binary"
	"encoding/json"
	"errors"
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
}

// DecodeLiveRequest reads a "live" notice body.
func DecodeLiveRequest(b json.RawMessage) (LiveRequest, error) {
	var r LiveRequest
	if err := json.Unmarshal(b, &r); err != nil {
		return r, err
	}
	if r.Source != "screen" && r.Source != "browser" {
		return r, errors.New("live source is screen or browser")
	}
	r.FPS = min(max(r.FPS, 1), 30)
	return r, nil
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
