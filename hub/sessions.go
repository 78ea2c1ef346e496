package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/lowkeyhq/lowkey/devicectl"
	"github.com/lowkeyhq/lowkey/errcode"
	"github.com/lowkeyhq/lowkey/sessions"
)

// agentDevices is the box's side of device tools for agents.
type agentDevices struct{ h *Hub }

func (d agentDevices) List(session string) []sessions.DeviceInfo {
	out := []sessions.DeviceInfo{}
	ds, err := d.h.Devices()
	if err != nil {
		d.h.log.Warn("listing the computers for an agent", "session", session, "err", err)
	}
	for _, dv := range ds {
		g, _ := d.h.grant(session, dv.ID)
		out = append(out, sessions.DeviceInfo{ID: dv.ID, Name: dv.Name, Online: dv.Online, Browser: g.Browser, Desktop: g.Desktop})
	}
	return out
}

func (d agentDevices) Do(ctx context.Context, session, who, device, action string, args json.RawMessage) (json.RawMessage, []byte, error) {
	if action == "sys.echo" {
		return nil, nil, errors.New("sys.echo measures the link: only the box's owner can run it")
	}
	release, err := d.h.inFlight.take(session)
	if err != nil {
		return nil, nil, err
	}
	defer release()
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
		fail(w, errcode.BadRequest, "text must be between 1 byte and 64 KiB")
		return
	}
	t, err := h.runtime.StartTurn(s.ID, req.Text, who(r))
	if t != nil && s.Title == sessions.DefaultTitle {
		// The first message names the conversation, everywhere it shows.
		s.Title = sessions.TitleFrom(req.Text)
		if perr := h.store.Put("session/"+s.ID, s); perr != nil {
			h.log.Warn("could not title a conversation from its first message", "session", s.ID, "err", perr)
		} else {
			h.runtime.Emit(s.ID, "session.renamed", map[string]string{"title": s.Title})
			h.changed(SessionsChanged)
		}
	}
	switch {
	case errors.Is(err, sessions.ErrBusy):
		fail(w, errcode.Busy, err.Error())
	case err != nil && t == nil:
		fail(w, errcode.Internal, err.Error())
	case err != nil:
		// The turn exists and failed to start; its events say why.
		writeJSON(w, http.StatusCreated, map[string]string{"turn_id": t.ID, "state": t.State, "detail": t.Detail})
	default:
		writeJSON(w, http.StatusCreated, map[string]string{"turn_id": t.ID})
	}
}

func (h *Hub) runtimeError(w http.ResponseWriter, err error) {
	if errors.Is(err, sessions.ErrNotFound) {
		fail(w, errcode.NotFound, err.Error())
		return
	}
	writeError(w, err)
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
			fail(w, errcode.BadRequest, "since must be an event sequence number")
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
	ws, gone, end, err := h.openStream(w, r, nil)
	if err != nil {
		return
	}
	defer end()
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

// secret is a credential for agents, and the runtimes it is for.
type secret struct {
	Value string `json:"value"`
	// For names one runtime (builtin, openai, exec, ...) or "all".
	For string `json:"for"`
}

// secretRuntimes are the runtimes a secret may be meant for.
var secretRuntimes = func() map[string]bool {
	m := map[string]bool{"all": true}
	for _, r := range sessions.Runtimes {
		m[r] = true
	}
	return m
}()

func (h *Hub) storedSecrets() (map[string]secret, error) {
	out := map[string]secret{}
	err := h.store.Each("secret/", func(key string, raw []byte) error {
		var sc secret
		if json.Unmarshal(raw, &sc) != nil {
			// Stored before secrets had runtimes: meant for all.
			if json.Unmarshal(raw, &sc.Value) != nil {
				return nil
			}
		}
		if sc.For == "" {
			sc.For = "all"
		}
		out[key[len("secret/"):]] = sc
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the box's secrets: %w", err)
	}
	return out, nil
}

// secretsFor is what a turn of runtime gets in its credentials file.
func (h *Hub) secretsFor(runtime string) (map[string]string, error) {
	stored, err := h.storedSecrets()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for name, sc := range stored {
		if sc.For == "all" || sc.For == runtime {
			out[name] = sc.Value
		}
	}
	return out, nil
}

// loadMask tells the masker every secret value the box holds.
func (h *Hub) loadMask() error {
	stored, err := h.storedSecrets()
	if err != nil {
		return err
	}
	all := map[string]string{}
	for name, sc := range stored {
		all[name] = sc.Value
	}
	h.mask.Set(all)
	return nil
}

func (h *Hub) putSecret(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !secretName.MatchString(name) {
		fail(w, errcode.BadRequest, "a secret's name is letters, digits and _, like OPENAI_API_KEY")
		return
	}
	var req struct {
		Value string `json:"value"`
		For   string `json:"for"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	if req.Value == "" {
		fail(w, errcode.BadRequest, "the value is empty")
		return
	}
	if req.For == "" {
		req.For = "all"
	}
	if !secretRuntimes[req.For] {
		fail(w, errcode.BadRequest, "a secret is for all or one of "+strings.Join(sessions.Runtimes, ", ")+", not "+strconv.Quote(req.For))
		return
	}
	if err := h.store.Put("secret/"+name, secret{Value: req.Value, For: req.For}); err != nil {
		fail(w, errcode.Internal, "could not store the secret")
		return
	}
	h.mask.Add(name, req.Value)
	h.log.Info("secret stored", "name", name, "for", req.For)
	h.changed(SettingsChanged)
	writeJSON(w, http.StatusOK, map[string]string{"name": name, "for": req.For})
}

func (h *Hub) getSecrets(w http.ResponseWriter, r *http.Request) {
	type listed struct {
		Name string `json:"name"`
		For  string `json:"for"`
	}
	stored, err := h.storedSecrets()
	if err != nil {
		fail(w, errcode.Internal, err.Error())
		return
	}
	out := []listed{}
	for n, sc := range stored {
		out = append(out, listed{n, sc.For})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	writeJSON(w, http.StatusOK, out)
}

func (h *Hub) deleteSecret(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	stored, err := h.storedSecrets()
	if err != nil {
		fail(w, errcode.Internal, err.Error())
		return
	}
	if _, ok := stored[name]; !ok {
		fail(w, errcode.NotFound, "no secret "+strconv.Quote(name))
		return
	}
	if err := h.store.Delete("secret/" + name); err != nil {
		fail(w, errcode.Internal, "could not remove the secret: it is still stored")
		return
	}
	// The value stays masked while the box runs: it was shown to turns.
	h.changed(SettingsChanged)
	writeJSON(w, http.StatusOK, map[string]string{"deleted": name})
}

// instructionsFile is where the owner keeps the agents' standing
// instructions, in place of the box's own.
const instructionsFile = "instructions.md"

// maxInstructions is the most the owner's instructions may hold.
const maxInstructions = 64 << 10

// instructions are the owner's standing instructions for agents, read for
// every turn so an edit holds from the next one; "" when there are none.
func (h *Hub) instructions() (text, source string) {
	b, err := os.ReadFile(filepath.Join(h.cfg.DataDir, instructionsFile))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			h.log.Warn("the owner's instructions for agents could not be read; the box's own are used", "err", err)
		}
		return "", ""
	}
	if len(b) > maxInstructions {
		h.log.Warn("the owner's instructions for agents are over 64 KiB; the box's own are used")
		return "", ""
	}
	return string(b), "the owner's instructions (DATA/" + instructionsFile + ")"
}
