package hub

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/lowkeyhq/lowkey/internal/wsconn"
	"github.com/lowkeyhq/lowkey/pairing"
)

// handlePair runs one pairing exchange on a WebSocket. The window decides
// whether there is a code to pair with; the exchange never reveals it.
func (h *Hub) handlePair(w http.ResponseWriter, r *http.Request) {
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	h.wg.Add(1)
	defer h.wg.Done()
	c := wsconn.New(ws, pairing.MaxMessageSize)
	defer c.Close()
	ctx, cancel := context.WithTimeout(h.ctx, 30*time.Second)
	defer cancel()
	resp := &pairing.Responder{Identity: h.id, Name: h.cfg.Name, Window: h.window, Pin: h.addDevice}
	peer, err := resp.Serve(ctx, wsconn.Pairing{C: c})
	if err != nil {
		level := h.log.Info
		if errors.Is(err, pairing.ErrWrongCode) {
			level = h.log.Warn
		}
		_, _, failures, total, locked := h.window.State()
		level("pairing attempt failed", "remote", r.RemoteAddr, "err", err, "window_failures", failures, "total_failures", total, "locked", locked)
		h.pairingChanged("")
		return
	}
	h.log.Info("computer paired", "device", peer.ID, "name", peer.Name, "platform", peer.Platform)
	h.pairingChanged(peer.Name)
	h.changed(DevicesChanged)
}
