package hub

import "github.com/lowkeyhq/lowkey/devicectl"

// NotifyComputer sends a notice to a computer as the box, with nothing of
// the box's own checks: the tests use it to play a box that lies.
func (h *Hub) NotifyComputer(device string, n devicectl.Notice) error {
	l := h.liveLink(device)
	if l == nil {
		return errOffline
	}
	return l.conn.Link.Notify(n)
}
