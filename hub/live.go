package hub

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/lowkeyhq/lowkey/devicectl"
	"github.com/lowkeyhq/lowkey/errcode"
)

// liveRelay fans one computer's live screen out to the viewers on the
// box. The computer streams while at least one viewer watches. In the
// updates mode each update builds on the one before: a viewer that
// missed one (it was slow, or a part was lost on the way) gets nothing
// more until a whole frame, which the relay asks the computer for.
type liveRelay struct {
	device string
	req    devicectl.LiveRequest
	asm    devicectl.LiveAssembler

	mu      sync.Mutex
	viewers map[chan []byte]*viewer
	// last is the update every viewer in step has; broken: one was lost
	// before any viewer got it.
	last    uint32
	broken  bool
	askedAt time.Time
	// ended says why the view ended, for its viewers.
	ended string
}

type viewer struct{ behind bool }

// keyEvery bounds how often a relay asks the computer for a whole frame.
const keyEvery = 500 * time.Millisecond

func (h *Hub) getLive(w http.ResponseWriter, r *http.Request) {
	s := h.session(w, r.PathValue("id"))
	if s == nil {
		return
	}
	devID := r.PathValue("device")
	if !h.pairedDevice(w, devID) {
		return
	}
	q := r.URL.Query()
	req := devicectl.LiveRequest{Conversation: s.ID, On: true, Source: q.Get("source"), FPS: 15, MaxEdge: 1280, Quality: 70, Mode: q.Get("mode")}
	if req.Source == "" {
		req.Source = "screen"
	}
	for name, dst := range map[string]*int{"fps": &req.FPS, "max_edge": &req.MaxEdge, "quality": &req.Quality} {
		if v := q.Get(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 || n > 4096 {
				fail(w, errcode.BadRequest, name+" must be a positive number")
				return
			}
			*dst = n
		}
	}
	body, _ := json.Marshal(req)
	req, err := devicectl.DecodeLiveRequest(body)
	if err != nil {
		fail(w, errcode.BadRequest, err.Error())
		return
	}
	capability := req.Capability()
	rec := devicectl.AuditRecord{Time: time.Now().UTC(), Who: who(r), Conversation: s.ID, Device: devID, Action: "live." + req.Source, Args: body}
	if g, _ := h.grant(s.ID, devID); !g.Allows(capability) && !h.cfg.UnsafeSkipGrantCheck {
		rec.Outcome, rec.Detail = "refused", "the toggle is off"
		h.audit(rec)
		fail(w, errcode.ToggleOff, "turn this conversation's "+string(capability)+" access on to watch the live screen")
		return
	}
	if h.liveLink(devID) == nil {
		fail(w, errcode.DeviceOffline, errOffline.Error())
		return
	}
	h.mu.Lock()
	rl := h.lives[devID]
	h.mu.Unlock()
	if rl != nil && (rl.req.Mode != req.Mode || rl.req.Source != req.Source || rl.req.Conversation != req.Conversation) {
		fail(w, errcode.Busy, "this computer's live "+rl.req.Source+" is being watched (as "+rl.req.Mode+") from a conversation; watch it the same way or wait until that ends")
		return
	}
	frames := make(chan []byte, 4)
	// A viewer may ask for a whole frame ("key") when its picture is off.
	ws, gone, end, err := h.openStream(w, r, func(m []byte) {
		if string(m) == "key" {
			h.askKey(devID, false)
		}
	})
	if err != nil {
		return
	}
	defer end()
	rec.Outcome = "done"
	h.audit(rec)
	rl = h.watch(devID, req, frames)
	defer h.unwatch(devID, frames)
	for {
		select {
		case f, ok := <-frames:
			if !ok {
				rl.mu.Lock()
				why := rl.ended
				rl.mu.Unlock()
				_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.ClosePolicyViolation, why), time.Now().Add(time.Second))
				return
			}
			_ = ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if err := ws.WriteMessage(websocket.BinaryMessage, f); err != nil {
				return
			}
		case <-gone:
			return
		case <-h.ctx.Done():
			return
		}
	}
}

func (h *Hub) watch(devID string, req devicectl.LiveRequest, ch chan []byte) *liveRelay {
	h.mu.Lock()
	rl := h.lives[devID]
	first := rl == nil
	if first {
		rl = &liveRelay{device: devID, req: req, viewers: map[chan []byte]*viewer{}, broken: true}
		h.lives[devID] = rl
	}
	h.mu.Unlock()
	rl.mu.Lock()
	// A viewer joining a stream under way starts at a whole frame.
	rl.viewers[ch] = &viewer{behind: !first && req.Mode == devicectl.LiveUpdates}
	rl.mu.Unlock()
	if first {
		h.sendLive(devID, req)
	} else {
		h.askKey(devID, true)
	}
	return rl
}

// askKey asks the computer for a whole frame, at most once per keyEvery
// unless now.
func (h *Hub) askKey(devID string, now bool) {
	h.mu.Lock()
	rl := h.lives[devID]
	h.mu.Unlock()
	if rl == nil || rl.req.Mode != devicectl.LiveUpdates {
		return
	}
	rl.mu.Lock()
	if !now && time.Since(rl.askedAt) < keyEvery {
		rl.mu.Unlock()
		return
	}
	rl.askedAt = time.Now()
	req := rl.req
	rl.mu.Unlock()
	req.Key = true
	h.sendLive(devID, req)
}

func (h *Hub) unwatch(devID string, ch chan []byte) {
	h.mu.Lock()
	rl := h.lives[devID]
	if rl == nil {
		h.mu.Unlock()
		return
	}
	rl.mu.Lock()
	if _, ok := rl.viewers[ch]; !ok {
		rl.mu.Unlock()
		h.mu.Unlock()
		return
	}
	delete(rl.viewers, ch)
	last := len(rl.viewers) == 0
	rl.mu.Unlock()
	if last {
		delete(h.lives, devID)
	}
	h.mu.Unlock()
	if last {
		off := rl.req
		off.On = false
		h.sendLive(devID, off)
	}
}

func (h *Hub) sendLive(devID string, req devicectl.LiveRequest) {
	l := h.liveLink(devID)
	if l == nil {
		return
	}
	body, _ := json.Marshal(req)
	_ = l.conn.Link.Notify(devicectl.Notice{Type: "live", Body: body})
}

// resumeLive asks a computer that came back to stream again.
func (h *Hub) resumeLive(devID string) {
	h.mu.Lock()
	rl := h.lives[devID]
	h.mu.Unlock()
	if rl != nil {
		h.sendLive(devID, rl.req)
	}
}

// liveFrame takes one message from a computer's live channel.
func (h *Hub) liveFrame(devID string, m []byte) {
	h.mu.Lock()
	rl := h.lives[devID]
	h.mu.Unlock()
	if rl == nil {
		return
	}
	frame, ok := rl.asm.Add(m)
	if !ok {
		return
	}
	if rl.req.Mode != devicectl.LiveUpdates {
		rl.mu.Lock()
		for ch := range rl.viewers {
			select {
			case ch <- frame:
			default: // a slow viewer misses frames, never holds the others
			}
		}
		rl.mu.Unlock()
		return
	}
	u, err := devicectl.ParseLiveUpdate(frame)
	if err != nil {
		h.log.Debug("dropped a malformed live update", "device", devID, "err", err)
		return
	}
	rl.mu.Lock()
	ask := false
	switch {
	case u.Key:
		rl.broken = false
	case rl.broken || u.Seq != rl.last+1:
		// An update went missing on the way: nobody can apply this one.
		rl.broken, ask = true, true
	}
	rl.last = u.Seq
	if !rl.broken {
		for ch, v := range rl.viewers {
			if v.behind && !u.Key {
				ask = true
				continue
			}
			select {
			case ch <- frame:
				v.behind = false
			default: // a slow viewer misses this one, and so the rest until a whole frame
				v.behind, ask = true, true
			}
		}
	}
	rl.mu.Unlock()
	if ask {
		h.askKey(devID, false)
	}
}

// checkLive ends the viewing of a computer whose conversation lost the
// grant that the stream needs.
func (h *Hub) checkLive(devID string) {
	h.mu.Lock()
	rl := h.lives[devID]
	h.mu.Unlock()
	if rl == nil {
		return
	}
	if g, _ := h.grant(rl.req.Conversation, devID); g.Allows(rl.req.Capability()) || h.cfg.UnsafeSkipGrantCheck {
		return
	}
	h.endLive(rl, "control ended")
}

// endLive ends a computer's live view for every viewer, saying why.
func (h *Hub) endLive(rl *liveRelay, why string) {
	h.mu.Lock()
	if h.lives[rl.device] == rl {
		delete(h.lives, rl.device)
	}
	h.mu.Unlock()
	rl.mu.Lock()
	rl.ended = why
	for ch := range rl.viewers {
		close(ch)
	}
	rl.viewers = map[chan []byte]*viewer{}
	rl.mu.Unlock()
}

// refusedLive ends the live view of conversation on a computer whose
// person did not allow it.
func (h *Hub) refusedLive(devID, conversation, why string) {
	h.mu.Lock()
	rl := h.lives[devID]
	h.mu.Unlock()
	if rl != nil && rl.req.Conversation == conversation {
		h.endLive(rl, why)
	}
}
