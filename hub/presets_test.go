package hub_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lowkeyhq/lowkey/hub"
	"github.com/lowkeyhq/lowkey/internal/admin"
	"github.com/lowkeyhq/lowkey/internal/local"
	"github.com/lowkeyhq/lowkey/internal/modeltest"
	"github.com/lowkeyhq/lowkey/internal/testenv"
	"github.com/lowkeyhq/lowkey/sessions"
)

// presetBox is a box whose agents' PATH holds the CLIs from npm, with a
// paired companion, and a scripted model server.
func presetBox(t *testing.T, bin string) (*local.Pair, api) {
	t.Helper()
	requireCgroups(t)
	dir := testenv.AgentCLIs(t, bin)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := local.Start(ctx, t.TempDir(), local.Options{Logger: quiet(), Hub: func(c *hub.Config) {
		c.AgentPath = dir + ":/usr/local/bin:/usr/bin:/bin"
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p, ownerAPI(t, p)
}

func setSecret(t *testing.T, p *local.Pair, name, value, forRuntime string) {
	t.Helper()
	if err := admin.New(hub.SocketPath(p.HubDir)).Do("PUT", "/admin/secrets/"+name, map[string]string{"value": value, "for": forRuntime}, nil); err != nil {
		t.Fatal(err)
	}
}

// outputs are a turn's progress lines so far.
func outputs(s *stream, turn string) []string {
	var out []string
	for _, e := range s.seen {
		if e.Type != "turn.output" || e.Turn != turn {
			continue
		}
		var l struct{ Text string }
		if json.Unmarshal(e.Data, &l) == nil {
			out = append(out, l.Text)
		}
	}
	return out
}

// presetCase is one preset and the API its CLI speaks.
type presetCase struct {
	name    string
	server  func([]modeltest.Step) *modeltest.Script
	secrets func(url string) map[string]string
}

var presetCases = []presetCase{
	{"claude", func(s []modeltest.Step) *modeltest.Script { return modeltest.NewAnthropic(s).Script },
		func(url string) map[string]string {
			return map[string]string{"ANTHROPIC_API_KEY": "sk-ant-test-0000", "ANTHROPIC_BASE_URL": url}
		}},
	{"codex", func(s []modeltest.Step) *modeltest.Script { return modeltest.NewResponses(s).Script },
		func(url string) map[string]string {
			return map[string]string{"OPENAI_API_KEY": "sk-test-0000", "OPENAI_BASE_URL": url + "/v1", "OPENAI_MODEL": "scripted"}
		}},
	{"opencode", func(s []modeltest.Step) *modeltest.Script { return modeltest.NewChat(s).Script },
		func(url string) map[string]string {
			return map[string]string{"OPENAI_API_KEY": "sk-test-0000", "OPENAI_BASE_URL": url + "/v1", "OPENAI_MODEL": "scripted"}
		}},
	{"gemini", func(s []modeltest.Step) *modeltest.Script { return modeltest.NewGemini(s).Script },
		func(url string) map[string]string {
			return map[string]string{"GEMINI_API_KEY": "gm-test-0000", "GOOGLE_GEMINI_BASE_URL": url, "GEMINI_MODEL": "scripted"}
		}},
}

// Each preset's real CLI runs a turn against a scripted model API: it calls
// the box's shell.run, device.list, device.action (sys.info on the paired
// laptop) and confirm (answered here), then answers with text that quotes
// what they returned; each call shows in the thread as it happens; it was
// given the box's standing instructions; a second turn continues the
// first, with the owner's instructions by then.
func TestPresetsRunARealTurn(t *testing.T) {
	for _, pc := range presetCases {
		t.Run(pc.name, func(t *testing.T) { realTurn(t, pc) })
	}
}

func realTurn(t *testing.T, pc presetCase) {
	p, a := presetBox(t, pc.name)
	script := []modeltest.Step{
		{Tool: "shell.run", Args: map[string]any{"command": "echo box-says-hi", "wait_seconds": 30}, Say: "Looking at the box first."},
		{Tool: "device.list", Args: map[string]any{}},
		{Tool: "device.action", Args: map[string]any{"device": p.DeviceID, "action": "sys.info"}},
		{Tool: "confirm", Args: map[string]any{"question": "May I finish the turn?"}},
		{Reply: func(results []string) string {
			return "RESULTS " + strings.Join(results, " || ")
		}},
	}
	m := pc.server(script)
	defer m.Close()
	for k, v := range pc.secrets(m.URL) {
		setSecret(t, p, k, v, pc.name)
	}
	sid := newAgentSession(t, a, map[string]any{"agent": pc.name})
	es := follow(t, a, sid, 0)
	turn := say(t, a, sid, "check the box and my laptop")
	e := es.until(120*time.Second, func(e sessions.Event) bool {
		return e.Type == "confirm.open" || (e.Type == "turn.state" && e.Turn == turn && !strings.Contains(string(e.Data), `"running"`))
	})
	if e.Type != "confirm.open" {
		var tools []string
		for _, r := range m.All() {
			tools = append(tools, strings.Join(r.Tools, ","))
		}
		t.Fatalf("the turn ended before it asked: %s\n%s\ntools offered: %v", e.Data, strings.Join(outputs(es, turn), "\n"), tools)
	}
	var c sessions.Confirmation
	if err := json.Unmarshal(e.Data, &c); err != nil {
		t.Fatal(err)
	}
	if c.Summary != "May I finish the turn?" {
		t.Errorf("the question: %q", c.Summary)
	}
	if status, _, raw := a.do("POST", "/api/v1/sessions/"+sid+"/confirmations/"+c.ID, map[string]string{"answer": "yes"}); status != 200 {
		t.Fatalf("answer: %d %s", status, raw)
	}
	end := es.until(120*time.Second, func(e sessions.Event) bool {
		return e.Type == "turn.state" && e.Turn == turn && !strings.Contains(string(e.Data), `"running"`)
	})
	tr := getTurn(t, a, sid, turn)
	lines := strings.Join(outputs(es, turn), "\n")
	if tr.State != sessions.StateDone {
		t.Fatalf("turn %s: %s %s\n%s", tr.State, tr.Detail, end.Data, lines)
	}
	host := strings.TrimSpace(mustHostname(t))
	// (Each CLI hands the model the tools' answers its own way: as they
	// are, or as escaped JSON.)
	for _, want := range []string{"box-says-hi", `devices\W+\[`, p.DeviceID, host, `answer\W+yes`} {
		if !regexp.MustCompile(want).MatchString(tr.Reply) {
			t.Errorf("the reply does not quote %q: %s", want, tr.Reply)
		}
	}
	// The CLI kept its own state in the agent account's home, not in the
	// session's working directory (which pages may publish from).
	m2 := regexp.MustCompile(`cwd\W+(/[\w./-]+)`).FindStringSubmatch(tr.Reply)
	if m2 == nil {
		t.Fatalf("no working directory in the reply: %.300s", tr.Reply)
	}
	entries, err := os.ReadDir(m2[1])
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range entries {
		t.Errorf("the CLI left %s in the session's working directory", en.Name())
	}
	// Each call showed in the thread, in order, as it happened (and the
	// words before the first, where the API carries both).
	last := -1
	steps := []string{"→ shell.run", "→ device.list", "→ device.action", "→ confirm"}
	if pc.name == "claude" {
		steps = append([]string{"Looking at the box first."}, steps...)
	}
	for _, tool := range steps {
		i := strings.Index(lines, tool)
		if i <= last {
			t.Errorf("%q is not in the thread after the one before:\n%s", tool, lines)
		}
		last = i
	}
	t.Logf("the thread:\n%s\nthe reply: %.400s", lines, tr.Reply)
	reqs := m.Requests()
	if len(reqs) != 5 || !strings.Contains(reqs[0].System, "call confirm with a one-line question") {
		t.Fatalf("claude was not given the box's standing instructions (%d requests): %.300s", len(reqs), reqs[0].System)
	}
	if tr.Instructions != "the box's standing instructions" {
		t.Errorf("the turn says it ran with %q", tr.Instructions)
	}

	// The second turn continues the first: the model sees the first message.
	// The owner has written instructions of their own by then: they hold
	// from this turn on.
	if err := os.WriteFile(filepath.Join(p.HubDir, "instructions.md"), []byte("OWNER-RULES: answer in one word."), 0o600); err != nil {
		t.Fatal(err)
	}
	m.Rewind([]modeltest.Step{{Reply: func([]string) string { return "again" }}})
	turn2 := say(t, a, sid, "and once more")
	es.until(120*time.Second, func(e sessions.Event) bool {
		return e.Type == "turn.state" && e.Turn == turn2 && !strings.Contains(string(e.Data), `"running"`)
	})
	if tr := getTurn(t, a, sid, turn2); tr.State != sessions.StateDone || tr.Reply != "again" || !strings.Contains(tr.Instructions, "instructions.md") {
		t.Fatalf("second turn: %s %s %q, instructions %q", tr.State, tr.Detail, tr.Reply, tr.Instructions)
	}
	reqs = m.Requests()
	// (Claude Code keeps a conversation's system prompt when it goes on:
	// the new instructions come with the message.)
	if seen := strings.Join(reqs[len(reqs)-1].Messages, "\n"); !strings.Contains(seen, "OWNER-RULES") {
		t.Errorf("the second turn's model was not given the owner's instructions: %.500s", seen)
	}
	if seen := strings.Join(reqs[len(reqs)-1].Messages, "\n"); !strings.Contains(seen, "check the box and my laptop") || !strings.Contains(seen, "and once more") {
		t.Errorf("the second turn's model did not see the first turn: %s", seen)
	}
}

// Each preset fails the turn with its reason when its key is missing, and
// when its CLI is not installed.
func TestPresetsSayWhatIsMissing(t *testing.T) {
	for _, pc := range []struct{ name, key, npm string }{
		{"claude", "ANTHROPIC_API_KEY", "@anthropic-ai/claude-code"},
		{"codex", "OPENAI_API_KEY", "@openai/codex"},
		{"gemini", "GEMINI_API_KEY", "@google/gemini-cli"},
		{"opencode", "OPENAI_API_KEY", "opencode-ai"},
	} {
		t.Run(pc.name, func(t *testing.T) {
			_, a := presetBox(t, pc.name)
			sid := newAgentSession(t, a, map[string]any{"agent": pc.name})
			es := follow(t, a, sid, 0)
			turn := say(t, a, sid, "hello")
			es.until(60*time.Second, turnState(turn, sessions.StateFailed))
			if got := strings.Join(outputs(es, turn), "\n"); !strings.Contains(got, "lowkey secrets set "+pc.key) {
				t.Errorf("missing key: %s", got)
			}
			// A box whose agents' PATH has no such CLI.
			_, b := startBox(t, nil)
			sid = newAgentSession(t, b, map[string]any{"agent": pc.name})
			es = follow(t, b, sid, 0)
			turn = say(t, b, sid, "hello")
			es.until(60*time.Second, turnState(turn, sessions.StateFailed))
			if got := strings.Join(outputs(es, turn), "\n"); !strings.Contains(got, "npm install -g "+pc.npm) {
				t.Errorf("missing CLI: %s", got)
			}
		})
	}
}

func mustHostname(t *testing.T) string {
	t.Helper()
	h, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// A tool call longer than the CLIs' own 60 s default: a 90 s shell.run
// through each preset ends with its output, and the turn is not stalled.
func TestPresetsWaitOnALongTool(t *testing.T) {
	for _, pc := range presetCases {
		t.Run(pc.name, func(t *testing.T) {
			t.Parallel()
			longTool(t, pc)
		})
	}
}

func longTool(t *testing.T, pc presetCase) {
	p, a := presetBox(t, pc.name)
	m := pc.server([]modeltest.Step{
		{Tool: "shell.run", Args: map[string]any{"command": "sleep 90; echo slept-ninety", "wait_seconds": 120}},
		{Reply: func(results []string) string { return strings.Join(results, "") }},
	})
	defer m.Close()
	for k, v := range pc.secrets(m.URL) {
		setSecret(t, p, k, v, pc.name)
	}
	sid := newAgentSession(t, a, map[string]any{"agent": pc.name})
	es := follow(t, a, sid, 0)
	turn := say(t, a, sid, "take your time")
	es.until(5*time.Minute, func(e sessions.Event) bool {
		return e.Type == "turn.state" && e.Turn == turn && !strings.Contains(string(e.Data), `"running"`)
	})
	tr := getTurn(t, a, sid, turn)
	if tr.State != sessions.StateDone || !strings.Contains(tr.Reply, "slept-ninety") || len(tr.Stalls) != 0 {
		t.Fatalf("turn %s %s stalls %v: %.300s\n%s", tr.State, tr.Detail, tr.Stalls, tr.Reply, strings.Join(outputs(es, turn), "\n"))
	}
}

// The box says which agents it can run: every preset whose CLI is on the
// agents' PATH, and for one that is not, what to install.
func TestAgentsListSaysWhichCLIsAreInstalled(t *testing.T) {
	list := func(a api) map[string]sessions.AgentInfo {
		t.Helper()
		status, _, raw := a.do("GET", "/api/v1/agents", nil)
		if status != 200 {
			t.Fatalf("agents: %d %s", status, raw)
		}
		var out struct{ Agents []sessions.AgentInfo }
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatal(err)
		}
		m := map[string]sessions.AgentInfo{}
		for _, ag := range out.Agents {
			m[ag.Name] = ag
		}
		return m
	}
	_, with := presetBox(t, "claude")
	got := list(with)
	for _, name := range []string{"builtin", "openai", "claude", "codex", "gemini", "opencode"} {
		if !got[name].Available || got[name].Label == "" {
			t.Errorf("%s on a box with the CLIs: %+v", name, got[name])
		}
	}
	if !strings.Contains(got["claude"].Note, "ANTHROPIC_API_KEY") {
		t.Errorf("claude's note: %q", got["claude"].Note)
	}
	// A CLI at a path of its own (--agent-bin), off the agents' PATH.
	dir := testenv.AgentCLIs(t, "claude")
	_, named := startBox(t, func(c *hub.Config) { c.AgentBins = map[string]string{"claude": filepath.Join(dir, "claude")} })
	got = list(named)
	if !got["claude"].Available || got["codex"].Available {
		t.Errorf("with --agent-bin claude=…: %+v", got)
	}
	_, without := startBox(t, nil)
	got = list(without)
	if got["claude"].Available || !strings.Contains(got["claude"].Note, "npm install -g @anthropic-ai/claude-code") || !got["builtin"].Available {
		t.Errorf("on a box without the CLIs: %+v", got)
	}
}

// A preset's CLI named by its path (--agent-bin) runs a turn though it is
// not on the agents' PATH.
func TestPresetCLIAtAPathOfItsOwn(t *testing.T) {
	requireCgroups(t)
	dir := testenv.AgentCLIs(t, "claude")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := local.Start(ctx, t.TempDir(), local.Options{Logger: quiet(), Hub: func(c *hub.Config) {
		c.AgentBins = map[string]string{"claude": filepath.Join(dir, "claude")}
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	a := ownerAPI(t, p)
	m := modeltest.NewAnthropic([]modeltest.Step{
		{Tool: "shell.run", Args: map[string]any{"command": "echo by-path"}},
		{Reply: func(r []string) string { return strings.Join(r, "") }},
	})
	defer m.Close()
	setSecret(t, p, "ANTHROPIC_API_KEY", "sk-ant-test-0000", "claude")
	setSecret(t, p, "ANTHROPIC_BASE_URL", m.URL, "claude")
	sid := newAgentSession(t, a, map[string]any{"agent": "claude"})
	es := follow(t, a, sid, 0)
	turn := say(t, a, sid, "go")
	es.until(120*time.Second, func(e sessions.Event) bool {
		return e.Type == "turn.state" && e.Turn == turn && !strings.Contains(string(e.Data), `"running"`)
	})
	if tr := getTurn(t, a, sid, turn); tr.State != sessions.StateDone || !strings.Contains(tr.Reply, "by-path") {
		t.Fatalf("turn %s %s: %.200s\n%v", tr.State, tr.Detail, tr.Reply, outputs(es, turn))
	}
}
