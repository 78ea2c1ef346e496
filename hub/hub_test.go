package hub_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lowkeyhq/lowkey/companion"
	"github.com/lowkeyhq/lowkey/errcode"
	"github.com/lowkeyhq/lowkey/hub"
	"github.com/lowkeyhq/lowkey/internal/admin"
	"github.com/lowkeyhq/lowkey/internal/local"
	"github.com/lowkeyhq/lowkey/pairing"
	"github.com/lowkeyhq/lowkey/sessions/agent"
	"github.com/lowkeyhq/lowkey/sessions/sandbox"
)

func TestMain(m *testing.M) {
	// The box runs this test binary as its agent worker.
	if len(os.Args) > 1 && os.Args[1] == "agent" {
		os.Exit(agent.Main(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	}
	if len(os.Args) > 1 && os.Args[1] == "worker-init" {
		os.Exit(sandbox.Init(os.Stderr))
	}
	goleak.VerifyTestMain(m,
		// Badger's and glog's process-wide helpers outlive any one store.
		goleak.IgnoreAnyFunction("github.com/golang/glog.(*fileSink).flushDaemon"),
		goleak.IgnoreAnyFunction("github.com/dgraph-io/badger/v4/y.(*WaterMark).process"),
		goleak.IgnoreTopFunction("github.com/dgraph-io/ristretto/v2.(*defaultPolicy[...]).processItems"),
	)
}

func quiet() *slog.Logger {
	if os.Getenv("LOWKEY_TEST_LOG") != "" {
		return slog.Default()
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func startPair(t *testing.T) *local.Pair {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := local.Start(ctx, t.TempDir(), local.Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

type api struct {
	t     *testing.T
	base  string
	token string
	// A signed-in browser instead of the token: its cookie and CSRF token.
	cookie, csrf string
}

// header is how a calls: by token, or as a signed-in browser.
func (a api) header() http.Header {
	h := http.Header{}
	if a.token != "" {
		h.Set("Authorization", "Bearer "+a.token)
	}
	if a.cookie != "" {
		h.Set("Cookie", a.cookie)
		h.Set("X-CSRF-Token", a.csrf)
	}
	return h
}

// member adds someone and signs them in as a browser would.
func member(t *testing.T, owner api, name string) api {
	t.Helper()
	const pw = "a member's password"
	if status, _, raw := owner.do("POST", "/api/v1/users", map[string]string{"name": name, "password": pw}); status != http.StatusCreated {
		t.Fatalf("adding %s: %d %s", name, status, raw)
	}
	body, _ := json.Marshal(map[string]string{"name": name, "password": pw})
	resp, err := http.Post(owner.base+"/api/v1/login", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var me struct{ CSRF string }
	if err := json.NewDecoder(resp.Body).Decode(&me); err != nil || resp.StatusCode != http.StatusOK || len(resp.Cookies()) == 0 {
		t.Fatalf("signing %s in: %d %v", name, resp.StatusCode, err)
	}
	c := resp.Cookies()[0]
	return api{t: t, base: owner.base, cookie: c.Name + "=" + c.Value, csrf: me.CSRF}
}

func (a api) do(method, path string, body any) (int, map[string]any, []byte) {
	a.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, a.base+path, rd)
	req.Header = a.header()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return resp.StatusCode, m, raw
}

func errCode(m map[string]any) string {
	e, _ := m["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func ownerAPI(t *testing.T, p *local.Pair) api {
	return api{t: t, base: p.URL(), token: p.Hub.Token()}
}

func newSession(t *testing.T, a api) string {
	code, m, raw := a.do("POST", "/api/v1/sessions", map[string]string{"title": "t"})
	if code != http.StatusCreated {
		t.Fatalf("create session: %d %s", code, raw)
	}
	return m["id"].(string)
}

func TestSysActionsOverTheLink(t *testing.T) {
	p := startPair(t)
	a := ownerAPI(t, p)
	sid := newSession(t, a)
	path := "/api/v1/sessions/" + sid + "/devices/" + p.DeviceID + "/actions"
	code, m, raw := a.do("POST", path, map[string]any{"action": "sys.info"})
	if code != 200 {
		t.Fatalf("sys.info: %d %s", code, raw)
	}
	res := m["result"].(map[string]any)
	host, _ := os.Hostname()
	if res["hostname"] != host || res["os"] == "" {
		t.Fatalf("sys.info result %v", res)
	}
	caps := res["capabilities"].(map[string]any)
	for _, c := range []string{"browser", "desktop"} {
		cp, ok := caps[c].(map[string]any)
		if !ok || (cp["available"] == false && cp["reason"] == "") {
			t.Fatalf("capability %s without a reason: %v", c, caps)
		}
	}
	code, m, raw = a.do("POST", path, map[string]any{"action": "sys.echo", "args": map[string]int{"bytes": 3 << 20}})
	if code != 200 || m["data_bytes"].(float64) != 3<<20 || len(m["data_base64"].(string)) < 4<<20 {
		t.Fatalf("sys.echo: %d %.200s", code, raw)
	}
	// The device list shows it online with a measured round trip.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var ds []hub.DeviceView
		_, _, raw = a.do("GET", "/api/v1/devices", nil)
		_ = json.Unmarshal(raw, &ds)
		if len(ds) == 1 && ds[0].Online && ds[0].RTTMillis != nil && ds[0].Platform != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("devices: %s", raw)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestAPIErrors(t *testing.T) {
	p := startPair(t)
	a := ownerAPI(t, p)
	anon := api{t: t, base: p.URL()}
	wrong := api{t: t, base: p.URL(), token: "not-the-token"}
	sid := newSession(t, a)
	act := "/api/v1/sessions/" + sid + "/devices/" + p.DeviceID + "/actions"
	cases := []struct {
		name   string
		a      api
		method string
		path   string
		body   any
		status int
		code   string
	}{
		{"no token", anon, "GET", "/api/v1/devices", nil, 401, "unauthorized"},
		{"wrong token", wrong, "GET", "/api/v1/devices", nil, 401, "unauthorized"},
		{"metrics need a token", anon, "GET", "/metrics", nil, 401, "unauthorized"},
		{"bad JSON", a, "POST", "/api/v1/sessions", "{", 400, "bad_json"},
		{"unknown field", a, "POST", "/api/v1/sessions", `{"nope":1}`, 400, "bad_json"},
		{"bad agent", a, "POST", "/api/v1/sessions", `{"agent":"x"}`, 400, "bad_request"},
		{"tiny budget", a, "POST", "/api/v1/sessions", `{"memory_limit_bytes":10}`, 400, "bad_request"},
		{"no session", a, "GET", "/api/v1/sessions/s-nope", nil, 404, "not_found"},
		{"action, no session", a, "POST", "/api/v1/sessions/s-nope/devices/" + p.DeviceID + "/actions", `{"action":"sys.info"}`, 404, "not_found"},
		{"action missing", a, "POST", act, `{}`, 400, "bad_request"},
		{"unknown action", a, "POST", act, `{"action":"sys.format_disk"}`, 400, "unknown_action"},
		{"browser toggle off", a, "POST", act, `{"action":"browser.navigate","args":{"url":"http://127.0.0.1/"}}`, 409, "toggle_off"},
		{"access without toggles", a, "PUT", "/api/v1/sessions/" + sid + "/devices/" + p.DeviceID + "/access", `{}`, 400, "bad_request"},
		{"access unknown device", a, "PUT", "/api/v1/sessions/" + sid + "/devices/nope/access", `{"browser":true}`, 404, "not_found"},
		{"answer unknown confirmation", a, "POST", "/api/v1/sessions/" + sid + "/confirmations/c-nope", `{"answer":"yes"}`, 404, "not_found"},
		{"audit bad format", a, "GET", "/api/v1/audit?format=xml", nil, 400, "bad_request"},
		{"unknown device", a, "POST", "/api/v1/sessions/" + sid + "/devices/nope/actions", `{"action":"sys.info"}`, 404, "not_found"},
		{"echo too large", a, "POST", act, `{"action":"sys.echo","args":{"bytes":1000000000}}`, 400, "bad_args"},
		{"echo bad args", a, "POST", act, `{"action":"sys.echo","args":{"bytes":"many"}}`, 400, "bad_args"},
		{"bad timeout", a, "POST", act, `{"action":"sys.info","timeout_ms":-1}`, 400, "bad_request"},
		{"revoke unknown", a, "DELETE", "/api/v1/devices/nope", nil, 404, "not_found"},
		{"bad ttl", a, "POST", "/api/v1/pairing/codes?ttl=1h", nil, 400, "bad_ttl"},
		{"huge body", a, "POST", "/api/v1/sessions", `{"title":"` + strings.Repeat("x", 17<<20) + `"}`, 413, "too_large"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, m, raw := c.a.do(c.method, c.path, c.body)
			if status != c.status || errCode(m) != c.code {
				t.Fatalf("got %d %s, want %d %s", status, raw, c.status, c.code)
			}
			msg, _ := m["error"].(map[string]any)["message"].(string)
			if msg == "" {
				t.Fatal("error without a message")
			}
		})
	}
	// A pairing code over the API has the promised shape.
	status, m, raw := a.do("POST", "/api/v1/pairing/codes", nil)
	if status != 201 {
		t.Fatalf("pairing code: %d %s", status, raw)
	}
	if c, _ := m["code"].(string); len(c) != 9 || c[4] != '-' {
		t.Fatalf("code %q", m["code"])
	}
}

func TestOfflineDeviceIsAConflict(t *testing.T) {
	p := startPair(t)
	a := ownerAPI(t, p)
	sid := newSession(t, a)
	p.Close() // stops the companion first; the hub too, so restart it
	h, err := hub.Start(hub.Config{DataDir: p.HubDir, Listen: p.Addr(), NoMDNS: true, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	a.base = h.URL()
	status, m, raw := a.do("POST", "/api/v1/sessions/"+sid+"/devices/"+p.DeviceID+"/actions", `{"action":"sys.info"}`)
	if status != 409 || errCode(m) != "device_offline" {
		t.Fatalf("got %d %s", status, raw)
	}
}

// A revoke right as the link comes up (while the box still asks the
// computer what it offers) races the link's own record keeping: several
// rounds, each of which must end revoked.
func TestRevokeCutsTheLinkAndRefusesReconnect(t *testing.T) {
	for round := range 5 {
		t.Run(fmt.Sprint("round", round), revokeRound)
	}
}

func revokeRound(t *testing.T) {
	p := startPair(t)
	a := ownerAPI(t, p)
	start := time.Now()
	if status, _, raw := a.do("DELETE", "/api/v1/devices/"+p.DeviceID, nil); status != 200 {
		t.Fatalf("revoke: %d %s", status, raw)
	}
	// The link ends because of the revoke (the box's word to the
	// computer), not by a timeout noticing it gone; how soon is measured,
	// not asserted (a shared machine's clock says little).
	var err error
	for err == nil && time.Since(start) < 30*time.Second {
		time.Sleep(10 * time.Millisecond)
		err = p.RunnerErr()
	}
	if !pairing.Unpaired(err) {
		t.Fatalf("companion ended with %v", err)
	}
	t.Logf("link closed %s after the revoke", time.Since(start))
	// Its next connection is refused, saying it was unpaired.
	r := companion.NewRunner(companion.Config{State: p.State, LoopbackICE: true, NoMDNS: true, Logger: quiet()})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = r.Run(ctx)
	if !pairing.Unpaired(err) || !strings.Contains(err.Error(), "unpaired") {
		t.Fatalf("reconnect after revoke: %v", err)
	}
	if status, _, _ := a.do("GET", "/api/v1/devices", nil); status != 200 {
		t.Fatal(status)
	}
	_, _, raw := a.do("GET", "/api/v1/devices", nil)
	if strings.Contains(string(raw), p.DeviceID) {
		t.Fatalf("revoked device still listed: %s", raw)
	}
}

// A revoked computer keeps no toggle: one asked for after the revoke is
// refused, and pairing the same computer again starts with everything
// off, as a new pairing should.
func TestRepairedComputerStartsWithTogglesOff(t *testing.T) {
	p := startPair(t)
	a := ownerAPI(t, p)
	sid := newSession(t, a)
	access := "/api/v1/sessions/" + sid + "/devices/" + p.DeviceID + "/access"
	if status, _, raw := a.do("PUT", access, map[string]bool{"browser": true, "desktop": true}); status != 200 {
		t.Fatalf("toggle on: %d %s", status, raw)
	}
	if status, _, raw := a.do("DELETE", "/api/v1/devices/"+p.DeviceID, nil); status != 200 {
		t.Fatalf("revoke: %d %s", status, raw)
	}
	if status, _, raw := a.do("PUT", access, map[string]bool{"browser": true}); status != 404 {
		t.Fatalf("a toggle for a revoked computer: %d %s", status, raw)
	}
	var code struct{ Code string }
	if err := admin.New(hub.SocketPath(p.HubDir)).Do("POST", "/admin/pair-code", nil, &code); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := companion.Pair(ctx, p.State, p.Addr(), code.Code, "laptop"); err != nil {
		t.Fatal(err)
	}
	// Pinned before the computer got the box's keys: listed at once.
	_, _, raw := a.do("GET", "/api/v1/devices", nil)
	if !strings.Contains(string(raw), p.DeviceID) {
		t.Fatalf("the computer is not paired again: %s", raw)
	}
	status, m, raw := a.do("GET", "/api/v1/sessions/"+sid, nil)
	if status != 200 {
		t.Fatalf("session: %d %s", status, raw)
	}
	if g, _ := m["grants"].([]any); len(g) != 0 {
		t.Fatalf("the computer came back with toggles on: %v", g)
	}
}

func TestCompanionUnpairTellsTheBox(t *testing.T) {
	p := startPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := companion.Unpair(ctx, p.State); err != nil {
		t.Fatal(err)
	}
	if _, err := p.State.Hub(); !errors.Is(err, companion.ErrNotPaired) {
		t.Fatalf("companion still has the box: %v", err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for p.RunnerErr() == nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := p.RunnerErr(); !pairing.Unpaired(err) {
		t.Fatalf("running companion ended with %v", err)
	}
	_, _, raw := ownerAPI(t, p).do("GET", "/api/v1/devices", nil)
	if string(bytes.TrimSpace(raw)) != "[]" {
		t.Fatalf("box still lists: %s", raw)
	}
}

func TestTwoCompanionsOnOneHub(t *testing.T) {
	p := startPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var code struct{ Code string }
	if err := admin.New(hub.SocketPath(p.HubDir)).Do("POST", "/admin/pair-code", nil, &code); err != nil {
		t.Fatal(err)
	}
	st := companion.State{Dir: t.TempDir()}
	if _, err := companion.Pair(ctx, st, p.Addr(), code.Code, "desktop"); err != nil {
		t.Fatal(err)
	}
	r := companion.NewRunner(companion.Config{State: st, LoopbackICE: true, NoMDNS: true, Logger: quiet()})
	rctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	defer func() { stop(); <-done }()
	select {
	case <-r.LinkUp():
	case <-time.After(15 * time.Second):
		t.Fatal("second companion did not link")
	}
	id2, _ := st.Identity()
	a := ownerAPI(t, p)
	sid := newSession(t, a)
	for _, dev := range []string{p.DeviceID, id2.ID()} {
		status, _, raw := a.do("POST", "/api/v1/sessions/"+sid+"/devices/"+dev+"/actions", map[string]any{"action": "sys.echo", "args": map[string]int{"bytes": 100}})
		if status != 200 {
			t.Fatalf("device %s: %d %s", dev, status, raw)
		}
	}
	var ds []hub.DeviceView
	_, _, raw := a.do("GET", "/api/v1/devices", nil)
	_ = json.Unmarshal(raw, &ds)
	if len(ds) != 2 || !ds[0].Online || !ds[1].Online || ds[0].ID == ds[1].ID {
		t.Fatalf("devices: %s", raw)
	}
}

// After the box restarts on its address, its computer relinks by itself
// and actions work again (how soon is logged; the e2e test counts calls
// across a restart).
func TestHubRestartCompanionComesBack(t *testing.T) {
	p := startPair(t)
	p.Hub.Close()
	start := time.Now()
	h, err := hub.Start(hub.Config{DataDir: p.HubDir, Listen: p.Addr(), NoMDNS: true, LoopbackICE: true, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	p.Hub = h
	if err := p.WaitLink(context.Background(), 30*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("companion back %s after the hub restarted", time.Since(start))
	a := ownerAPI(t, p)
	sid := newSession(t, a)
	if status, _, raw := a.do("POST", "/api/v1/sessions/"+sid+"/devices/"+p.DeviceID+"/actions", `{"action":"sys.info"}`); status != 200 {
		t.Fatalf("after restart: %d %s", status, raw)
	}
}

func TestSecondHubOnTheSameDataDirIsRefused(t *testing.T) {
	dir := t.TempDir()
	h, err := hub.Start(hub.Config{DataDir: dir, Listen: "127.0.0.1:0", NoMDNS: true, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = hub.Start(hub.Config{DataDir: dir, Listen: "127.0.0.1:0", NoMDNS: true, Logger: quiet()})
	if !errors.Is(err, hub.ErrInUse) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("second hub: %v", err)
	}
	// The refused hub touched nothing of the first: its socket still answers.
	fi, err := os.Stat(hub.SocketPath(dir))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket: %v %v", fi.Mode(), err)
	}
	if err := admin.New(hub.SocketPath(dir)).Do("GET", "/api/v1/devices", nil, nil); err != nil {
		t.Fatalf("the first hub after a second was refused: %v", err)
	}
	// Nor may a restore fill a directory a hub is using.
	if err := hub.Restore(dir, strings.NewReader("")); !errors.Is(err, hub.ErrInUse) {
		t.Fatalf("restore into a running hub's directory: %v", err)
	}
	// Once the first is closed the directory is free again.
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	h2, err := hub.Start(hub.Config{DataDir: dir, Listen: "127.0.0.1:0", NoMDNS: true, Logger: quiet()})
	if err != nil {
		t.Fatalf("a hub after the first closed: %v", err)
	}
	h2.Close()
}

// The admin client hands back the hub's refusal as a typed error with the
// hub's code and words.
func TestAdminClientKeepsTheHubsErrorCode(t *testing.T) {
	dir := t.TempDir()
	h, err := hub.Start(hub.Config{DataDir: dir, Listen: "127.0.0.1:0", NoMDNS: true, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	c := admin.New(hub.SocketPath(dir))
	for _, tc := range []struct {
		method, path string
		body         any
		code         errcode.Code
	}{
		{"DELETE", "/api/v1/devices/d-nosuch", nil, errcode.NotFound},
		{"POST", "/admin/pair-code?ttl=1h", nil, errcode.BadTTL},
		{"POST", "/api/v1/sessions", map[string]any{"memory_limit_bytes": 10}, errcode.BadRequest},
	} {
		err := c.Do(tc.method, tc.path, tc.body, nil)
		var e *errcode.Error
		if !errors.As(err, &e) || e.Code != tc.code || e.Message == "" {
			t.Errorf("%s %s: %#v, want code %s", tc.method, tc.path, err, tc.code)
		}
	}
}

func TestAdminWithoutHubSaysSo(t *testing.T) {
	err := admin.New(hub.SocketPath(t.TempDir())).Do("GET", "/api/v1/devices", nil, nil)
	if !errors.Is(err, admin.ErrNoHub) {
		t.Fatalf("got %v", err)
	}
}
