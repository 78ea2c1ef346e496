package hub

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/gorilla/websocket"

	"github.com/lowkeyhq/lowkey/devicectl"
	"github.com/lowkeyhq/lowkey/errcode"
	"github.com/lowkeyhq/lowkey/internal/wsconn"
	"github.com/lowkeyhq/lowkey/pairing"
	"github.com/pion/webrtc/v4"
)

var upgrader = websocket.Upgrader{
	ReadBufferSize: 16 << 10, WriteBufferSize: 16 << 10,
	// Companions are not browsers; a browser page gets no say here.
	CheckOrigin: func(r *http.Request) bool { return r.Header.Get("Origin") == "" },
}

// handleLink authenticates a computer by its pinned key, then brokers the
// WebRTC link to it and keeps it until either side ends it.
func (h *Hub) handleLink(w http.ResponseWriter, r *http.Request) {
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	h.wg.Add(1)
	defer h.wg.Done()
	c := wsconn.New(ws, devicectl.MaxSignalSize)
	defer c.Close()
	auth, cancelAuth := context.WithTimeout(h.ctx, 15*time.Second)
	devID, intent, binding, err := pairing.AuthenticateDevice(auth, c, h.id, h.lookup)
	if err != nil {
		cancelAuth()
		h.log.Info("link refused", "remote", r.RemoteAddr, "err", err)
		return
	}
	if intent == "unpair" {
		if err := h.Revoke(devID, "unpaired from the computer"); err != nil {
			h.log.Warn("unpair", "device", devID, "err", err)
		}
		if err := c.WriteJSON(auth, pairing.LinkMessage{Type: "done"}); err != nil {
			h.log.Info("the unpaired computer did not hear it was done", "device", devID, "err", err)
		}
		cancelAuth()
		return
	}
	cancelAuth()
	d, err := h.device(devID)
	if err != nil {
		return
	}
	sig := &devicectl.SignedSignaler{T: c, Key: h.id.Key, PeerKey: d.Peer.PublicKey, Role: "hub", PeerRole: "companion", Binding: binding}
	pc := devicectl.PeerConfig{
		Identity: h.id, PeerFingerprint: d.Peer.Fingerprint, LoopbackOnly: h.cfg.LoopbackICE, TCPMux: h.iceTCP,
		ICEServers: h.cfg.ICEServers, RelayOnly: h.cfg.RelayOnly, UpgradeEvery: max(h.cfg.UpgradeEvery, 0),
		Logger: h.log.With("device", devID),
		Link:   devicectl.LinkConfig{OnNotice: func(n devicectl.Notice) { h.computerNotice(devID, d.Peer.Name, n) }},
	}
	if h.relay != nil {
		cred, forget, err := h.relay.mint(devID)
		if err != nil {
			h.log.Warn("no relay credential for the link", "device", devID, "err", err)
		} else {
			defer forget()
			pc.Relay = cred
		}
	}
	ctx, cancel := context.WithTimeout(h.ctx, 15*time.Second)
	conn, err := devicectl.Offer(ctx, pc, sig)
	cancel()
	if err != nil {
		h.log.Warn("link set-up failed", "device", devID, "err", err)
		if conn != nil {
			conn.Close()
			_ = c.Close()
			conn.Wait()
		}
		return
	}
	l := &live{conn: conn, ws: c, since: time.Now(), calls: make(chan struct{}, maxDeviceCalls)}
	l.seen.Store(time.Now().UnixNano())
	h.mu.Lock()
	old := h.links[devID]
	h.links[devID] = l
	h.mu.Unlock()
	if old != nil {
		old.end()
	}
	// Revoked while the link was being set up: Revoke did not find it.
	if now, err := h.device(devID); err != nil || now.Revoked {
		h.mu.Lock()
		if h.links[devID] == l {
			delete(h.links, devID)
		}
		h.mu.Unlock()
		conn.Bye(errcode.Revoked, "this computer was unpaired from the box")
		l.end()
		conn.Wait()
		return
	}
	h.log.Info("device online", "device", devID, "name", d.Peer.Name)
	h.changed(DevicesChanged)
	conn.Live.OnMessage(func(m webrtc.DataChannelMessage) { h.liveFrame(devID, m.Data) })
	conn.Updates.OnMessage(func(m webrtc.DataChannelMessage) { h.liveFrame(devID, m.Data) })
	h.pushGrants(devID)
	h.resumeLive(devID)
	go h.describe(devID, l)
	h.keepAlive(l)
	h.mu.Lock()
	if h.links[devID] == l {
		delete(h.links, devID)
	}
	h.mu.Unlock()
	l.end()
	conn.Wait()
	h.touch(devID, time.Unix(0, l.seen.Load()))
	h.log.Info("device offline", "device", devID, "why", conn.Err())
	h.changed(DevicesChanged)
}

// keepAlive measures the link's round trip until the link ends.
func (h *Hub) keepAlive(l *live) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(h.ctx, 5*time.Second)
		d, err := l.conn.Link.Ping(ctx)
		cancel()
		if err == nil {
			l.rtt.Store(int64(d))
			l.seen.Store(time.Now().UnixNano())
		}
		select {
		case <-t.C:
		case <-l.conn.Done():
			return
		case <-h.ctx.Done():
			return
		}
	}
}

// describe asks a fresh link what the computer offers.
func (h *Hub) describe(id string, l *live) {
	ctx, cancel := context.WithTimeout(h.ctx, 10*time.Second)
	defer cancel()
	res, err := l.conn.Link.Call(ctx, "sys.info", "", nil)
	if err != nil {
		return
	}
	var info devicectl.Info
	if json.Unmarshal(res.JSON, &info) != nil {
		return
	}
	caps, _ := json.Marshal(info.Capabilities)
	err = h.updatePaired(id, func(d *Device) {
		d.Platform, d.Capabilities, d.LastSeen = info.OS+"/"+info.Arch, caps, time.Now().UTC()
	})
	if err != nil {
		h.log.Warn("could not save what the computer offers", "device", id, "err", err)
		return
	}
	h.changed(DevicesChanged)
}

func (h *Hub) touch(id string, seen time.Time) {
	err := h.updatePaired(id, func(d *Device) { d.LastSeen = seen.UTC() })
	if err != nil && !errors.Is(err, ErrNotFound) {
		h.log.Warn("could not save last seen", "device", id, "err", err)
	}
}
