package hub

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lowkeyhq/lowkey/devicectl"
	"github.com/lowkeyhq/lowkey/errcode"
	"github.com/lowkeyhq/lowkey/internal/wsconn"
	"github.com/lowkeyhq/lowkey/pairing"
)

// Device is a paired computer as the store keeps it.
type Device struct {
	Peer         pairing.Peer    `json:"peer"`
	PairedAt     time.Time       `json:"paired_at"`
	LastSeen     time.Time       `json:"last_seen"`
	Platform     string          `json:"platform,omitempty"`
	Capabilities json.RawMessage `json:"capabilities,omitempty"`
	Revoked      bool            `json:"revoked,omitempty"`
	RevokedAt    time.Time       `json:"revoked_at,omitzero"`
	RevokeReason string          `json:"revoke_reason,omitempty"`
}

// DeviceView is a device as the API shows it.
type DeviceView struct {
	ID           string          `json:"id"`
	Name         string          `json:"name"`
	Online       bool            `json:"online"`
	Platform     string          `json:"platform"`
	Capabilities json.RawMessage `json:"capabilities"`
	PairedAt     time.Time       `json:"paired_at"`
	LastSeen     time.Time       `json:"last_seen,omitzero"`
	RTTMillis    *float64        `json:"rtt_ms,omitempty"`
	// Path is how the link's packets go: direct, direct-tcp or relayed
	// ("" while offline or before the link has chosen).
	Path string `json:"path,omitempty"`
}

// live is a computer's current link.
type live struct {
	conn  *devicectl.Conn
	ws    *wsconn.Conn
	since time.Time
	rtt   atomic.Int64 // nanoseconds, 0 until measured
	seen  atomic.Int64 // unix nanoseconds
	once  sync.Once
	// calls holds a place for each action running on the computer.
	calls chan struct{}
}

// end closes the link at once.
func (l *live) end() {
	l.once.Do(func() {
		l.conn.Close()
		_ = l.ws.Close()
	})
}

func deviceKey(id string) string { return "device/" + id }

func (h *Hub) device(id string) (*Device, error) {
	var d Device
	if err := h.store.Get(deviceKey(id), &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// lookup is the link authenticator's view of the registry.
func (h *Hub) lookup(id string) (ed25519.PublicKey, error) {
	d, err := h.device(id)
	if errors.Is(err, ErrNotFound) {
		return nil, &errcode.Error{Code: errcode.UnknownDevice, Message: "this computer is not paired with this box: pair it again with \"lowkey-companion pair\""}
	}
	if err != nil {
		return nil, err
	}
	if d.Revoked {
		return nil, &errcode.Error{Code: errcode.Revoked, Message: fmt.Sprintf("this computer was unpaired from the box (%s, %s): pair it again with \"lowkey-companion pair\" and a new code", d.RevokeReason, d.RevokedAt.Format(time.RFC3339))}
	}
	return d.Peer.PublicKey, nil
}

// addDevice pins a newly paired computer. Pairing again with the same keys
// brings a revoked computer back, with every toggle off whatever it held
// before.
func (h *Hub) addDevice(p *pairing.Peer) error {
	d := Device{Peer: *p, PairedAt: time.Now().UTC(), Platform: p.Platform}
	h.devMu.Lock()
	defer h.devMu.Unlock()
	h.dropGrants(p.ID)
	return h.store.Put(deviceKey(p.ID), d)
}

// updatePaired changes a paired (not revoked) device's record; it does
// nothing for a revoked one.
func (h *Hub) updatePaired(id string, change func(*Device)) error {
	h.devMu.Lock()
	defer h.devMu.Unlock()
	d, err := h.device(id)
	if err != nil || d.Revoked {
		return err
	}
	change(d)
	return h.store.Put(deviceKey(id), d)
}

// Devices lists paired computers, revoked ones left out.
func (h *Hub) Devices() ([]DeviceView, error) {
	var out []DeviceView
	err := h.store.Each("device/", func(_ string, raw []byte) error {
		var d Device
		if err := json.Unmarshal(raw, &d); err != nil {
			return err
		}
		if d.Revoked {
			return nil
		}
		out = append(out, h.view(&d))
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].PairedAt.Before(out[j].PairedAt) })
	if out == nil {
		out = []DeviceView{}
	}
	return out, err
}

func (h *Hub) view(d *Device) DeviceView {
	v := DeviceView{ID: d.Peer.ID, Name: d.Peer.Name, Platform: d.Platform, Capabilities: d.Capabilities, PairedAt: d.PairedAt, LastSeen: d.LastSeen}
	if v.Capabilities == nil {
		v.Capabilities = json.RawMessage("{}")
	}
	if l := h.liveLink(d.Peer.ID); l != nil {
		v.Online = true
		v.LastSeen = time.Unix(0, l.seen.Load()).UTC()
		v.Path = l.conn.Path()
		if r := l.rtt.Load(); r > 0 {
			ms := float64(r) / 1e6
			v.RTTMillis = &ms
		}
	}
	return v
}

func (h *Hub) liveLink(id string) *live {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.links[id]
}

// Revoke unpairs a computer: its live link closes now and it cannot
// connect again.
func (h *Hub) Revoke(id, reason string) error {
	h.devMu.Lock()
	d, err := h.device(id)
	if err == nil && d.Revoked {
		err = ErrNotFound
	}
	if err == nil {
		d.Revoked, d.RevokedAt, d.RevokeReason = true, time.Now().UTC(), reason
		err = h.store.Put(deviceKey(id), d)
	}
	if err == nil {
		// Under the same lock as toggles: none can land after this.
		h.dropGrants(id)
	}
	h.devMu.Unlock()
	if err != nil {
		return err
	}
	if h.relay != nil {
		h.relay.forget(id)
	}
	// A link being set up right now sees the record after it registers,
	// and ends itself (handleLink); one registered already is ended here.
	h.mu.Lock()
	l := h.links[id]
	delete(h.links, id)
	h.mu.Unlock()
	if l != nil {
		l.conn.Bye("revoked", "this computer was unpaired from the box ("+reason+")")
		l.end()
	}
	h.log.Info("device revoked", "device", id, "name", d.Peer.Name, "reason", reason)
	h.changed(DevicesChanged)
	return nil
}

// Call runs one action on a computer over its link.
func (h *Hub) Call(ctx context.Context, deviceID, action, conversation string, args json.RawMessage) (*devicectl.Result, error) {
	l := h.liveLink(deviceID)
	if l == nil {
		return nil, errOffline
	}
	select {
	case l.calls <- struct{}{}:
		defer func() { <-l.calls }()
	default:
		return nil, errDeviceBusy
	}
	return l.conn.Link.Call(ctx, action, conversation, args)
}

var errOffline = errcode.New(errcode.DeviceOffline, "the computer is offline: start \"lowkey-companion run\" on it")

var errDeviceBusy = errcode.New(errcode.DeviceBusy, "this computer is already running %d actions: wait for one to finish", maxDeviceCalls)
