package hub_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/lowkeyhq/lowkey/hub"
)

// boxStream follows the box's own event stream as a page does.
type boxStream struct {
	t  *testing.T
	ws *websocket.Conn
}

func followBox(t *testing.T, a api) *boxStream {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(a.base, "http")+"/api/v1/events", a.header())
	if err != nil {
		t.Fatalf("the box's events: %v %v", err, resp)
	}
	t.Cleanup(func() { ws.Close() })
	return &boxStream{t: t, ws: ws}
}

// next is the next event, whatever it is.
func (s *boxStream) next() hub.BoxEvent {
	s.t.Helper()
	_ = s.ws.SetReadDeadline(time.Now().Add(20 * time.Second))
	var e struct {
		Type string
		Data map[string]any
	}
	if err := s.ws.ReadJSON(&e); err != nil {
		s.t.Fatalf("waiting for a box event: %v", err)
	}
	return hub.BoxEvent{Type: e.Type, Data: e.Data}
}

// Every open page hears what changed: the owner's pages see the pairing
// code (made, then used or replaced), a member's never do; both see
// conversations, people and settings change.
func TestBoxEventsReachEveryPage(t *testing.T) {
	_, owner := startBox(t, nil)
	bob := member(t, owner, "bob")
	os1, bs := followBox(t, owner), followBox(t, bob)

	status, code, raw := owner.do("POST", "/api/v1/pairing/codes", nil)
	if status != http.StatusCreated || code["hub"] != strings.TrimPrefix(owner.base, "http://") || code["reach"] == "" {
		// A box on loopback: the command names its loopback address and
		// says that only the box itself reaches it.
		t.Fatalf("a pairing code: %d %s", status, raw)
	}
	e := os1.next()
	if d, _ := e.Data.(map[string]any); e.Type != hub.PairingChanged || d["code"] != code["code"] || d["open"] != true {
		t.Fatalf("the owner's page heard %+v after a code %v was made", e, code["code"])
	}
	if _, m, _ := owner.do("GET", "/api/v1/pairing", nil); m["code"] != code["code"] {
		t.Fatalf("a page opened now shows %v, not the open code %v", m["code"], code["code"])
	}
	if status, _, _ := bob.do("GET", "/api/v1/pairing", nil); status != http.StatusForbidden {
		t.Fatalf("a member reads the pairing code: %d", status)
	}
	// A second code replaces the first on every owner's page.
	_, code2, _ := owner.do("POST", "/api/v1/pairing/codes", nil)
	if e := os1.next(); e.Data.(map[string]any)["code"] != code2["code"] || code2["code"] == code["code"] {
		t.Fatalf("after a new code: %+v (was %v)", e, code["code"])
	}

	// The member's first event is the conversation made after the codes:
	// the codes never reached them.
	sid := newSession(t, bob)
	if e := bs.next(); e.Type != hub.SessionsChanged {
		t.Fatalf("the member's page heard %+v first", e)
	}
	if e := os1.next(); e.Type != hub.SessionsChanged {
		t.Fatalf("the owner's page heard %+v", e)
	}
	owner.do("PATCH", "/api/v1/sessions/"+sid, map[string]string{"title": "renamed"})
	if e := bs.next(); e.Type != hub.SessionsChanged {
		t.Fatalf("a rename: %+v", e)
	}
	if status, _, raw := owner.do("DELETE", "/api/v1/sessions/"+sid, nil); status != http.StatusOK {
		t.Fatalf("delete: %d %s", status, raw)
	}
	if e := bs.next(); e.Type != hub.SessionsChanged {
		t.Fatalf("a delete: %+v", e)
	}
	owner.do("PUT", "/api/v1/settings", map[string]any{"instructions": "be brief"})
	if e := bs.next(); e.Type != hub.SettingsChanged {
		t.Fatalf("a settings change: %+v", e)
	}
	owner.do("DELETE", "/api/v1/users/bob", nil)
	for _, want := range []string{hub.SessionsChanged, hub.SessionsChanged, hub.SettingsChanged, hub.UsersChanged} {
		if e := os1.next(); e.Type != want {
			t.Fatalf("the owner's page heard %+v, want %s", e, want)
		}
	}
}

// The owner chooses which agents members may start; exec: is never one of
// them; the standing instructions are the owner's file, set and removed
// from the app; secrets are managed by name from the app, by the owner.
func TestOwnerSettingsFromTheApp(t *testing.T) {
	h, owner := startBox(t, nil)
	bob := member(t, owner, "bob")
	_, m, _ := bob.do("GET", "/api/v1/settings", nil)
	if list, _ := m["member_agents"].([]any); len(list) < 3 || list[0] != "builtin" {
		t.Fatalf("the agents members may choose by default: %v", m["member_agents"])
	}
	if status, _, _ := bob.do("PUT", "/api/v1/settings", map[string]any{"member_agents": []string{"builtin"}}); status != http.StatusForbidden {
		t.Fatalf("a member changed the settings: %d", status)
	}
	if status, m, _ := owner.do("PUT", "/api/v1/settings", map[string]any{"member_agents": []string{"exec:/bin/sh"}}); status != http.StatusBadRequest || !strings.Contains(m["error"].(map[string]any)["message"].(string), "exec:/bin/sh") {
		t.Fatalf("exec: for members: %d %v", status, m)
	}
	if status, _, raw := owner.do("PUT", "/api/v1/settings", map[string]any{"member_agents": []string{"openai"}}); status != http.StatusOK {
		t.Fatalf("%d %s", status, raw)
	}
	if status, m, _ := bob.do("POST", "/api/v1/sessions", map[string]string{"agent": "builtin"}); status != http.StatusForbidden || !strings.Contains(m["error"].(map[string]any)["message"].(string), "members may choose openai") {
		t.Fatalf("a member starting builtin after the owner took it away: %d %v", status, m)
	}
	if status, _, raw := bob.do("POST", "/api/v1/sessions", map[string]string{"agent": "openai"}); status != http.StatusCreated {
		t.Fatalf("a member starting openai: %d %s", status, raw)
	}
	if status, _, raw := owner.do("POST", "/api/v1/sessions", map[string]string{"agent": "builtin"}); status != http.StatusCreated {
		t.Fatalf("the owner keeps every agent: %d %s", status, raw)
	}

	file := filepath.Join(h.DataDir(), "instructions.md")
	if status, m, raw := owner.do("PUT", "/api/v1/settings", map[string]any{"instructions": "Answer in French."}); status != http.StatusOK || m["instructions"] != "Answer in French." {
		t.Fatalf("instructions: %d %s", status, raw)
	}
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the instructions file: %v %v", st, err)
	}
	if status, _, _ := owner.do("PUT", "/api/v1/settings", map[string]any{"instructions": strings.Repeat("x", 64<<10+1)}); status != http.StatusBadRequest {
		t.Fatalf("65 KiB of instructions: %d", status)
	}
	if b, _ := os.ReadFile(file); string(b) != "Answer in French." {
		t.Fatalf("a refused change altered the file: %q", b)
	}
	if status, m, _ := owner.do("PUT", "/api/v1/settings", map[string]any{"instructions": ""}); status != http.StatusOK || m["instructions"] != "" || m["default_instructions"] == "" {
		t.Fatalf("back to the box's own: %d %v", status, m)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("the file is still there: %v", err)
	}

	if status, _, _ := bob.do("PUT", "/api/v1/secrets/API_KEY", map[string]string{"value": "s3cret"}); status != http.StatusForbidden {
		t.Fatalf("a member stored a secret: %d", status)
	}
	if status, _, raw := owner.do("PUT", "/api/v1/secrets/API_KEY", map[string]string{"value": "s3cret", "for": "openai"}); status != http.StatusOK {
		t.Fatalf("%d %s", status, raw)
	}
	_, _, raw := owner.do("GET", "/api/v1/secrets", nil)
	if string(raw) != `[{"name":"API_KEY","for":"openai"}]`+"\n" {
		t.Fatalf("the secrets listed: %s", raw)
	}
	if status, _, _ := owner.do("DELETE", "/api/v1/secrets/API_KEY", nil); status != http.StatusOK {
		t.Fatalf("remove: %d", status)
	}
	if _, _, raw := owner.do("GET", "/api/v1/secrets", nil); string(raw) != "[]\n" {
		t.Fatalf("after removing: %s", raw)
	}
}
