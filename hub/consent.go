package hub

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/lowkeyhq/lowkey/devicectl"
)

// computerNotice takes a notice a computer sent on its link.
func (h *Hub) computerNotice(devID, name string, n devicectl.Notice) {
	if n.Type != "consent" {
		return
	}
	var c devicectl.ConsentNotice
	if len(n.Body) > 4096 || json.Unmarshal(n.Body, &c) != nil {
		return
	}
	cp := devicectl.Capability(c.Capability)
	if cp != devicectl.CapBrowser && cp != devicectl.CapDesktop || len(c.Action) > 64 {
		return
	}
	// Only about a conversation that holds a grant for this computer: a
	// computer cannot write into any other.
	if _, ok := h.grant(c.Conversation, devID); !ok {
		return
	}
	who := "the person at " + name
	switch c.State {
	case devicectl.ConsentWaiting:
		h.runtime.Emit(c.Conversation, "device.waiting", map[string]string{"device": devID, "name": name, "capability": c.Capability,
			"action": c.Action, "text": "waiting for " + who + " to allow " + c.Capability + " access"})
	case devicectl.ConsentAllowed, devicectl.ConsentDenied, devicectl.ConsentUnanswered:
		rec := devicectl.AuditRecord{Time: time.Now().UTC(), Who: who, Conversation: c.Conversation, Device: devID, Action: "consent." + c.Capability}
		switch c.State {
		case devicectl.ConsentAllowed:
			rec.Outcome, rec.Detail = "done", "allowed at the computer for this conversation"
			if !c.Until.IsZero() {
				rec.Detail = "allowed at the computer until " + c.Until.Local().Format("15:04")
			}
		case devicectl.ConsentDenied:
			rec.Outcome, rec.Detail = "refused", "denied at the computer"
		default:
			rec.Outcome, rec.Detail = "refused", "no answer at the computer in time"
		}
		h.audit(rec)
		if rec.Outcome == "refused" && strings.HasPrefix(c.Action, "live.") {
			h.refusedLive(devID, c.Conversation, who+": "+rec.Detail)
		}
	}
}
