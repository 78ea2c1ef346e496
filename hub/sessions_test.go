package hub_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/lowkeyhq/lowkey/hub"
	"github.com/lowkeyhq/lowkey/internal/admin"
	"github.com/lowkeyhq/lowkey/internal/local"
	"github.com/lowkeyhq/lowkey/internal/modeltest"
	"github.com/lowkeyhq/lowkey/internal/testenv"
	"github.com/lowkeyhq/lowkey/sessions"
	"github.com/lowkeyhq/lowkey/sessions/cgroup"
)

func requireCgroups(t *testing.T) {
	t.Helper()
	if m := cgroup.Detect("lowkey-probe"); m.Mode() == "none" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no cgroups in CI: %s", m.Unavailable())
		}
		t.Skipf("no cgroups here: %s", m.Unavailable())
	}
}

// box is a hub alone (no companion), for session work.
func startBox(t *testing.T, mutate func(*hub.Config)) (*hub.Hub, api) {
	t.Helper()
	requireCgroups(t)
	cfg := hub.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", NoMDNS: true, Logger: quiet(), StallAfter: time.Minute}
	if mutate != nil {
		mutate(&cfg)
	}
	h, err := hub.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h, api{t: t, base: h.URL(), token: h.Token()}
}

func newAgentSession(t *testing.T, a api, body map[string]any) string {
	t.Helper()
	status, m, raw := a.do("POST", "/api/v1/sessions", body)
	if status != 201 {
		t.Fatalf("session: %d %s", status, raw)
	}
	return m["id"].(string)
}

func say(t *testing.T, a api, sid, text string) string {
	t.Helper()
	status, m, raw := a.do("POST", "/api/v1/sessions/"+sid+"/messages", map[string]string{"text": text})
	if status != 201 {
		t.Fatalf("message: %d %s", status, raw)
	}
	return m["turn_id"].(string)
}

// stream follows a session's events.
type stream struct {
	t    *testing.T
	ws   *websocket.Conn
	last uint64
	seen []sessions.Event
}

func follow(t *testing.T, a api, sid string, since uint64) *stream {
	t.Helper()
	u := "ws" + strings.TrimPrefix(a.base, "http") + fmt.Sprintf("/api/v1/sessions/%s/events?since=%d", sid, since)
	ws, _, err := websocket.DefaultDialer.Dial(u, http.Header{"Authorization": {"Bearer " + a.token}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	return &stream{t: t, ws: ws, last: since}
}

// until reads events until one matches, and returns it.
func (s *stream) until(limit time.Duration, match func(sessions.Event) bool) sessions.Event {
	s.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		_ = s.ws.SetReadDeadline(deadline)
		var e sessions.Event
		if err := s.ws.ReadJSON(&e); err != nil {
			s.t.Fatalf("waiting for an event: %v (seen %d)", err, len(s.seen))
		}
		if e.Seq != s.last+1 {
			s.t.Fatalf("event %d after %d: a gap", e.Seq, s.last)
		}
		s.last = e.Seq
		s.seen = append(s.seen, e)
		if match(e) {
			return e
		}
	}
}

func turnState(turn, state string) func(sessions.Event) bool {
	return func(e sessions.Event) bool {
		var d struct{ State string }
		_ = json.Unmarshal(e.Data, &d)
		return e.Type == "turn.state" && e.Turn == turn && d.State == state
	}
}

func getTurn(t *testing.T, a api, sid, turn string) sessions.Turn {
	t.Helper()
	_, _, raw := a.do("GET", "/api/v1/sessions/"+sid, nil)
	var s struct{ Turns []sessions.Turn }
	_ = json.Unmarshal(raw, &s)
	for _, tr := range s.Turns {
		if tr.ID == turn {
			return tr
		}
	}
	t.Fatalf("no turn %s in %s", turn, raw)
	return sessions.Turn{}
}

func TestRunawayTurnFailsAloneAtItsBudget(t *testing.T) {
	_, a := startBox(t, nil)
	small := newAgentSession(t, a, map[string]any{"memory_limit_bytes": 64 << 20})
	other := newAgentSession(t, a, nil)
	es := follow(t, a, small, 0)
	eo := follow(t, a, other, 0)
	hog := say(t, a, small, "allocate 400")
	calm := say(t, a, other, "run echo still here")
	es.until(30*time.Second, turnState(hog, sessions.StateOOM))
	eo.until(30*time.Second, turnState(calm, sessions.StateDone))
	tr := getTurn(t, a, small, hog)
	if tr.Detail != "memory budget of 64 MiB exceeded" {
		t.Fatalf("detail %q", tr.Detail)
	}
	if r := getTurn(t, a, other, calm); !strings.Contains(r.Reply, "still here") {
		t.Fatalf("the other session's reply: %q", r.Reply)
	}
	// The box is untouched, and the small session works again.
	next := say(t, a, small, "echo recovered")
	es.until(30*time.Second, turnState(next, sessions.StateDone))
}

// A turn and a job run in sessions of their own, away from the box's
// terminal: an agent cannot read the keyboard of whoever started the box.
func TestWorkersHaveNoTerminalOfTheBox(t *testing.T) {
	_, a := startBox(t, nil)
	// pid (comm) state ppid pgrp session tty_nr ...
	fields := func(stat string) []string {
		if i := strings.LastIndex(stat, ")"); i >= 0 {
			if f := strings.Fields(stat[i+1:]); len(f) >= 5 {
				return f
			}
		}
		t.Fatalf("not a stat line: %q", stat)
		return nil
	}
	mine, _ := os.ReadFile("/proc/self/stat")
	box := fields(string(mine))[3]
	check := func(what, stat string) {
		t.Helper()
		if f := fields(stat); f[3] == box || f[4] != "0" {
			t.Fatalf("%s shares the box's session %s or has a terminal: %q", what, box, stat)
		}
	}
	sid := newAgentSession(t, a, map[string]any{"agent": "exec:cat /proc/self/stat"})
	ev := follow(t, a, sid, 0)
	turn := say(t, a, sid, "go")
	ev.until(10*time.Second, turnState(turn, sessions.StateDone))
	check("the turn", getTurn(t, a, sid, turn).Reply)

	sid = newAgentSession(t, a, nil)
	ev = follow(t, a, sid, 0)
	turn = say(t, a, sid, "run cat /proc/self/stat")
	ev.until(10*time.Second, turnState(turn, sessions.StateDone))
	check("the job", getTurn(t, a, sid, turn).Reply)
}

// A turn's MCP token opens that session and no other, and only while
// the turn runs: its tools act on its own jobs only, an unknown token is
// refused, and the token is dead once the turn has ended.
func TestMCPTokenOpensOnlyItsSession(t *testing.T) {
	_, a := startBox(t, nil)
	type opened struct {
		sid, turn, token, url string
		ev                    *stream
	}
	open := func() opened {
		t.Helper()
		// The worker shows what a turn is given (its token and the URL)
		// and runs until it is cancelled.
		sid := newAgentSession(t, a, map[string]any{"agent": `exec:tr -d '\n' < "$LOWKEY_CREDENTIALS_FILE"; echo; echo "url=$LOWKEY_MCP_URL"; exec sleep 60`})
		ev := follow(t, a, sid, 0)
		turn := say(t, a, sid, "go")
		o := opened{sid: sid, turn: turn, ev: ev}
		for o.token == "" || o.url == "" {
			e := ev.until(10*time.Second, func(e sessions.Event) bool { return e.Type == "turn.output" })
			var line struct{ Text string }
			_ = json.Unmarshal(e.Data, &line)
			var creds struct {
				MCPToken string `json:"mcp_token"`
			}
			if u, ok := strings.CutPrefix(line.Text, "url="); ok {
				o.url = u
			} else if json.Unmarshal([]byte(line.Text), &creds) == nil {
				o.token = creds.MCPToken
			}
		}
		return o
	}
	one, two := open(), open()
	connect := func(o opened, token string) (*mcp.ClientSession, error) {
		c := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, nil)
		return c.Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: o.url, DisableStandaloneSSE: true,
			HTTPClient: &http.Client{Transport: bearerAuth{token}}}, nil)
	}
	call := func(cs *mcp.ClientSession, tool string, args any) string {
		t.Helper()
		res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: tool, Arguments: args})
		if err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		for _, c := range res.Content {
			if tc, ok := c.(*mcp.TextContent); ok {
				out.WriteString(tc.Text)
			}
		}
		return out.String()
	}
	cs1, err := connect(one, one.token)
	if err != nil {
		t.Fatal(err)
	}
	defer cs1.Close()
	cs2, err := connect(two, two.token)
	if err != nil {
		t.Fatal(err)
	}
	defer cs2.Close()
	card := call(cs1, "shell.run", map[string]any{"command": "echo from-one", "wait_seconds": 10})
	if !strings.Contains(card, "from-one") {
		t.Fatalf("shell.run: %s", card)
	}
	if got := call(cs2, "job.list", map[string]any{}); strings.Contains(got, "from-one") {
		t.Fatalf("the second session's token sees the first one's job: %s", got)
	}
	if got := call(cs1, "job.list", map[string]any{}); !strings.Contains(got, "from-one") {
		t.Fatalf("the first session does not see its own job: %s", got)
	}
	_, _, raw := a.do("GET", "/api/v1/sessions/"+two.sid, nil)
	if strings.Contains(string(raw), "from-one") {
		t.Fatalf("the job landed in the other session: %s", raw)
	}
	if _, err := connect(one, "not-a-token"); err == nil {
		t.Fatal("an unknown token opened an MCP session")
	}
	// The turn ends: its token is dead, even for a client that had
	// connected with it; the other session's token still works.
	if code, _, raw := a.do("POST", "/api/v1/sessions/"+one.sid+"/turns/"+one.turn+"/cancel", nil); code != http.StatusOK {
		t.Fatalf("cancel: %d %s", code, raw)
	}
	one.ev.until(10*time.Second, turnState(one.turn, sessions.StateCancelled))
	if _, err := connect(one, one.token); err == nil {
		t.Fatal("a turn's token opened an MCP session after the turn ended")
	}
	if _, err := cs1.CallTool(context.Background(), &mcp.CallToolParams{Name: "job.list", Arguments: map[string]any{}}); err == nil {
		t.Fatal("a client connected with a turn's token still calls tools after the turn ended")
	}
	if got := call(cs2, "job.list", map[string]any{}); strings.Contains(got, "from-one") || strings.Contains(got, "error") {
		t.Fatalf("the second session's live token: %s", got)
	}
}

type bearerAuth struct{ token string }

// bearerVia is bearerAuth over a transport of the test's choosing.
type bearerVia struct {
	token string
	base  http.RoundTripper
}

func (b bearerVia) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}

func (b bearerAuth) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}

func TestStopLevels(t *testing.T) {
	_, a := startBox(t, nil)
	sid := newAgentSession(t, a, nil)
	ev := follow(t, a, sid, 0)

	// Level 2: stop one job (with a setsid grandchild); the turn and the
	// other job go on.
	t1 := say(t, a, sid, "start setsid sleep 313 & sleep 313")
	ev.until(10*time.Second, turnState(t1, sessions.StateDone))
	t2 := say(t, a, sid, "start sleep 314")
	ev.until(10*time.Second, turnState(t2, sessions.StateDone))
	_, m, _ := a.do("GET", "/api/v1/sessions/"+sid, nil)
	jobs := m["jobs"].([]any)
	if len(jobs) != 2 {
		t.Fatalf("jobs %v", jobs)
	}
	var first string
	for _, j := range jobs {
		if strings.Contains(j.(map[string]any)["command"].(string), "313") {
			first = j.(map[string]any)["id"].(string)
		}
	}
	status, jm, raw := a.do("POST", "/api/v1/sessions/"+sid+"/jobs/"+first+"/stop", nil)
	if status != 200 || jm["status"] != "stopped" {
		t.Fatalf("stop job: %d %s", status, raw)
	}
	if procs := pgrepFull("sleep 313"); procs != "" {
		t.Fatalf("the stopped job left %s", procs)
	}
	if pgrepFull("sleep 314") == "" {
		t.Fatal("stopping one job stopped the other")
	}

	// Level 1: cancel the turn; the job it did not start goes on.
	t3 := say(t, a, sid, "think 60")
	ev.until(10*time.Second, func(e sessions.Event) bool { return e.Type == "turn.output" && e.Turn == t3 })
	if status, _, raw := a.do("POST", "/api/v1/sessions/"+sid+"/turns/"+t3+"/cancel", nil); status != 200 {
		t.Fatalf("cancel: %d %s", status, raw)
	}
	// Cancelled, not ended: "think 60" would run a minute.
	ev.until(30*time.Second, turnState(t3, sessions.StateCancelled))
	if pgrepFull("sleep 314") == "" {
		t.Fatal("cancelling the turn stopped a job")
	}

	// Level 3: kill the session: the running turn and the job go.
	t4 := say(t, a, sid, "think 60")
	ev.until(10*time.Second, func(e sessions.Event) bool { return e.Type == "turn.output" && e.Turn == t4 })
	// The kill answers once the work is gone (its time is "lowkey bench
	// sessions"' kill_100_ms).
	if status, _, raw := a.do("POST", "/api/v1/sessions/"+sid+"/kill", nil); status != 200 {
		t.Fatalf("kill: %d %s", status, raw)
	}
	if tr := getTurn(t, a, sid, t4); tr.State != sessions.StateCancelled || !strings.Contains(tr.Detail, "killed") {
		t.Fatalf("turn after kill: %+v", tr)
	}
	if p := pgrepFull("sleep 314"); p != "" {
		t.Fatalf("kill left %s", p)
	}
	// The session works afterwards.
	t5 := say(t, a, sid, "echo alive")
	ev.until(10*time.Second, turnState(t5, sessions.StateDone))
}

// pgrepFull lists the live processes (zombies waiting for init to reap
// them are dead) whose command line is pattern.
func pgrepFull(pattern string) string {
	out, _ := execOutput("pgrep", "-f", "^"+pattern+"$")
	var live []string
	for _, pid := range strings.Fields(out) {
		st, err := os.ReadFile("/proc/" + pid + "/stat")
		if err == nil && !strings.Contains(string(st), ") Z ") {
			live = append(live, pid)
		}
	}
	return strings.Join(live, " ")
}

func TestStalledTurnIsNudgedBack(t *testing.T) {
	_, a := startBox(t, func(c *hub.Config) { c.StallAfter = 300 * time.Millisecond })
	sid := newAgentSession(t, a, nil)
	ev := follow(t, a, sid, 0)
	tid := say(t, a, sid, "think 30")
	ev.until(10*time.Second, turnState(tid, sessions.StateStalled))
	if status, _, raw := a.do("POST", "/api/v1/sessions/"+sid+"/turns/"+tid+"/nudge", nil); status != 200 {
		t.Fatalf("nudge: %d %s", status, raw)
	}
	e := ev.until(10*time.Second, turnState(tid, sessions.StateRunning))
	if !strings.Contains(string(e.Data), "stalled, resumed") {
		t.Fatalf("resume event %s", e.Data)
	}
	ev.until(10*time.Second, turnState(tid, sessions.StateDone))
	if tr := getTurn(t, a, sid, tid); len(tr.Stalls) == 0 || tr.Stalls[0] != "stalled, resumed" || !strings.Contains(tr.Reply, "nudge") {
		t.Fatalf("turn %+v", tr)
	}
}

func TestAgentConfirmations(t *testing.T) {
	_, a := startBox(t, func(c *hub.Config) { c.ConfirmTimeout = 800 * time.Millisecond })
	sid := newAgentSession(t, a, nil)
	ev := follow(t, a, sid, 0)
	answer := func(e sessions.Event, ans string) int {
		var c sessions.Confirmation
		_ = json.Unmarshal(e.Data, &c)
		status, _, _ := a.do("POST", "/api/v1/sessions/"+sid+"/confirmations/"+c.ID, map[string]string{"answer": ans})
		return status
	}
	isOpen := func(e sessions.Event) bool { return e.Type == "confirm.open" }

	// Unanswered: no, and a late answer is refused.
	tid := say(t, a, sid, "confirm delete the old backups?")
	open := ev.until(10*time.Second, isOpen)
	ev.until(10*time.Second, turnState(tid, sessions.StateDone))
	if tr := getTurn(t, a, sid, tid); tr.Reply != "You answered no." {
		t.Fatalf("unanswered: %q", tr.Reply)
	}
	if st := answer(open, "yes"); st != 409 {
		t.Fatalf("late answer: %d", st)
	}
	// Yes.
	tid = say(t, a, sid, "confirm go ahead?")
	if st := answer(ev.until(10*time.Second, isOpen), "yes"); st != 200 {
		t.Fatal(st)
	}
	ev.until(10*time.Second, turnState(tid, sessions.StateDone))
	if tr := getTurn(t, a, sid, tid); tr.Reply != "You answered yes." {
		t.Fatalf("yes: %q", tr.Reply)
	}
	// Cancel also cancels the turn.
	tid = say(t, a, sid, "confirm really?")
	if st := answer(ev.until(10*time.Second, isOpen), "cancel"); st != 200 {
		t.Fatal(st)
	}
	ev.until(10*time.Second, turnState(tid, sessions.StateCancelled))
}

const secretValue = "sk-test-THIS-MUST-NOT-LEAK-4711"

// logBuffer collects the hub's log.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestSecretsReachTheTurnOnlyThroughItsFile(t *testing.T) {
	logs := &logBuffer{}
	// The worker tells where its file is, proves it read the secret (by
	// length), leaves the file behind, and waits so the test can look at
	// every process in the session.
	worker := `exec:read -r turn; f="$LOWKEY_CREDENTIALS_FILE"; echo "file=$f"; ls -l "$f" | cut -c1-10; ` +
		`stat -c %a "$(dirname "$f")"; grep -c sk-test "$f"; sleep 1.5; echo bye`
	h, a := startBox(t, func(c *hub.Config) {
		c.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	if err := admin.New(hub.SocketPath(dataDirOf(t, h))).Do("PUT", "/admin/secrets/OPENAI_API_KEY", map[string]string{"value": secretValue}, nil); err != nil {
		t.Fatal(err)
	}
	sid := newAgentSession(t, a, map[string]any{"agent": worker})
	ev := follow(t, a, sid, 0)
	tid := say(t, a, sid, "go")
	ev.until(10*time.Second, func(e sessions.Event) bool { return strings.Contains(string(e.Data), "file=") })
	// While it runs: not in any process's command line or environment.
	time.Sleep(300 * time.Millisecond)
	pids := sessionPids(t, sid)
	if len(pids) == 0 {
		t.Fatal("no processes found in the session's group")
	}
	for _, p := range append(pids, os.Getpid()) {
		for _, f := range []string{"cmdline", "environ"} {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/%s", p, f))
			if bytes.Contains(b, []byte("THIS-MUST-NOT-LEAK")) {
				t.Fatalf("the secret is in /proc/%d/%s", p, f)
			}
		}
	}
	ev.until(10*time.Second, turnState(tid, sessions.StateDone))
	tr := getTurn(t, a, sid, tid)
	lines := strings.Split(tr.Reply, "\n")
	if len(lines) < 5 || lines[1] != "-rw-------" || lines[2] != "700" || lines[3] != "1" {
		t.Fatalf("the worker saw: %q", tr.Reply)
	}
	file := strings.TrimPrefix(lines[0], "file=")
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("the credentials file %s is still there after the turn: %v", file, err)
	}
	if left, err := os.ReadDir(filepath.Dir(file)); err == nil && len(left) > 0 {
		t.Fatalf("the credentials directory still holds %s after the turn", left[0].Name())
	}
	// Not in events, not in the log.
	_, _, raw := a.do("GET", "/api/v1/sessions/"+sid, nil)
	all, _ := json.Marshal(ev.seen)
	for what, text := range map[string]string{"events": string(all), "log": logs.String(), "session": string(raw)} {
		if strings.Contains(text, "THIS-MUST-NOT-LEAK") {
			t.Fatalf("the secret is in the %s", what)
		}
	}
	// The secrets list names it without its value.
	var names []struct{ Name, For string }
	if err := admin.New(hub.SocketPath(dataDirOf(t, h))).Do("GET", "/admin/secrets", nil, &names); err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 || names[0].Name != "OPENAI_API_KEY" || names[0].For != "all" {
		t.Fatalf("secrets list: %v", names)
	}
}

func dataDirOf(t *testing.T, h *hub.Hub) string { return h.DataDir() }

// sessionPids lists the processes in a session's memory group.
func sessionPids(t *testing.T, sid string) []int {
	var pids []int
	for _, root := range []string{"/sys/fs/cgroup/memory/lowkey/" + sid, "/sys/fs/cgroup/lowkey/" + sid} {
		_ = filepath.Walk(root, func(path string, info os.FileInfo, err error) error {
			if err == nil && info.Name() == "cgroup.procs" {
				b, _ := os.ReadFile(path)
				for _, f := range strings.Fields(string(b)) {
					var p int
					fmt.Sscan(f, &p)
					pids = append(pids, p)
				}
			}
			return nil
		})
	}
	return pids
}

// openAISession is a session of the openai runtime against the model at
// url, browser access on for the pair's laptop, its events followed.
func openAISession(t *testing.T, p *local.Pair, url string) (api, string, *stream) {
	t.Helper()
	for k, v := range map[string]string{"OPENAI_API_KEY": secretValue, "OPENAI_BASE_URL": url, "OPENAI_MODEL": "scripted"} {
		setSecret(t, p, k, v, "all")
	}
	a := ownerAPI(t, p)
	sid := newAgentSession(t, a, map[string]any{"agent": "openai"})
	session{a: a, id: sid, dev: p.DeviceID}.access(true, false)
	return a, sid, follow(t, a, sid, 0)
}

// fakeModel is an OpenAI-compatible endpoint that scripts tool calls.
type fakeModel struct {
	mu       sync.Mutex
	device   string
	url      string
	requests []map[string]any
	auth     []string
}

func (f *fakeModel) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req map[string]any
	_ = json.NewDecoder(r.Body).Decode(&req)
	f.mu.Lock()
	f.requests = append(f.requests, req)
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	step := len(f.requests)
	f.mu.Unlock()
	msgs := req["messages"].([]any)
	lastTool := ""
	if m := msgs[len(msgs)-1].(map[string]any); m["role"] == "tool" {
		lastTool, _ = m["content"].(string)
	}
	call := func(name string, args any) map[string]any {
		b, _ := json.Marshal(args)
		return map[string]any{"role": "assistant", "content": nil, "tool_calls": []any{map[string]any{
			"id": fmt.Sprintf("call_%d", step), "type": "function", "function": map[string]any{"name": name, "arguments": string(b)}}}}
	}
	var msg map[string]any
	switch step {
	case 1:
		msg = call("device__list", map[string]any{})
	case 2:
		msg = call("device__action", map[string]any{"device": f.device, "action": "browser.navigate", "args": map[string]string{"url": f.url}})
	default:
		var res struct {
			Result struct{ Title string } `json:"result"`
		}
		_ = json.Unmarshal([]byte(lastTool), &res)
		msg = map[string]any{"role": "assistant", "content": "I opened " + res.Result.Title + "."}
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"choices": []any{map[string]any{"index": 0, "message": msg, "finish_reason": "stop"}}})
}

func TestOpenAIRuntimeDrivesDeviceTools(t *testing.T) {
	requireCgroups(t)
	p := startControlPair(t, nil, nil)
	model := &fakeModel{device: p.DeviceID, url: pageServer(t)}
	srv := httptest.NewServer(model)
	defer srv.Close()
	a, sid, ev := openAISession(t, p, srv.URL)
	tid := say(t, a, sid, "open the form page on my laptop")
	ev.until(30*time.Second, turnState(tid, sessions.StateDone))
	if tr := getTurn(t, a, sid, tid); !strings.Contains(tr.Reply, "I opened Form.") {
		t.Fatalf("reply %q; the model saw %v", tr.Reply, model.requests[len(model.requests)-1]["messages"])
	}
	model.mu.Lock()
	defer model.mu.Unlock()
	if len(model.requests) != 3 || model.auth[0] != "Bearer "+secretValue || model.requests[0]["model"] != "scripted" {
		t.Fatalf("the model saw %d requests, auth %q", len(model.requests), model.auth)
	}
	// It ran with the box's standing instructions as its system message.
	if sys, _ := json.Marshal(model.requests[0]["messages"]); !strings.Contains(string(sys), "call confirm with a one-line question") {
		t.Errorf("the model was not given the standing instructions: %.300s", sys)
	}
	tools, _ := json.Marshal(model.requests[0]["tools"])
	for _, name := range []string{"device__action", "shell__run", "confirm", "job__stop"} {
		if !strings.Contains(string(tools), `"`+name+`"`) {
			t.Fatalf("tool %s not offered: %s", name, tools)
		}
	}
	// The action went through the gate: audited as the agent's.
	recs := audit(t, a, "session="+sid)
	if len(recs) != 1 || recs[0].Action != "browser.navigate" || !strings.HasPrefix(recs[0].Who, "agent (turn "+tid) || recs[0].Outcome != "done" {
		t.Fatalf("audit %+v", recs)
	}
}

func TestBuiltinAgentRespectsTheToggle(t *testing.T) {
	requireCgroups(t)
	p := startControlPair(t, nil, nil)
	a := ownerAPI(t, p)
	sid := newAgentSession(t, a, nil)
	ev := follow(t, a, sid, 0)
	page := pageServer(t)
	tid := say(t, a, sid, "open "+page+" on my laptop")
	ev.until(30*time.Second, turnState(tid, sessions.StateFailed))
	if tr := getTurn(t, a, sid, tid); !strings.Contains(string(mustJSON(ev.seen)), "browser access is off") {
		t.Fatalf("turn %+v", tr)
	}
	session{a: a, id: sid, dev: p.DeviceID}.access(true, false)
	tid = say(t, a, sid, "open "+page+" on my laptop")
	ev.until(30*time.Second, turnState(tid, sessions.StateDone))
	if tr := getTurn(t, a, sid, tid); !strings.Contains(tr.Reply, `Opened "Form"`) {
		t.Fatalf("reply %q", tr.Reply)
	}
}

func mustJSON(v any) []byte { b, _ := json.Marshal(v); return b }

func TestEventsReplayAfterAReconnect(t *testing.T) {
	_, a := startBox(t, nil)
	sid := newAgentSession(t, a, nil)
	first := follow(t, a, sid, 0)
	t1 := say(t, a, sid, "run seq 1 5")
	first.until(10*time.Second, turnState(t1, sessions.StateDone))
	seen := first.last
	first.ws.Close()
	// Work happens while nobody watches.
	t2 := say(t, a, sid, "run seq 6 9")
	deadline := time.Now().Add(10 * time.Second)
	for getTurn(t, a, sid, t2).State != sessions.StateDone && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	again := follow(t, a, sid, seen)
	again.until(5*time.Second, turnState(t2, sessions.StateDone))
	text := string(mustJSON(again.seen))
	for _, n := range []string{"6", "7", "8", "9"} {
		if !strings.Contains(text, `"text":"`+n+`"`) {
			t.Fatalf("replay lacks output %s: %s", n, text)
		}
	}
	// A fresh client from zero sees everything, in order, with no gaps.
	all := follow(t, a, sid, 0)
	all.until(5*time.Second, turnState(t2, sessions.StateDone))
}

func execOutput(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).Output()
	return string(out), err
}

func TestKillingASessionCancelsItsDeviceActions(t *testing.T) {
	requireCgroups(t)
	p := startControlPair(t, nil, nil)
	a := ownerAPI(t, p)
	sid := newAgentSession(t, a, nil)
	s := session{a: a, id: sid, dev: p.DeviceID}
	s.access(true, false)
	s.act("browser.navigate", map[string]string{"url": pageServer(t)})
	done := make(chan int, 1)
	go func() {
		status, _, _ := s.act("browser.wait_for", map[string]any{"text": "never", "timeout_ms": 30000})
		done <- status
	}()
	time.Sleep(time.Second) // the wait is on the computer by then
	start := time.Now()
	if status, _, raw := a.do("POST", "/api/v1/sessions/"+sid+"/kill", nil); status != 200 {
		t.Fatalf("kill: %d %s", status, raw)
	}
	// Bounds well short of the wait's own 30 s tell "stopped" from "ran
	// out"; they are not a measure of how fast.
	select {
	case status := <-done:
		if status != 409 {
			t.Fatalf("the action in flight ended %d", status)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the device action outlived the session kill")
	}
	// The computer stopped too: its next action is not stuck behind it.
	if status, _, raw := s.act("browser.snapshot", nil); status != 200 || time.Since(start) > 20*time.Second {
		t.Fatalf("next action: %d %s after %s", status, raw, time.Since(start))
	}
}

func TestAgentPublishesAPage(t *testing.T) {
	h, a := startBox(t, func(c *hub.Config) { c.PagesListen = "127.0.0.1:0" })
	sid := newAgentSession(t, a, nil)
	ev := follow(t, a, sid, 0)
	t1 := say(t, a, sid, "run mkdir -p site && echo '<h1>Made by the agent</h1>' > site/index.html && ln -s /etc leak")
	ev.until(10*time.Second, turnState(t1, sessions.StateDone))
	t2 := say(t, a, sid, "publish site")
	ev.until(10*time.Second, turnState(t2, sessions.StateDone))
	reply := getTurn(t, a, sid, t2).Reply
	url := reply[strings.Index(reply, h.PagesOrigin()):]
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "Made by the agent") || !strings.HasPrefix(resp.Header.Get("Content-Security-Policy"), "sandbox") {
		t.Fatalf("published page: %d %s %v", resp.StatusCode, body, resp.Header)
	}
	// A symlink out of the session's files is not published.
	for _, dir := range []string{"leak", "../..", "/etc"} {
		tid := say(t, a, sid, "publish "+dir)
		ev.until(10*time.Second, turnState(tid, sessions.StateFailed))
	}
}

// The box's tools answer objects with their schemas (Gemini's client
// refuses a top-level array), and a turn waiting on a long tool call is
// working, not stalled.
func TestMCPToolsAnswerObjectsAndCountAsActivity(t *testing.T) {
	_, a := startBox(t, func(c *hub.Config) { c.StallAfter = 3 * time.Second })
	// The worker shows its token and URL, then ticks until the tool call
	// below has begun (it makes STARTED), then is silent.
	sid := newAgentSession(t, a, map[string]any{"agent": `exec:tr -d '\n' < "$LOWKEY_CREDENTIALS_FILE"; echo; echo "url=$LOWKEY_MCP_URL"; while [ ! -e STARTED ]; do echo tick; sleep 0.2; done; exec sleep 60`})
	ev := follow(t, a, sid, 0)
	turn := say(t, a, sid, "go")
	var token, url string
	for token == "" || url == "" {
		e := ev.until(10*time.Second, func(e sessions.Event) bool { return e.Type == "turn.output" })
		var line struct{ Text string }
		_ = json.Unmarshal(e.Data, &line)
		var creds struct {
			MCPToken string `json:"mcp_token"`
		}
		if u, ok := strings.CutPrefix(line.Text, "url="); ok {
			url = u
		} else if json.Unmarshal([]byte(line.Text), &creds) == nil && creds.MCPToken != "" {
			token = creds.MCPToken
		}
	}
	c := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, nil)
	cs, err := c.Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: url, DisableStandaloneSSE: true,
		HTTPClient: &http.Client{Transport: bearerAuth{token}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	tools, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range tools.Tools {
		if tool.Name != "pages.publish" && tool.OutputSchema == nil {
			t.Errorf("%s has no output schema", tool.Name)
		}
	}
	structured := func(tool string, args any) map[string]any {
		t.Helper()
		res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: tool, Arguments: args})
		if err != nil || res.IsError {
			t.Fatalf("%s: %v %+v", tool, err, res)
		}
		obj, ok := res.StructuredContent.(map[string]any)
		if !ok {
			t.Fatalf("%s: structured content %T %v, want an object", tool, res.StructuredContent, res.StructuredContent)
		}
		return obj
	}
	if d, ok := structured("device.list", map[string]any{})["devices"].([]any); !ok || len(d) != 0 {
		t.Errorf("device.list: %v", d)
	}
	// Eight seconds of a tool, more than twice the stall limit, once the
	// worker has stopped ticking.
	card := structured("shell.run", map[string]any{"command": "touch STARTED; sleep 8; echo slept", "wait_seconds": 60})
	if card["status"] != "exited" || !strings.Contains(fmt.Sprint(card["stdout_tail"]), "slept") {
		t.Fatalf("shell.run card: %v", card)
	}
	if jobs, ok := structured("job.list", map[string]any{})["jobs"].([]any); !ok || len(jobs) != 1 {
		t.Errorf("job.list: %v", jobs)
	}
	if tr := getTurn(t, a, sid, turn); tr.State != sessions.StateRunning || len(tr.Stalls) != 0 {
		t.Fatalf("the turn waiting on the box's tool: %s, stalls %v", tr.State, tr.Stalls)
	}

	// A client that gives up on response headers after 5 s (as some MCP
	// clients do) still gets a 12 s tool's answer, with progress on the way
	// when it asked for it.
	var progressed atomic.Int32
	impatient := mcp.NewClient(&mcp.Implementation{Name: "impatient", Version: "1"}, &mcp.ClientOptions{
		ProgressNotificationHandler: func(context.Context, *mcp.ProgressNotificationClientRequest) { progressed.Add(1) },
	})
	hc := &http.Client{Transport: bearerVia{token, &http.Transport{ResponseHeaderTimeout: 5 * time.Second}}}
	ics, err := impatient.Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: url, DisableStandaloneSSE: true, HTTPClient: hc}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ics.Close()
	params := &mcp.CallToolParams{Name: "shell.run", Arguments: map[string]any{"command": "sleep 12; echo patient", "wait_seconds": 60}}
	params.SetProgressToken("p-1")
	res, err := ics.CallTool(context.Background(), params)
	if err != nil || res.IsError {
		t.Fatalf("a 12 s tool for a client with a 5 s header timeout: %v %+v", err, res)
	}
	if card, _ := res.StructuredContent.(map[string]any); !strings.Contains(fmt.Sprint(card["stdout_tail"]), "patient") {
		t.Fatalf("card: %v", card)
	}
	if progressed.Load() == 0 {
		t.Error("no progress came while the tool ran")
	}
}

// A nudge to a worker that closed its input is the worker's state, not the
// box's failure: 409 with what to do instead.
func TestNudgingAWorkerThatClosedItsInputIsAConflict(t *testing.T) {
	_, a := startBox(t, nil)
	sid := newAgentSession(t, a, map[string]any{"agent": `exec:exec 0<&-; echo ready; exec sleep 60`})
	ev := follow(t, a, sid, 0)
	turn := say(t, a, sid, "go")
	ev.until(10*time.Second, func(e sessions.Event) bool { return e.Type == "turn.output" && e.Turn == turn })
	status, m, raw := a.do("POST", "/api/v1/sessions/"+sid+"/turns/"+turn+"/nudge", nil)
	if status != http.StatusConflict || errCode(m) != "closed" || !strings.Contains(string(raw), "cancel the turn") {
		t.Fatalf("nudge: %d %s", status, raw)
	}
}

// The openai runtime against a streaming server (chunks as OpenAI, Ollama
// and vLLM send them): it drives the browser on the laptop, a screenshot
// reaches the model as an image, and the reply is the model's words alone
// (the tool calls show in the thread, not in the reply).
func TestOpenAIRuntimeStreamsAndShowsTheModelScreenshots(t *testing.T) {
	for _, oneChunk := range []bool{false, true} {
		t.Run(fmt.Sprintf("one chunk %v", oneChunk), func(t *testing.T) { openAIStreams(t, oneChunk) })
	}
}

func openAIStreams(t *testing.T, oneChunk bool) {
	requireCgroups(t)
	p := startControlPair(t, nil, nil)
	m := modeltest.NewChat([]modeltest.Step{
		{Tool: "device.action", Args: map[string]any{"device": p.DeviceID, "action": "browser.navigate", "args": map[string]string{"url": pageServer(t)}}},
		{Tool: "device.action", Args: map[string]any{"device": p.DeviceID, "action": "browser.screenshot", "args": map[string]any{}}},
		{Reply: func([]string) string { return "I saw the page." }},
	})
	if oneChunk {
		m.OneChunk()
	}
	defer m.Close()
	a, sid, ev := openAISession(t, p, m.URL+"/v1")
	tid := say(t, a, sid, "look at the form page on my laptop")
	ev.until(60*time.Second, func(e sessions.Event) bool {
		return e.Type == "turn.state" && e.Turn == tid && !strings.Contains(string(e.Data), `"running"`)
	})
	tr := getTurn(t, a, sid, tid)
	if tr.State != sessions.StateDone || tr.Reply != "I saw the page." {
		t.Fatalf("turn %s %s, reply %q", tr.State, tr.Detail, tr.Reply)
	}
	var progress []string
	for _, e := range ev.seen {
		var l struct{ Stream, Text string }
		if e.Type == "turn.output" && json.Unmarshal(e.Data, &l) == nil && l.Stream == "stderr" {
			progress = append(progress, l.Text)
		}
	}
	if strings.Count(strings.Join(progress, "\n"), "→ device.action") != 2 {
		t.Errorf("the calls in the thread: %v", progress)
	}
	reqs := m.Requests()
	if len(reqs) != 3 || !reqs[0].Stream || reqs[2].Images != 1 || reqs[1].Images != 0 {
		for _, r := range reqs {
			t.Logf("request: stream %v, images %d", r.Stream, r.Images)
		}
		t.Fatalf("the model's requests: %d", len(reqs))
	}
}

// The message box's own example works on a box whose computer is called
// demo-laptop: "my laptop" is the one whose toggle is on; a name that
// matches no computer says so instead of blaming a toggle.
func TestBuiltinAgentFindsMyLaptop(t *testing.T) {
	requireCgroups(t)
	testenv.RequireBrowser(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := local.Start(ctx, t.TempDir(), local.Options{Logger: quiet(), Name: "demo-laptop"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	a := ownerAPI(t, p)
	sid := newAgentSession(t, a, nil)
	session{a: a, id: sid, dev: p.DeviceID}.access(true, false)
	ev := follow(t, a, sid, 0)
	page := pageServer(t)
	tid := say(t, a, sid, "open "+page+" on my laptop")
	ev.until(30*time.Second, turnState(tid, sessions.StateDone))
	if tr := getTurn(t, a, sid, tid); !strings.Contains(tr.Reply, `Opened "Form"`) {
		t.Fatalf("reply %q", tr.Reply)
	}
	tid = say(t, a, sid, "open "+page+" on the-printer")
	ev.until(30*time.Second, turnState(tid, sessions.StateFailed))
	if got := string(mustJSON(ev.seen)); !strings.Contains(got, `no computer called \"the-printer\"`) {
		t.Fatalf("a name that matches no computer: %s", got[max(0, len(got)-600):])
	}
}
