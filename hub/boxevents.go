package hub

import (
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/lowkeyhq/lowkey/pairing"
)

// BoxEvent is a change outside any one conversation, on the stream every
// open page of the web app holds: it says what to read again (devices,
// conversations, people, settings) or, for owners only, the pairing
// window as it is now.
type BoxEvent struct {
	Type string `json:"type"`
	Data any    `json:"data,omitempty"`
}

// The box's event types.
const (
	DevicesChanged  = "devices.changed"
	SessionsChanged = "sessions.changed"
	UsersChanged    = "users.changed"
	SettingsChanged = "settings.changed"
	PairingChanged  = "pairing.changed"
)

// boxBuffer is how far a page may fall behind before its stream is closed
// (it reconnects and reads everything again).
const boxBuffer = 64

type boxSub struct {
	ch    chan BoxEvent
	owner bool
}

// boxEvents fans the box's changes out to every open page.
type boxEvents struct {
	mu   sync.Mutex
	subs map[*boxSub]struct{}
}

func (b *boxEvents) subscribe(owner bool) (*boxSub, func()) {
	s := &boxSub{ch: make(chan BoxEvent, boxBuffer), owner: owner}
	b.mu.Lock()
	if b.subs == nil {
		b.subs = map[*boxSub]struct{}{}
	}
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	return s, func() {
		b.mu.Lock()
		if _, ok := b.subs[s]; ok {
			delete(b.subs, s)
			close(s.ch)
		}
		b.mu.Unlock()
	}
}

// publish never waits: a page that fell behind loses its stream.
func (b *boxEvents) publish(e BoxEvent, ownersOnly bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		if ownersOnly && !s.owner {
			continue
		}
		select {
		case s.ch <- e:
		default:
			delete(b.subs, s)
			close(s.ch)
		}
	}
}

// changed tells every page to read kind again.
func (h *Hub) changed(kind string) { h.box.publish(BoxEvent{Type: kind}, false) }

// pairingView is the pairing window as the owner's pages show it.
type pairingView struct {
	Open      bool      `json:"open"`
	Code      string    `json:"code,omitempty"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	Locked    bool      `json:"locked,omitempty"`
	// Paired names the computer that just used the code.
	Paired string `json:"paired,omitempty"`
	// Hub is the address to pair with (--hub), "" when the computer
	// finds the box on the LAN by itself; Reach says which it is.
	Hub   string `json:"hub,omitempty"`
	Reach string `json:"reach"`
}

// pairAddress is how a computer reaches this box to pair.
func (h *Hub) pairAddress() (addr, reach string) {
	tcp := h.ln.Addr().(*net.TCPAddr)
	port := strconv.Itoa(tcp.Port)
	switch {
	case tcp.IP.IsLoopback():
		return net.JoinHostPort(tcp.IP.String(), port), "The box listens on loopback only: this works on the box itself. To pair another computer, start the box with --listen 0.0.0.0:" + port + "."
	case h.advert != nil:
		return "", "The computer finds the box on the LAN by itself (mDNS)."
	case !tcp.IP.IsUnspecified():
		return net.JoinHostPort(tcp.IP.String(), port), "The box's address on its network."
	}
	if ip := lanAddress(); ip != nil {
		return net.JoinHostPort(ip.String(), port), "The box's address on its LAN."
	}
	return net.JoinHostPort("BOX-ADDRESS", port), "Put the box's address on your network in place of BOX-ADDRESS."
}

// lanAddress is the box's first private IPv4 address, nil when it has none.
func lanAddress() net.IP {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsPrivate() {
			return n.IP
		}
	}
	return nil
}

func (h *Hub) pairingState() pairingView {
	code, exp, open := h.window.Current()
	_, _, _, _, locked := h.window.State()
	v := pairingView{Open: open, ExpiresAt: exp.UTC(), Locked: locked}
	v.Hub, v.Reach = h.pairAddress()
	if open {
		v.Code = pairing.FormatCode(code)
	} else {
		v.ExpiresAt = time.Time{}
	}
	return v
}

// pairingChanged tells the owner's pages what the window is now.
func (h *Hub) pairingChanged(paired string) {
	v := h.pairingState()
	v.Paired = paired
	h.box.publish(BoxEvent{Type: PairingChanged, Data: v}, true)
}

func (h *Hub) getPairing(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, h.pairingState())
}

// openStream upgrades a request to a WebSocket the box writes to: what
// the client sends goes to onMessage (nil: dropped), and gone closes when
// it leaves. The hub waits for the stream on Close; end closes it.
func (h *Hub) openStream(w http.ResponseWriter, r *http.Request, onMessage func([]byte)) (ws *websocket.Conn, gone <-chan struct{}, end func(), err error) {
	ws, err = eventsUpgrader.Upgrade(w, r, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	h.wg.Add(1)
	ws.SetReadLimit(maxWSMessage)
	left := make(chan struct{})
	go func() {
		defer close(left)
		for {
			_, m, err := ws.ReadMessage()
			if err != nil {
				return
			}
			if onMessage != nil {
				onMessage(m)
			}
		}
	}()
	return ws, left, func() { ws.Close(); h.wg.Done() }, nil
}

// getBoxEvents streams the box's changes to one page until it goes.
func (h *Hub) getBoxEvents(w http.ResponseWriter, r *http.Request) {
	p, _ := r.Context().Value(principalKey{}).(principal)
	sub, cancel := h.box.subscribe(p.role == RoleOwner)
	defer cancel()
	ws, gone, end, err := h.openStream(w, r, nil)
	if err != nil {
		return
	}
	defer end()
	for {
		select {
		case e, ok := <-sub.ch:
			if !ok {
				_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseTryAgainLater, "reconnect and read again"), time.Now().Add(time.Second))
				return
			}
			_ = ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if ws.WriteJSON(e) != nil {
				return
			}
		case <-gone:
			return
		case <-h.ctx.Done():
			return
		}
	}
}
