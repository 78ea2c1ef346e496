package hub

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/gorilla/websocket"

	"github.com/lowkeyhq/lowkey/devicectl"
	"github.com/lowkeyhq/lowkey/sessions"
)

// agentDevices is the box's side of device tools for agents.
type agentDevices struct{ h *Hub }

type agentDevice struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Online  bool   `json:"online"`
	Browser bool   `json:"browser"`
	Desktop bool   `json:"desktop"`
}

func (d agentDevices) List(session string) any {
	out := []agentDevice{}
	ds, _ := d.h.Devices()
	for _, dv := range ds {
		g, _ := d.h.grant(session, dv.ID)
		out = append(out, agentDevice{ID: dv.ID, Name: dv.Name, Online: dv.Online, Browser: g.Browser, Desktop: g.Desktop})
	}
	return out
}

func (d agentDevices) Do(ctx context.Context, session, who, device, action string, args json.RawMessage) (json.RawMessage, []byte, error) {
	res, err := d.h.gate.Do(ctx, devicectl.GateRequest{Who: who, Conversation: session, Device: device, Action: action, Args: args})
	if err != nil {
		return nil, nil, err
	}
	return res.JSON, res.Blob, nil
}

func (h *Hub) postMessage(w http.ResponseWriter, r *http.Request) {
	s := h.session(w, r.PathValue("id"))
	if s == nil {
		return
	}
	var req struct {
		Text string `json:"text"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	if req.Text == "" || len(req.Text) > 64<<10 {
		writeError(w, http.StatusBadRequest, "bad_request", "text must be between 1 byte and 64 KiB")
		return
	}
	t, err := h.runtime.StartTurn(s.ID, req.Text)
	switch {
	case errors.Is(err, sessions.ErrBusy):
		writeError(w, http.StatusConflict, "busy", err.Error())
	case err != nil && t == nil:
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
	case err != nil:
		// The turn exists and failed to start; its events say why.
		writeJSON(w, http.StatusCreated, map[string]string{"turn_id": t.ID, "state": t.State, "detail": t.Detail})
	default:
		writeJSON(w, http.StatusCreated, map[string]string{"turn_id": t.ID})
	}
}

func (h *Hub) runtimeError(w http.ResponseWriter, err error) {
	if errors.Is(err, sessions.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", err.Error())
		return
	}
	writeError(w, http.StatusInternalServerError, "internal", err.Error())
}

func (h *Hub) postCancel(w http.ResponseWriter, r *http.Request) {
	s := h.session(w, r.PathValue("id"))
	if s == nil {
		return
	}
	start := time.Now()
	if err := h.runtime.CancelTurn(s.ID, r.PathValue("turn")); err != nil {
		h.runtimeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"turn": r.PathValue("turn"), "state": sessions.StateCancelled, "took_ms": time.Since(start).Milliseconds()})
}

func (h *Hub) postNudge(w http.ResponseWriter, r *http.Request) {
	s := h.session(w, r.PathValue("id"))
	if s == nil {
		return
	}
	if err := h.runtime.Nudge(s.ID, r.PathValue("turn")); err != nil {
		h.runtimeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"turn": r.PathValue("turn"), "nudged": "yes"})
}

func (h *Hub) postStopJob(w http.ResponseWriter, r *http.Request) {
	s := h.session(w, r.PathValue("id"))
	if s == nil {
		return
	}
	j, err := h.runtime.StopJob(s.ID, r.PathValue("job"))
	if err != nil {
		h.runtimeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, j)
}

func (h *Hub) postKill(w http.ResponseWriter, r *http.Request) {
	s := h.session(w, r.PathValue("id"))
	if s == nil {
		return
	}
	start := time.Now()
	if err := h.runtime.Kill(s.ID); err != nil {
		h.runtimeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"killed": true, "took_ms": time.Since(start).Milliseconds()})
}

var eventsUpgrader = websocket.Upgrader{
	// Bearer-authenticated clients send no Origin; a browser's must be
	// this box.
	CheckOrigin: func(r *http.Request) bool {
		o := r.Header.Get("Origin")
		return o == "" || o == "http://"+r.Host || o == "https://"+r.Host
	},
}

// getEvents replays what a client missed, then streams.
func (h *Hub) getEvents(w http.ResponseWriter, r *http.Request) {
	s := h.session(w, r.PathValue("id"))
	if s == nil {
		return
	}
	var since uint64
	if v := r.URL.Query().Get("since"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", "since must be an event sequence number")
			return
		}
		since = n
	}
	replay, live, cancel, err := h.runtime.Events(s.ID, since)
	if err != nil {
		h.runtimeError(w, err)
		return
	}
	defer cancel()
	ws, err := eventsUpgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	h.wg.Add(1)
	defer h.wg.Done()
	defer ws.Close()
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				return
			}
		}
	}()
	last := since
	send := func(e sessions.Event) bool {
		if e.Seq <= last {
			return true
		}
		last = e.Seq
		_ = ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
		return ws.WriteJSON(e) == nil
	}
	for _, e := range replay {
		if !send(e) {
			return
		}
	}
	for {
		select {
		case e, ok := <-live:
			if !ok {
				// Fell behind: the client reconnects with since=last.
				_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseTryAgainLater, "reconnect with since="+strconv.FormatUint(last, 10)), time.Now().Add(time.Second))
				return
			}
			if !send(e) {
				return
			}
		case <-gone:
			return
		case <-h.ctx.Done():
			return
		}
	}
}

var secretName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

func (h *Hub) secrets() map[string]string {
	out := map[string]string{}
	_ = h.store.Each("secret/", func(key string, raw []byte) error {
		var v string
		if json.Unmarshal(raw, &v) == nil {
			out[key[len("secret/"):]] = v
		}
		return nil
	})
	return out
}

func (h *Hub) putSecret(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !secretName.MatchString(name) {
		writeError(w, http.StatusBadRequest, "bad_request", "a secret's name is letters, digits and _, like OPENAI_API_KEY")
		return
	}
	var req struct {
		Value string `json:"value"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	if req.Value == "" {
		writeError(w, http.StatusBadRequest, "bad_request", "the value is empty")
		return
	}
	if err := h.store.Put("secret/"+name, req.Value); err != nil {
		writeError(w, http.StatusInternalServerError, "internal", "could not store the secret")
		return
	}
	h.log.Info("secret stored", "name", name)
	writeJSON(w, http.StatusOK, map[string]string{"name": name})
}

func (h *Hub) getSecrets(w http.ResponseWriter, r *http.Request) {
	names := []string{}
	for n := range h.secrets() {
		names = append(names, n)
	}
	writeJSON(w, http.StatusOK, names)
}

func (h *Hub) deleteSecret(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, ok := h.secrets()[name]; !ok {
		writeError(w, http.StatusNotFound, "not_found", "no secret "+strconv.Quote(name))
		return
	}
	_ = h.store.Delete("secret/" + name)
	writeJSON(w, http.StatusOK, map[string]string{"deleted": name})
}
