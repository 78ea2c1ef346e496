package hub

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lowkeyhq/lowkey/devicectl"
	"github.com/lowkeyhq/lowkey/errcode"
	"github.com/lowkeyhq/lowkey/hub/web"
	"github.com/lowkeyhq/lowkey/pairing"
	"github.com/lowkeyhq/lowkey/sessions"
)

// routes is the whole HTTP surface in one table. The admin socket serves
// the same API as the owner, plus what only the box itself may do.
func (h *Hub) routes(admin bool) http.Handler {
	mux := http.NewServeMux()
	const member, owner = false, true
	api := map[string]struct {
		ownerOnly bool
		fn        http.HandlerFunc
	}{
		"GET /api/v1/me":                                      {member, h.getMe},
		"POST /api/v1/logout":                                 {member, h.postLogout},
		"GET /api/v1/users":                                   {owner, h.getUsers},
		"POST /api/v1/users":                                  {owner, h.postUser},
		"DELETE /api/v1/users/{name}":                         {owner, h.deleteUser},
		"POST /api/v1/pairing/codes":                          {owner, h.postPairingCode(false)},
		"GET /api/v1/pairing":                                 {owner, h.getPairing},
		"GET /api/v1/events":                                  {member, h.getBoxEvents},
		"GET /api/v1/secrets":                                 {owner, h.getSecrets},
		"PUT /api/v1/secrets/{name}":                          {owner, h.putSecret},
		"DELETE /api/v1/secrets/{name}":                       {owner, h.deleteSecret},
		"GET /api/v1/settings":                                {member, h.getSettings},
		"PUT /api/v1/settings":                                {owner, h.putSettings},
		"GET /api/v1/devices":                                 {member, h.getDevices},
		"DELETE /api/v1/devices/{id}":                         {owner, h.deleteDevice},
		"GET /api/v1/sessions":                                {member, h.getSessions},
		"GET /api/v1/agents":                                  {member, h.getAgents},
		"POST /api/v1/sessions":                               {member, h.postSession},
		"GET /api/v1/sessions/{id}":                           {member, h.getSession},
		"PATCH /api/v1/sessions/{id}":                         {member, h.patchSession},
		"DELETE /api/v1/sessions/{id}":                        {member, h.deleteSession},
		"POST /api/v1/sessions/{id}/messages":                 {member, h.postMessage},
		"GET /api/v1/sessions/{id}/events":                    {member, h.getEvents},
		"POST /api/v1/sessions/{id}/turns/{turn}/cancel":      {member, h.postCancel},
		"POST /api/v1/sessions/{id}/turns/{turn}/nudge":       {member, h.postNudge},
		"POST /api/v1/sessions/{id}/jobs/{job}/stop":          {member, h.postStopJob},
		"POST /api/v1/sessions/{id}/kill":                     {member, h.postKill},
		"POST /api/v1/sessions/{id}/confirmations/{cid}":      {member, h.postConfirmation},
		"PUT /api/v1/sessions/{id}/devices/{device}/access":   {member, h.putAccess},
		"POST /api/v1/sessions/{id}/devices/{device}/actions": {member, h.postAction},
		"GET /api/v1/sessions/{id}/devices/{device}/live":     {member, h.getLive},
		"GET /api/v1/audit":                                   {member, h.getAudit},
		"POST /api/v1/sessions/{id}/pages":                    {member, h.postPage},
		"GET /api/v1/sessions/{id}/pages":                     {member, h.getPages},
		"DELETE /api/v1/sessions/{id}/pages/{page}":           {member, h.deletePage},
		"GET /metrics":                                        {owner, h.getMetrics},
	}
	for pattern, rt := range api {
		mux.Handle(pattern, h.auth(admin, rt.ownerOnly, rt.fn))
	}
	if admin {
		mux.HandleFunc("POST /admin/pair-code", h.postPairingCode(true))
		mux.HandleFunc("PUT /admin/secrets/{name}", h.putSecret)
		mux.HandleFunc("GET /admin/secrets", h.getSecrets)
		mux.HandleFunc("DELETE /admin/secrets/{name}", h.deleteSecret)
		mux.HandleFunc("GET /admin/token", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, map[string]string{"token": h.Token()})
		})
		mux.HandleFunc("POST /admin/token", func(w http.ResponseWriter, r *http.Request) {
			tok, err := h.RotateToken()
			if err != nil {
				fail(w, errcode.Internal, err.Error()+": the old token still works")
				return
			}
			h.log.Info("the owner's API token was replaced")
			writeJSON(w, http.StatusOK, map[string]string{"token": tok})
		})
		mux.HandleFunc("GET /admin/backup", h.getBackup)
		mux.HandleFunc("GET /admin/doctor", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, map[string]any{"checks": h.Doctor(r.Context())})
		})
		mux.HandleFunc("GET /admin/setup", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, map[string]string{"url": h.SetupURL()})
		})
		return h.limitBody(mux)
	}
	// These authenticate by the setup link, a password, a pairing code or
	// pinned keys, not by a session.
	mux.HandleFunc("POST /api/v1/setup", h.postSetup)
	mux.HandleFunc("POST /api/v1/login", h.postLogin)
	mux.HandleFunc("GET /api/v1/pair", h.handlePair)
	mux.HandleFunc("GET /api/v1/link", h.handleLink)
	mux.Handle("GET /", web.Handler())
	return h.securityHeaders(h.limitBody(mux))
}

func (h *Hub) securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.metrics.requests.Inc()
		// A change the store has no room for is refused before it starts.
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if err := h.store.Room(); err != nil {
				fail(w, errcode.DiskFull, err.Error())
				return
			}
		}
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("Referrer-Policy", "no-referrer")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' blob: data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// readJSON decodes a request body strictly; an empty body is {}.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if errors.Is(err, io.EOF) {
		return true
	}
	if err == nil && dec.More() {
		err = errors.New("trailing data after the JSON object")
	}
	if err != nil {
		if bodyError(w, err) {
			return false
		}
		fail(w, errcode.BadJSON, "the request body is not valid JSON for this call: "+err.Error())
		return false
	}
	return true
}

func (h *Hub) postPairingCode(fromBox bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ttl := pairing.WindowTTL
		if s := r.URL.Query().Get("ttl"); s != "" {
			d, err := time.ParseDuration(s)
			if err != nil || d <= 0 || d > pairing.WindowTTL {
				fail(w, errcode.BadTTL, "ttl must be a duration up to 5m, like 90s")
				return
			}
			ttl = d
		}
		code, exp, err := h.window.Open(ttl, fromBox)
		if errors.Is(err, pairing.ErrLocked) {
			fail(w, errcode.PairingLocked, err.Error())
			return
		}
		if err != nil {
			fail(w, errcode.Internal, "could not make a code")
			return
		}
		h.log.Info("pairing window open", "expires", exp.Format(time.RFC3339), "from_box", fromBox)
		h.pairingChanged("")
		hub, reach := h.pairAddress()
		writeJSON(w, http.StatusCreated, map[string]any{"code": pairing.FormatCode(code), "expires_at": exp.UTC(), "hub": hub, "reach": reach})
	}
}

func (h *Hub) getDevices(w http.ResponseWriter, r *http.Request) {
	ds, err := h.Devices()
	if err != nil {
		fail(w, errcode.Internal, "could not read devices")
		return
	}
	writeJSON(w, http.StatusOK, ds)
}

func (h *Hub) deleteDevice(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	err := h.Revoke(id, "revoked by the owner")
	if errors.Is(err, ErrNotFound) {
		fail(w, errcode.NotFound, "no paired device "+strconv.Quote(id))
		return
	}
	if err != nil {
		fail(w, errcode.Internal, "could not revoke")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "revoked": true})
}

// getAgents lists the agents a session may run, with what each needs.
func (h *Hub) getAgents(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"agents": h.runtime.Agents()})
}

func (h *Hub) postSession(w http.ResponseWriter, r *http.Request) {
	var req sessions.NewRequest
	if !readJSON(w, r, &req) {
		return
	}
	s, err := sessions.New(req, h.cfg.SessionMemory)
	if err != nil {
		fail(w, errcode.BadRequest, err.Error())
		return
	}
	// An exec: agent is any program the box will run: the owner's choice;
	// of the others, members have those the owner gave them.
	if p, _ := r.Context().Value(principalKey{}).(principal); p.role != RoleOwner {
		allowed, err := h.memberAgents()
		if err != nil {
			fail(w, errcode.Internal, "could not read which agents members may choose: "+err.Error())
			return
		}
		if !slices.Contains(allowed, s.Agent) {
			fail(w, errcode.OwnerOnly, "only the box's owner can choose the agent "+strconv.Quote(s.Agent)+"; members may choose "+strings.Join(allowed, ", "))
			return
		}
	}
	if err := h.store.Put("session/"+s.ID, s); err != nil {
		fail(w, errcode.Internal, "could not save the session")
		return
	}
	if err := h.runtime.Prepare(s.ID); err != nil {
		h.log.Error("session budget", "session", s.ID, "err", err)
	}
	h.changed(SessionsChanged)
	writeJSON(w, http.StatusCreated, map[string]string{"id": s.ID})
}

func (h *Hub) session(w http.ResponseWriter, id string) *sessions.Session {
	var s sessions.Session
	if err := h.store.Get("session/"+id, &s); err != nil {
		fail(w, errcode.NotFound, "no session "+strconv.Quote(id))
		return nil
	}
	return &s
}

func (h *Hub) getSession(w http.ResponseWriter, r *http.Request) {
	s := h.session(w, r.PathValue("id"))
	if s == nil {
		return
	}
	grants := []devicectl.Grant{}
	err := h.store.Each("grant/"+s.ID+"/", func(_ string, raw []byte) error {
		var g devicectl.Grant
		if json.Unmarshal(raw, &g) == nil {
			grants = append(grants, g)
		}
		return nil
	})
	if err != nil {
		// Showing no grant where there may be one would mislead.
		fail(w, errcode.Internal, "could not read the conversation's device access: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, struct {
		*sessions.Session
		Budget        string                  `json:"budget"`
		Turns         []sessions.Turn         `json:"turns"`
		Jobs          []sessions.Job          `json:"jobs"`
		Grants        []devicectl.Grant       `json:"grants"`
		Confirmations []sessions.Confirmation `json:"confirmations"`
	}{s, h.budget(s), h.runtime.Turns(s.ID), h.runtime.Jobs(s.ID), grants, h.confirms.Pending(s.ID)})
}

type actionRequest struct {
	Action    string          `json:"action"`
	Args      json.RawMessage `json:"args"`
	TimeoutMS int64           `json:"timeout_ms"`
}

type actionResponse struct {
	Action     string          `json:"action"`
	Device     string          `json:"device"`
	Result     json.RawMessage `json:"result"`
	Data       string          `json:"data_base64,omitempty"`
	DataBytes  int             `json:"data_bytes"`
	DurationMS float64         `json:"duration_ms"`
}

func (h *Hub) postAction(w http.ResponseWriter, r *http.Request) {
	s := h.session(w, r.PathValue("id"))
	if s == nil {
		return
	}
	var req actionRequest
	if !readJSON(w, r, &req) {
		return
	}
	devID := r.PathValue("device")
	_, known := devicectl.Lookup(req.Action)
	switch {
	case req.Action == "":
		fail(w, errcode.BadRequest, "action is required, like \"sys.info\"")
		return
	case !known:
		fail(w, errcode.UnknownAction, "unknown action "+strconv.Quote(req.Action))
		return
	case req.TimeoutMS < 0 || req.TimeoutMS > 600_000:
		fail(w, errcode.BadRequest, "timeout_ms must be between 0 and 600000")
		return
	}
	if req.Action == "sys.echo" {
		// A benchmark of the link: the owner's, and bounded.
		if p, _ := r.Context().Value(principalKey{}).(principal); p.role != RoleOwner {
			fail(w, errcode.OwnerOnly, "sys.echo measures the link: only the box's owner can run it")
			return
		}
		n, err := checkEcho(req.Args)
		if err != nil {
			fail(w, errcode.BadArgs, err.Error())
			return
		}
		if n > 64<<10 {
			select {
			case h.echoing <- struct{}{}:
				defer func() { <-h.echoing }()
			case <-r.Context().Done():
				return
			}
		}
	}
	if !h.pairedDevice(w, devID) {
		return
	}
	timeout := 30 * time.Second
	if req.TimeoutMS > 0 {
		timeout = time.Duration(req.TimeoutMS) * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	start := time.Now()
	// A session kill cancels actions started here too.
	stop := context.AfterFunc(h.runtime.SessionContext(s.ID), cancel)
	defer stop()
	release, err := h.inFlight.take(s.ID)
	if err != nil {
		fail(w, errcode.SessionBusy, err.Error())
		return
	}
	defer release()
	res, err := h.gate.Do(ctx, devicectl.GateRequest{Who: who(r), Conversation: s.ID, Device: devID, Action: req.Action, Args: req.Args})
	if err != nil {
		actionError(w, err)
		return
	}
	out := actionResponse{Action: req.Action, Device: devID, Result: res.JSON, DataBytes: len(res.Blob), DurationMS: float64(time.Since(start).Microseconds()) / 1000}
	if out.Result == nil {
		out.Result = json.RawMessage("{}")
	}
	if len(res.Blob) > 0 {
		out.Data = base64.StdEncoding.EncodeToString(res.Blob)
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *Hub) getMetrics(w http.ResponseWriter, r *http.Request) {
	h.metrics.handler().ServeHTTP(w, r)
}

func (h *Hub) getSessions(w http.ResponseWriter, r *http.Request) {
	out := []sessions.Session{}
	err := h.store.Each("session/", func(_ string, raw []byte) error {
		var s sessions.Session
		if json.Unmarshal(raw, &s) == nil {
			out = append(out, s)
		}
		return nil
	})
	if err != nil {
		fail(w, errcode.Internal, "could not read the conversations: "+err.Error())
		return
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.After(out[j].CreatedAt) })
	writeJSON(w, http.StatusOK, out)
}

func (h *Hub) patchSession(w http.ResponseWriter, r *http.Request) {
	s := h.session(w, r.PathValue("id"))
	if s == nil {
		return
	}
	var req struct {
		Title string `json:"title"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	if req.Title == "" || len(req.Title) > 200 {
		fail(w, errcode.BadRequest, "a title is 1 to 200 bytes")
		return
	}
	s.Title = req.Title
	if err := h.store.Put("session/"+s.ID, s); err != nil {
		fail(w, errcode.Internal, "could not save")
		return
	}
	h.runtime.Emit(s.ID, "session.renamed", map[string]string{"title": s.Title})
	h.changed(SessionsChanged)
	writeJSON(w, http.StatusOK, s)
}

// deleteSession ends a conversation: its work stops, its grants end on
// the computers too, its pages are unpublished, its records go.
func (h *Hub) deleteSession(w http.ResponseWriter, r *http.Request) {
	s := h.session(w, r.PathValue("id"))
	if s == nil {
		return
	}
	if err := h.runtime.Forget(s.ID); err != nil {
		h.log.Warn("stopping a deleted conversation's work", "session", s.ID, "err", err)
	}
	// Its grants go first: a conversation must not end with device
	// control still on.
	devices := map[string]bool{}
	var grants []string
	if err := h.store.Each("grant/"+s.ID+"/", func(key string, raw []byte) error {
		grants = append(grants, key)
		devices[key[strings.LastIndex(key, "/")+1:]] = true
		return nil
	}); err != nil {
		fail(w, errcode.Internal, "could not read the conversation's device access, so it was not deleted: "+err.Error())
		return
	}
	for _, k := range grants {
		if err := h.store.Delete(k); err != nil {
			fail(w, errcode.Internal, "could not end the conversation's device access, so it was not deleted: "+err.Error())
			return
		}
	}
	if err := h.store.Delete("session/" + s.ID); err != nil {
		fail(w, errcode.Internal, "could not delete the conversation")
		return
	}
	var keys []string
	for _, prefix := range []string{"turn/" + s.ID + "/", "job/" + s.ID + "/", "event/" + s.ID + "/"} {
		if err := h.store.Each(prefix, func(key string, _ []byte) error {
			keys = append(keys, key)
			return nil
		}); err != nil {
			h.log.Error("reading a deleted conversation's records", "session", s.ID, "err", err)
		}
	}
	left := 0
	for _, k := range keys {
		if err := h.store.Delete(k); err != nil {
			left++
		}
	}
	if left > 0 {
		// The conversation itself is gone; what is left of it is
		// unreachable, and its grants are pushed away below.
		h.log.Error("records of a deleted conversation could not be removed", "session", s.ID, "left", left, "of", len(keys))
	}
	for dev := range devices {
		h.pushGrants(dev)
		h.checkLive(dev)
	}
	pgs, err := h.pages.List(s.ID)
	if err != nil {
		h.log.Error("reading a deleted conversation's pages: they may still be published", "session", s.ID, "err", err)
	}
	for _, pg := range pgs {
		if err := h.pages.Unpublish(pg.ID); err != nil {
			h.log.Error("a deleted conversation's page could not be unpublished", "session", s.ID, "page", pg.ID, "err", err)
		}
	}
	h.log.Info("conversation deleted", "session", s.ID, "by", who(r))
	h.changed(SessionsChanged)
	writeJSON(w, http.StatusOK, map[string]string{"deleted": s.ID})
}
