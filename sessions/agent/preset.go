package agent

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Preset is a real agent CLI the box runs for a turn, with all the glue a
// person would otherwise write: the message, the credentials file, the
// CLI's own MCP configuration with the turn's token, the box's secrets
// under the CLI's names, stdin closed, the box's tools granted, a long
// tool timeout, the CLI's conversation continued across turns, its
// progress streamed into the thread, and a failed turn when the box's
// tools did not connect.
type Preset struct {
	Name    string // the session's agent: "claude"
	Label   string // how people know it: "Claude Code"
	Bin     string // the program, found on the worker's PATH
	Package string // where it comes from, for the message when it is missing
	// Keys are the box secrets the CLI authenticates with; one must be set.
	Keys []string
	// Pass are the box secrets handed to the CLI under their own names
	// when set (keys, base URLs).
	Pass []string
	// Memory is the budget the CLI needs; a session that names none gets
	// at least this.
	Memory int64
	// Versions are the CLI versions this preset is tested with.
	Versions string

	// precheck: the CLI does not say whether the box's tools connected,
	// so the box asks its MCP server with the turn's token first.
	precheck bool

	args  func(r *presetRun) ([]string, error)
	env   func(r *presetRun) []string
	parse func(r *presetRun, line []byte)
}

// Presets are the agent CLIs the box knows by name.
var Presets = map[string]*Preset{
	"claude":   claude,
	"codex":    codex,
	"gemini":   gemini,
	"opencode": opencode,
}

// PresetNames are the presets' names, sorted.
func PresetNames() []string {
	names := make([]string, 0, len(Presets))
	for name := range Presets {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// Standing are the box's standing instructions for every agent, unless the
// owner wrote their own (DATA/instructions.md).
const Standing = `You are an agent on the user's own server, "the box". You act with the box's files, keys and tools through the box's MCP tools (server "lowkey"): shell.run runs a command on the box, job.list and job.stop manage what runs, pages.publish publishes static files, confirm asks the person a yes/no question, device.list and device.action drive the user's paired computers.
Device control works only while this conversation's toggle for that computer is on (browser or desktop); if it is off, say so and ask the person to turn it on. Never try to turn it on yourself.
Before a step that is hard to undo (deleting, overwriting, sending, paying, publishing) or that reaches outside the box (a paired computer, another service), call confirm with a one-line question and go on only if the answer is yes.`

// presetRun is one turn of a preset.
type presetRun struct {
	p       *Preset
	in      Input
	creds   *Credentials
	mcpURL  string
	home    string // the CLI's own state lives here, not in the work dir
	private string // a directory only this turn reads: the CLI's MCP config
	resume  bool   // a turn of this session ran the CLI before
	// renewed: the standing instructions changed since the CLI's
	// conversation began (a continued conversation keeps the ones it
	// started with, so the message carries the new ones).
	renewed  bool
	progress io.Writer

	mu        sync.Mutex
	reply     string
	failed    string // why the turn fails, when the CLI's output says so
	connected bool   // the CLI said the box's tools connected
	kill      func()
	cleanup   []string // files of this turn to remove after it
	config    string   // the CLI's configuration for this turn, when it takes a path
	// sessionSaved: the CLI's own conversation ID is kept for the next turn.
	sessionSaved bool
}

// BinEnv names a preset's CLI by its path when the box was told it.
const BinEnv = "LOWKEY_AGENT_BIN"

// toolTimeout is how long a CLI waits on one of the box's tools: a
// confirm waits for a person, a shell.run up to ten minutes.
const toolTimeout = time.Hour

// runPreset runs one turn of a preset and returns the CLI's last answer.
func runPreset(ctx context.Context, p *Preset, in Input, creds *Credentials, progress io.Writer) (string, error) {
	name := p.Bin
	if given := os.Getenv(BinEnv); given != "" {
		name = given
	}
	bin, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("the %s agent needs %s, which is not installed on the box (npm install -g %s), or give the hub --agent-path with the directory it is in, or --agent-bin %s=PATH", p.Name, name, p.Package, p.Name)
	}
	if missing := missingKey(p, creds.Secrets); missing != "" {
		return "", errors.New(missing)
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("the agent account has no home for %s's own state: %w", p.Bin, err)
	}
	state := filepath.Join(home, ".lowkey", "sessions", in.Session)
	if err := os.MkdirAll(state, 0o700); err != nil {
		return "", err
	}
	private, err := os.MkdirTemp(filepath.Join(home, ".lowkey"), "turn-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(private)
	// Restricted writes: the CLI's own config may hold the turn's token.
	syscall.Umask(0o077)
	// The conversation's mark holds the instructions it began with.
	started := filepath.Join(state, p.Name+".started")
	began, statErr := os.ReadFile(started)
	sum := sha256.Sum256([]byte(in.instructions()))
	now := hex.EncodeToString(sum[:])
	r := &presetRun{p: p, in: in, creds: creds, mcpURL: os.Getenv("LOWKEY_MCP_URL"), home: home, private: private,
		resume: statErr == nil, progress: progress}
	r.renewed = r.resume && strings.TrimSpace(string(began)) != now
	if p.precheck {
		if err := checkMCP(ctx, r.mcpURL, creds.MCPToken); err != nil {
			return "", fmt.Errorf("the box's tools did not connect for %s, so the turn stops here: %w", p.Bin, err)
		}
		r.connected = true
	}
	args, err := p.args(r)
	defer func() {
		for _, f := range r.cleanup {
			_ = os.Remove(f)
		}
	}()
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir, _ = os.Getwd()
	cmd.Env = append(os.Environ(), p.env(r)...)
	for _, name := range p.Pass {
		if v := creds.Secrets[name]; v != "" {
			cmd.Env = append(cmd.Env, name+"="+v)
		}
	}
	// Stdin closed: the CLIs wait on an open one.
	cmd.Stdin = nil
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	var stderr tail
	cmd.Stderr = &stderr
	r.kill = cancel
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("could not start %s: %w", bin, err)
	}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		p.parse(r, sc.Bytes())
	}
	werr := cmd.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.failed != "":
		return "", errors.New(r.failed)
	case werr != nil:
		return "", fmt.Errorf("%s %v: %s", p.Bin, werr, stderr.String())
	case !r.connected:
		return "", fmt.Errorf("the box's tools did not connect to %s, so the turn cannot use them", p.Bin)
	}
	if !r.resume || r.renewed {
		if err := os.WriteFile(started, []byte(now+"\n"), 0o600); err != nil {
			return "", err
		}
	}
	return r.reply, nil
}

// checkMCP lists the box's tools with the turn's token.
func checkMCP(ctx context.Context, url, token string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c := mcp.NewClient(&mcp.Implementation{Name: "lowkey-preset-check", Version: "1"}, nil)
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url, DisableStandaloneSSE: true,
		HTTPClient: &http.Client{Transport: bearer{tok: token, base: http.DefaultTransport}}}, nil)
	if err != nil {
		return err
	}
	defer cs.Close()
	_, err = cs.ListTools(ctx, nil)
	return err
}

// missingKey says which secret to set when none of the preset's keys is.
func missingKey(p *Preset, secrets map[string]string) string {
	for _, k := range p.Keys {
		if secrets[k] != "" {
			return ""
		}
	}
	return fmt.Sprintf("the %s agent needs the box secret %s: set it on the box with \"lowkey secrets set %s\"", p.Name, strings.Join(p.Keys, " or "), p.Keys[0])
}

// prompt is the message for the CLI, with the new standing instructions
// before it when they changed during its conversation.
func (r *presetRun) prompt() string {
	if !r.renewed {
		return r.in.Message
	}
	return "(The box's standing instructions have changed. From now on:\n" + r.in.instructions() + ")\n\n" + r.in.Message
}

// fail ends the turn with why, stopping the CLI.
func (r *presetRun) fail(why string) {
	r.mu.Lock()
	if r.failed == "" {
		r.failed = why
	}
	r.mu.Unlock()
	r.kill()
}

// said keeps the CLI's latest words: the reply, unless a tool call comes
// after them.
func (r *presetRun) said(text string) {
	if strings.TrimSpace(text) == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reply = text
}

// calls shows a tool call in the thread; words the CLI said before it were
// not its answer, so they show too, as they happened.
func (r *presetRun) calls(tool string, args []byte) {
	r.mu.Lock()
	before := r.reply
	r.reply = ""
	r.mu.Unlock()
	if before != "" {
		r.show("%s", before)
	}
	r.show("→ %s %s", tool, args)
}

// show puts a progress line in the thread (not in the reply).
func (r *presetRun) show(format string, a ...any) {
	line := fmt.Sprintf(format, a...)
	if len(line) > 300 {
		line = line[:300] + "…"
	}
	fmt.Fprintln(r.progress, strings.ReplaceAll(line, "\n", " "))
}

// boxTool is a box tool's name as a CLI spells it: mcp__lowkey__shell_run
// or lowkey__shell.run become shell.run.
func boxTool(name string) string {
	for _, prefix := range []string{"mcp__lowkey__", "lowkey__", "mcp_lowkey_", "lowkey_"} {
		if rest, ok := strings.CutPrefix(name, prefix); ok {
			return strings.Replace(rest, "_", ".", 1)
		}
	}
	return name
}

// writePrivate writes a file only this turn's worker reads.
func (r *presetRun) writePrivate(name string, v any) (string, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return "", err
	}
	path := filepath.Join(r.private, name)
	return path, os.WriteFile(path, b, 0o600)
}

// tail keeps the end of a stream (a CLI's stderr) for the error.
type tail struct {
	mu sync.Mutex
	b  []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > 4096 {
		t.b = t.b[len(t.b)-4096:]
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}
