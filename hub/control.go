package hub

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lowkeyhq/lowkey/devicectl"
	"github.com/lowkeyhq/lowkey/errcode"
	"github.com/lowkeyhq/lowkey/sessions"
)

func grantKey(session, device string) string { return "grant/" + session + "/" + device }

// grant returns a conversation's grant for a computer. A grant whose
// conversation is gone counts for nothing.
func (h *Hub) grant(session, device string) (devicectl.Grant, bool) {
	var g devicectl.Grant
	if err := h.store.Get(grantKey(session, device), &g); err != nil {
		return devicectl.Grant{}, false
	}
	var s sessions.Session
	if err := h.store.Get("session/"+session, &s); err != nil {
		return devicectl.Grant{}, false
	}
	return g, true
}

// deviceGrants lists the live grants for one computer.
func (h *Hub) deviceGrants(device string) []devicectl.Grant {
	out := []devicectl.Grant{}
	if err := h.store.Each("grant/", func(key string, raw []byte) error {
		if !strings.HasSuffix(key, "/"+device) {
			return nil
		}
		var g devicectl.Grant
		if json.Unmarshal(raw, &g) == nil && g.Device == device {
			if _, ok := h.grant(g.Conversation, device); ok {
				out = append(out, g)
			}
		}
		return nil
	}); err != nil {
		h.log.Error("reading grants to send to a computer", "err", err)
	}
	return out
}

// pushGrants sends a computer its whole current set of grants.
func (h *Hub) pushGrants(device string) {
	l := h.liveLink(device)
	if l == nil {
		return
	}
	body, _ := json.Marshal(struct {
		devicectl.GrantNotice
		Version int64 `json:"version"`
	}{devicectl.GrantNotice{Grants: h.deviceGrants(device)}, time.Now().UnixNano()})
	if err := l.conn.Link.Notify(devicectl.Notice{Type: "grants", Body: body}); err != nil {
		h.log.Warn("could not send grants", "device", device, "err", err)
	}
}

// dropGrants removes every grant for a computer (it was unpaired).
func (h *Hub) dropGrants(device string) {
	var keys []string
	if err := h.store.Each("grant/", func(key string, _ []byte) error {
		if strings.HasSuffix(key, "/"+device) {
			keys = append(keys, key)
		}
		return nil
	}); err != nil {
		h.log.Error("reading the grants of an unpaired computer", "err", err)
	}
	for _, k := range keys {
		// A grant left behind names a computer that can no longer link.
		if err := h.store.Delete(k); err != nil {
			h.log.Error("could not remove a grant of an unpaired computer", "key", k, "err", err)
			continue
		}
		if session, _, ok := strings.Cut(strings.TrimPrefix(k, "grant/"), "/"); ok {
			h.runtime.Emit(session, "grant.changed", devicectl.Grant{Conversation: session, Device: device})
		}
	}
}

type accessRequest struct {
	Browser *bool `json:"browser"`
	Desktop *bool `json:"desktop"`
}

func (h *Hub) putAccess(w http.ResponseWriter, r *http.Request) {
	s := h.session(w, r.PathValue("id"))
	if s == nil {
		return
	}
	devID := r.PathValue("device")
	if !h.pairedDevice(w, devID) {
		return
	}
	var req accessRequest
	if !readJSON(w, r, &req) {
		return
	}
	if req.Browser == nil && req.Desktop == nil {
		fail(w, errcode.BadRequest, `give "browser" and/or "desktop" as true or false`)
		return
	}
	// Toggles, revokes and pairings are ordered: a toggle never lands on a
	// computer revoked meanwhile.
	h.devMu.Lock()
	if d, err := h.device(devID); err != nil || d.Revoked {
		h.devMu.Unlock()
		fail(w, errcode.NotFound, "no paired device "+strconv.Quote(devID))
		return
	}
	g, _ := h.grant(s.ID, devID)
	var err error
	g.Conversation, g.Device = s.ID, devID
	if req.Browser != nil {
		g.Browser = *req.Browser
	}
	if req.Desktop != nil {
		g.Desktop = *req.Desktop
	}
	g.By, g.At = who(r), time.Now().UTC()
	if g.Any() {
		err = h.store.Put(grantKey(s.ID, devID), g)
	} else {
		err = h.store.Delete(grantKey(s.ID, devID))
	}
	h.devMu.Unlock()
	if err != nil {
		fail(w, errcode.Internal, "could not save the toggle")
		return
	}
	h.pushGrants(devID)
	h.checkLive(devID)
	// Every page on this conversation sees the change at once.
	h.runtime.Emit(s.ID, "grant.changed", g)
	h.log.Info("device access changed", "session", s.ID, "device", devID, "browser", g.Browser, "desktop", g.Desktop, "by", g.By)
	writeJSON(w, http.StatusOK, g)
}

type whoKey struct{}

func who(r *http.Request) string {
	if w, ok := r.Context().Value(whoKey{}).(string); ok {
		return w
	}
	return "owner"
}

// confirm asks the person through the session's confirm card.
func (h *Hub) confirm(ctx context.Context, q devicectl.Question) (devicectl.Reply, error) {
	answer := h.runtime.Confirm(ctx, q.Conversation, "device:"+q.Action, q.Summary+" on "+h.deviceName(q.Device), q.Timeout)
	h.log.Info("confirmation closed", "session", q.Conversation, "action", q.Action, "answer", answer)
	return devicectl.Reply(answer), nil
}

func (h *Hub) deviceName(id string) string {
	if d, err := h.device(id); err == nil {
		return d.Peer.Name
	}
	return id
}

func (h *Hub) postConfirmation(w http.ResponseWriter, r *http.Request) {
	s := h.session(w, r.PathValue("id"))
	if s == nil {
		return
	}
	var req struct {
		Answer string `json:"answer"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	err := h.confirms.Answer(s.ID, r.PathValue("cid"), req.Answer, who(r))
	switch {
	case errors.Is(err, sessions.ErrBadAnswer):
		fail(w, errcode.BadRequest, err.Error())
	case errors.Is(err, sessions.ErrNoConfirmation):
		fail(w, errcode.NotFound, "no confirmation "+strconv.Quote(r.PathValue("cid"))+" in this session")
	case errors.Is(err, sessions.ErrConfirmationClosed):
		fail(w, errcode.Closed, err.Error())
	case err != nil:
		fail(w, errcode.Internal, err.Error())
	default:
		writeJSON(w, http.StatusOK, map[string]string{"id": r.PathValue("cid"), "answer": req.Answer})
	}
}

// audit stores one record. Keys sort by time.
func (h *Hub) audit(rec devicectl.AuditRecord) {
	rec.ID = fmt.Sprintf("a-%020d-%s", rec.Time.UnixNano(), strings.ToLower(rand.Text()[:8]))
	kv := map[string]any{"audit/" + rec.ID[2:]: rec}
	if rec.Conversation != "" {
		kv[auditConvKey(rec.Conversation, rec.ID[2:])] = true
	}
	if err := h.store.PutAll(kv); err != nil {
		h.log.Error("could not store an audit record", "action", rec.Action, "err", err)
	}
	if rec.Conversation != "" {
		h.runtime.Emit(rec.Conversation, "device.action", map[string]any{"action": rec.Action, "device": rec.Device,
			"outcome": rec.Outcome, "detail": rec.Detail, "who": rec.Who, "ms": rec.DurationMS})
	}
	h.metrics.actions.WithLabelValues(rec.Outcome).Inc()
	h.log.Info("device action", "action", rec.Action, "session", rec.Conversation, "device", rec.Device, "outcome", rec.Outcome, "ms", rec.DurationMS)
}

// AuditRecords lists audit records, oldest first, filtered by session and
// device when given.
func (h *Hub) AuditRecords(session, device string) ([]devicectl.AuditRecord, error) {
	out := []devicectl.AuditRecord{}
	if session != "" {
		// The conversation's index names its records.
		var ids []string
		prefix := auditConvKey(session, "")
		if err := h.store.Each(prefix, func(key string, _ []byte) error {
			ids = append(ids, key[len(prefix):])
			return nil
		}); err != nil {
			return out, err
		}
		for _, id := range ids {
			var rec devicectl.AuditRecord
			if err := h.store.Get("audit/"+id, &rec); err != nil {
				return out, err
			}
			if device == "" || rec.Device == device {
				out = append(out, rec)
			}
		}
		return out, nil
	}
	err := h.store.Each("audit/", func(_ string, raw []byte) error {
		var rec devicectl.AuditRecord
		if err := json.Unmarshal(raw, &rec); err != nil {
			return nil
		}
		if (session == "" || rec.Conversation == session) && (device == "" || rec.Device == device) {
			out = append(out, rec)
		}
		return nil
	})
	sort.SliceStable(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, err
}

func (h *Hub) getAudit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	recs, err := h.AuditRecords(q.Get("session"), q.Get("device"))
	if err != nil {
		fail(w, errcode.Internal, "could not read the audit log")
		return
	}
	switch q.Get("format") {
	case "", "json":
		writeJSON(w, http.StatusOK, recs)
	case "jsonl":
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Header().Set("Content-Disposition", `attachment; filename="lowkey-audit.jsonl"`)
		enc := json.NewEncoder(w)
		for _, rec := range recs {
			_ = enc.Encode(rec)
		}
	default:
		fail(w, errcode.BadRequest, "format is json or jsonl")
	}
}

// loadPolicy is the default policy with DATA/policy.json over it.
func loadPolicy(dataDir string, over map[string]devicectl.Decision) (devicectl.Policy, error) {
	p := devicectl.DefaultPolicy()
	raw, err := os.ReadFile(filepath.Join(dataDir, "policy.json"))
	if err == nil {
		var file map[string]devicectl.Decision
		if err := json.Unmarshal(raw, &file); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dataDir, "policy.json"), err)
		}
		if err := p.Merge(file); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dataDir, "policy.json"), err)
		}
	} else if !os.IsNotExist(err) {
		return nil, err
	}
	if err := p.Merge(over); err != nil {
		return nil, err
	}
	return p, nil
}

// budget says a session's memory budget, or why it has none.
func (h *Hub) budget(s *sessions.Session) string {
	if msg := h.runtime.Budget(); msg != "" {
		return msg
	}
	return fmt.Sprintf("%d MiB (cgroup %s)", s.MemoryLimitBytes>>20, h.groups.Mode())
}

// pairedDevice answers 404 unless id is a paired (not revoked) computer.
func (h *Hub) pairedDevice(w http.ResponseWriter, id string) bool {
	d, err := h.device(id)
	if err != nil || d.Revoked {
		fail(w, errcode.NotFound, "no paired device "+strconv.Quote(id))
		return false
	}
	return true
}
