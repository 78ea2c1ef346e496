package sessions

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lowkeyhq/lowkey/sessions/cgroup"
	"github.com/lowkeyhq/lowkey/sessions/sandbox"
)

// Turn states.
const (
	StateRunning   = "running"
	StateStalled   = "stalled"
	StateDone      = "done"
	StateCancelled = "cancelled"
	StateFailed    = "failed"
	StateOOM       = "out_of_memory"
)

// Turn is one run of the agent on one message.
type Turn struct {
	ID       string    `json:"id"`
	Session  string    `json:"session"`
	Message  string    `json:"message"`
	State    string    `json:"state"`
	Detail   string    `json:"detail,omitempty"`
	Reply    string    `json:"reply,omitempty"`
	Stalls   []string  `json:"stalls,omitempty"` // "stalled", "stalled, resumed"
	Started  time.Time `json:"started"`
	Ended    time.Time `json:"ended,omitzero"`
	ExitCode *int      `json:"exit_code,omitempty"`
}

// Config is what the session runtime needs from the box.
type Config struct {
	Store  Store
	Groups *cgroup.Manager
	// WorkerBin runs the built-in agents: "WorkerBin agent builtin|openai".
	WorkerBin string
	// MCPURL is the box's MCP endpoint, handed to every turn.
	MCPURL string
	// WorkDir holds each session's working directory. It must be
	// outside the hub's data directory: workers never see that.
	WorkDir string
	// Boundary separates workers from the hub (nil: none, for tests of
	// the runtime alone).
	Boundary *sandbox.Boundary
	// Mask hides the box's secret values in everything kept or shown.
	Mask *Masker
	// SecretDir is where credential files are made (tmpfs when there is
	// one).
	SecretDir string
	// BoxID names this box's own credentials directory under SecretDir,
	// the same across restarts (default: its WorkDir). Boxes may share
	// a WorkDir (the agent account's), never a BoxID.
	BoxID string
	// Secrets returns the box's stored credentials meant for a runtime
	// ("builtin", "openai", "exec").
	Secrets func(runtime string) (map[string]string, error)
	// Devices carries agent device actions through the box's gate.
	Devices Devices
	// Pages publishes a directory as a static page.
	Pages Publisher
	// Confirms asks the person.
	Confirms *Confirmations
	// StallAfter marks a turn stalled after this long without output.
	StallAfter time.Duration
	// Grace is how long a cancelled turn has to stop before it is killed.
	Grace time.Duration
	// ConfirmTimeout is how long an agent's question waits when it names
	// no time (default 2 minutes).
	ConfirmTimeout time.Duration
	// Pids bounds the processes of one session.
	Pids int64
	// Metrics counts how turns and jobs end (default: counters of its own).
	Metrics *Metrics
	Logger  *slog.Logger
}

// Devices is the box's side of device actions for agents.
type Devices interface {
	// List describes the computers this session holds grants for.
	List(session string) any
	// Do runs one action through the gate on behalf of a turn.
	Do(ctx context.Context, session, who, device, action string, args json.RawMessage) (json.RawMessage, []byte, error)
}

// Publisher publishes a tar archive of a session's files as a page.
type Publisher interface {
	Publish(session string, tar io.Reader) (any, error)
}

// Runtime runs the sessions' turns and jobs.
type Runtime struct {
	cfg Config
	log *slog.Logger

	// boxDir is the private credentials directory this box made ("" if it
	// had to use SecretDir's base as it is); Close removes it.
	boxDir string

	// ctx is every session's parent; Close cancels it.
	ctx  context.Context
	stop context.CancelFunc

	mu   sync.Mutex
	live map[string]*liveSession
	// byTok maps each MCP token to its session; a token lives as long as
	// the turn or job it was made for.
	byTok map[string]string
}

// liveSession is a session with work in memory.
type liveSession struct {
	s      *Session
	events *eventLog

	mu        sync.Mutex
	group     cgroup.Group
	turnGroup cgroup.Group // one turn runs at a time: its leaf is reused
	turnOOMs  uint64       // the turn group's OOM kills so far
	turn      *runningTurn
	jobs      map[string]*runningJob
	history   []historyItem
	// ctx ends when the session is killed: device actions in flight stop.
	ctx    context.Context
	cancel context.CancelFunc
}

type historyItem struct {
	Role string `json:"role"`
	Text string `json:"text"`
}

type runningTurn struct {
	t         Turn
	cmd       *exec.Cmd
	worker    *sandbox.Worker
	group     cgroup.Group
	stdin     io.WriteCloser
	stdinMu   sync.Mutex
	ctx       context.Context
	cancel    context.CancelFunc
	cancelled bool
	killed    bool
	last      time.Time
	done      chan struct{}
}

// NewRuntime prepares the runtime.
func NewRuntime(cfg Config) *Runtime {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics()
	}
	if cfg.StallAfter <= 0 {
		cfg.StallAfter = time.Minute
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 2 * time.Second
	}
	if cfg.ConfirmTimeout <= 0 {
		cfg.ConfirmTimeout = 2 * time.Minute
	}
	if cfg.Pids <= 0 {
		cfg.Pids = 1024
	}
	if cfg.SecretDir == "" {
		cfg.SecretDir = os.TempDir()
		if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
			cfg.SecretDir = "/dev/shm"
		}
	}
	if cfg.Secrets == nil {
		cfg.Secrets = func(string) (map[string]string, error) { return nil, nil }
	}
	if cfg.Boundary == nil {
		cfg.Boundary = &sandbox.Boundary{}
	}
	if cfg.Mask == nil {
		cfg.Mask = &Masker{}
	}
	r := &Runtime{cfg: cfg, log: cfg.Logger, live: map[string]*liveSession{}, byTok: map[string]string{}}
	r.ctx, r.stop = context.WithCancel(context.Background())
	if cfg.WorkDir != "" {
		// The box's own, so no agent can swap a session's directory for a
		// link elsewhere; agents pass through it to their sessions' own.
		err := os.MkdirAll(cfg.WorkDir, 0o711)
		if err == nil {
			err = os.Lchown(cfg.WorkDir, os.Getuid(), os.Getgid())
		}
		if err == nil {
			err = os.Chmod(cfg.WorkDir, 0o711)
		}
		if err != nil {
			r.log.Error("could not set up the sessions' work directory", "dir", cfg.WorkDir, "err", err)
		}
	}
	if r.boxDir = r.boxSecretDir(cfg.SecretDir); r.boxDir != "" {
		r.cfg.SecretDir = r.boxDir
	}
	r.sweepGroups()
	return r
}

// boxSecretDir makes this box's own directory for credential files under
// base, named after its BoxID, and empties it: files a box that
// died (kill -9, power loss) could not remove go at its next start.
// Another box's directory is never touched. "" means none could be made.
func (r *Runtime) boxSecretDir(base string) string {
	key := r.cfg.BoxID
	if key == "" {
		key, _ = filepath.Abs(r.cfg.WorkDir)
	}
	sum := sha256.Sum256([]byte(key))
	dir := filepath.Join(base, "lowkey-box-"+hex.EncodeToString(sum[:8]))
	_ = os.RemoveAll(dir)
	err := os.Mkdir(dir, 0o700)
	if err == nil {
		err = ownedPrivateDir(dir)
	}
	if err != nil {
		// Someone else holds the name: a fresh directory of our own.
		if d, terr := os.MkdirTemp(base, "lowkey-box-"); terr == nil {
			r.log.Warn("credentials directory taken; using a fresh one", "dir", dir, "err", err, "using", d)
			return d
		}
		r.log.Warn("no private credentials directory; credentials files go straight under "+base, "err", err)
		return ""
	}
	return dir
}

// ownedPrivateDir checks dir is a real directory of this user's, 0700.
func ownedPrivateDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || fi.Mode().Perm() != 0o700 || !ok || int(st.Uid) != os.Getuid() {
		return fmt.Errorf("%s is not a private directory of this user", dir)
	}
	return nil
}

// sweepGroups kills what a box that died left running in its sessions'
// groups, and removes the groups: its agents do not outlive it.
func (r *Runtime) sweepGroups() {
	if r.cfg.Store == nil || r.cfg.Groups == nil {
		return
	}
	var ids []string
	if err := r.cfg.Store.Each("session/", func(key string, _ []byte) error {
		ids = append(ids, strings.TrimPrefix(key, "session/"))
		return nil
	}); err != nil {
		r.log.Error("reading the sessions whose groups to clear", "err", err)
	}
	for _, id := range ids {
		if n, err := r.cfg.Groups.Sweep(id); err != nil {
			r.log.Warn("could not clear a session's group left from before", "session", id, "err", err)
		} else if n > 0 {
			r.log.Info("stopped processes left from before the box restarted", "session", id, "processes", n)
		}
	}
}

// workDir is a session's working directory, the agent account's, made
// again if an agent removed it.
func (r *Runtime) workDir(id string) string {
	dir := filepath.Join(r.cfg.WorkDir, id)
	if err := os.MkdirAll(dir, 0o700); err == nil {
		if err := r.cfg.Boundary.Own(dir); err != nil {
			r.log.Warn("could not hand a session's work directory to the agent account", "dir", dir, "err", err)
		}
	}
	return dir
}

// home is the workers' HOME: the agent account's own, kept across turns,
// or the session's work directory when there is none.
func (r *Runtime) home(work string) string {
	if h := r.cfg.Boundary.Home(); h != "" {
		return h
	}
	return work
}

// workerEnv is the clean environment of every turn and job: nothing of
// the box's own leaks in.
func (r *Runtime) workerEnv(work string, extra ...string) []string {
	env := []string{"PATH=" + workerPath, "HOME=" + r.home(work), "LANG=C.UTF-8"}
	if u := r.cfg.Boundary.User(); u != "" {
		env = append(env, "USER="+u, "LOGNAME="+u)
	}
	return append(env, extra...)
}

// mintToken makes the MCP token of one turn or job.
func (r *Runtime) mintToken(session string) string {
	tok := rand.Text() + rand.Text()
	r.mu.Lock()
	r.byTok[tok] = session
	r.mu.Unlock()
	return tok
}

// dropToken ends a token: its turn or job is over.
func (r *Runtime) dropToken(tok string) {
	r.mu.Lock()
	delete(r.byTok, tok)
	r.mu.Unlock()
}

// runtimeName is the runtime a session's secrets are chosen by.
func runtimeName(agent string) string {
	if strings.HasPrefix(agent, "exec:") {
		return "exec"
	}
	return agent
}

// credentials is the content of a worker's credentials file.
func credentials(token string, secrets map[string]string) ([]byte, error) {
	if secrets == nil {
		secrets = map[string]string{}
	}
	b, err := json.Marshal(map[string]any{"mcp_token": token, "secrets": secrets})
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	return append(b, '\n'), nil
}

// ErrBusy: a turn is already running in the session.
var ErrBusy = errors.New("a turn is already running in this session: wait for it, or cancel it")

// ErrNotFound: no such turn or job.
var ErrNotFound = errors.New("not found")

func (r *Runtime) session(id string) (*liveSession, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ls := r.live[id]; ls != nil {
		return ls, nil
	}
	var s Session
	if err := r.cfg.Store.Get("session/"+id, &s); err != nil {
		return nil, ErrNotFound
	}
	events, err := openEventLog(r.cfg.Store, id, r.cfg.Mask, r.log)
	if err != nil {
		return nil, err
	}
	ls := &liveSession{s: &s, events: events, jobs: map[string]*runningJob{}}
	ls.ctx, ls.cancel = context.WithCancel(r.ctx)
	for _, t := range r.Turns(id) {
		ls.history = append(ls.history, historyItem{"user", t.Message})
		if t.Reply != "" {
			ls.history = append(ls.history, historyItem{"assistant", t.Reply})
		}
	}
	r.live[id] = ls
	return ls, nil
}

// SessionForToken maps an MCP token to its session, while the turn or
// job it was made for runs.
func (r *Runtime) SessionForToken(tok string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	id, ok := r.byTok[tok]
	return id, ok
}

// Budget says whether sessions get a memory budget, and why not.
func (r *Runtime) Budget() string {
	if reason := r.cfg.Groups.Unavailable(); reason != "" {
		return "no memory budget: " + reason
	}
	return ""
}

// Separation says what keeps this box's agents from the hub itself when
// that is less than the whole boundary ("" when it holds).
func (r *Runtime) Separation() string {
	if m := r.cfg.Boundary.Missing(); m != "" {
		return "agents are not fully separated from the box: " + m
	}
	return ""
}

// groupOf makes the session's group on first use.
func (r *Runtime) groupOf(ls *liveSession) (cgroup.Group, error) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.group != nil {
		return ls.group, nil
	}
	g, err := r.cfg.Groups.NewSession(ls.s.ID, cgroup.Limits{MemoryBytes: ls.s.MemoryLimitBytes, Pids: r.cfg.Pids})
	if err != nil {
		return nil, fmt.Errorf("the session's memory budget could not be set up: %w", err)
	}
	tg, err := g.Child("turn")
	if err != nil {
		_ = g.Delete()
		return nil, fmt.Errorf("the session's turn group: %w", err)
	}
	ls.group, ls.turnGroup, ls.turnOOMs = g, tg, tg.OOMKills()
	// The working directory comes with the session, not with its turns.
	r.workDir(ls.s.ID)
	for _, msg := range []string{r.Budget(), r.Separation()} {
		if msg != "" {
			ls.events.emit("session.warning", "", "", map[string]string{"message": msg})
		}
	}
	return g, nil
}

// Prepare sets a new session's memory budget up ahead of its first turn.
func (r *Runtime) Prepare(id string) error {
	ls, err := r.session(id)
	if err != nil {
		return err
	}
	_, err = r.groupOf(ls)
	return err
}

// Events replays a session's events after since, then streams.
func (r *Runtime) Events(id string, since uint64) ([]Event, chan Event, func(), error) {
	ls, err := r.session(id)
	if err != nil {
		return nil, nil, nil, err
	}
	replay, live, cancel := ls.events.subscribe(since)
	return replay, live, cancel, nil
}

// Emit records an event in a session (the box's own events: grants,
// device actions).
func (r *Runtime) Emit(id, typ string, data any) {
	if ls, err := r.session(id); err == nil {
		ls.events.emit(typ, "", "", data)
		ls.events.flush()
	}
}

// Turns lists a session's turns, oldest first.
func (r *Runtime) Turns(id string) []Turn {
	out := []Turn{}
	if err := r.cfg.Store.Each("turn/"+id+"/", func(_ string, raw []byte) error {
		var t Turn
		if json.Unmarshal(raw, &t) == nil {
			out = append(out, t)
		}
		return nil
	}); err != nil {
		r.log.Error("reading a conversation's turns", "session", id, "err", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Started.Before(out[j].Started) })
	return out
}

// noteTurn saves a turn's state on the way (stalled, resumed, failed to
// start): a failure is logged, and the turn's end is saved again.
func (r *Runtime) noteTurn(t Turn) {
	if err := r.saveTurn(t); err != nil {
		r.log.Warn("a turn's state could not be saved on the way", "session", t.Session, "turn", t.ID, "state", t.State)
	}
}

func (r *Runtime) saveTurn(t Turn) error {
	t.Message, t.Reply, t.Detail = r.cfg.Mask.String(t.Message), r.cfg.Mask.String(t.Reply), r.cfg.Mask.String(t.Detail)
	if err := r.cfg.Store.Put("turn/"+t.Session+"/"+t.ID, t); err != nil {
		r.log.Error("could not save a turn", "session", t.Session, "turn", t.ID, "err", err)
		return err
	}
	return nil
}

// workerCommand is the program and arguments of a session's runtime, and
// whether it is the box's own program (the built-in agents).
func (r *Runtime) workerCommand(agent string) (argv []string, own bool, err error) {
	switch {
	case agent == "builtin" || agent == "openai":
		if r.cfg.WorkerBin == "" {
			return nil, false, errors.New("no worker binary configured")
		}
		return []string{r.cfg.WorkerBin, "agent", agent}, true, nil
	case strings.HasPrefix(agent, "exec:"):
		line := strings.TrimPrefix(agent, "exec:")
		if argv := plainCommand(line); argv != nil {
			return argv, false, nil
		}
		return []string{"/bin/sh", "-c", line}, false, nil
	}
	return nil, false, fmt.Errorf("unknown agent runtime %q", agent)
}

// plainCommand splits a command line the shell would only split on
// spaces (no quotes, variables, globs, redirections or builtins) into
// its words, so it can run without a shell in between, as make does.
// Anything else returns nil and goes through /bin/sh -c.
func plainCommand(line string) []string {
	for _, c := range line {
		ok := c == ' ' || c == '/' || c == '.' || c == '_' || c == '-' || c == ',' || c == ':' || c == '+' || c == '@' || c == '%' || c == '=' ||
			'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if !ok {
			return nil
		}
	}
	argv := strings.Fields(line)
	if len(argv) == 0 || strings.Contains(argv[0], "=") || shellBuiltins[argv[0]] {
		return nil
	}
	path := lookWorkerPath(argv[0])
	if path == "" {
		return nil // the shell's "not found" message says it best
	}
	argv[0] = path
	return argv
}

// workerPath is the PATH every turn and job gets.
const workerPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// lookWorkerPath finds a program the way the worker's shell would.
func lookWorkerPath(name string) string {
	if strings.Contains(name, "/") {
		if syscall.Access(name, 1) == nil {
			return name
		}
		return ""
	}
	for _, dir := range filepath.SplitList(workerPath) {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && syscall.Access(p, 1) == nil {
			return p
		}
	}
	return ""
}

// shellBuiltins are the words a shell runs itself, not as a program.
var shellBuiltins = map[string]bool{
	".": true, ":": true, "alias": true, "break": true, "cd": true, "command": true, "continue": true,
	"eval": true, "exec": true, "exit": true, "export": true, "getopts": true, "hash": true, "local": true,
	"read": true, "readonly": true, "return": true, "set": true, "shift": true, "source": true, "times": true,
	"trap": true, "type": true, "ulimit": true, "umask": true, "unalias": true, "unset": true, "wait": true,
	"if": true, "then": true, "else": true, "elif": true, "fi": true, "case": true, "esac": true, "for": true,
	"while": true, "until": true, "do": true, "done": true, "function": true, "select": true,
}

// pipeRoom is what a pipe surely holds with no reader (Linux's smallest
// pipe buffer is one 4 KiB page; the default is 64 KiB).
const pipeRoom = 4 << 10

// StartTurn runs the agent on a new message.
func (r *Runtime) StartTurn(id, text string) (*Turn, error) {
	ls, err := r.session(id)
	if err != nil {
		return nil, err
	}
	ls.mu.Lock()
	if ls.turn != nil {
		ls.mu.Unlock()
		return nil, ErrBusy
	}
	rt := &runningTurn{t: Turn{ID: "t-" + randomID(), Session: id, Message: text, State: StateRunning, Started: time.Now().UTC()}, done: make(chan struct{}), last: time.Now()}
	ls.turn = rt
	history := append([]historyItem(nil), recentHistory(ls.history)...)
	ls.history = append(ls.history, historyItem{"user", text})
	ls.mu.Unlock()
	fail := func(err error) (*Turn, error) {
		rt.t.State, rt.t.Detail, rt.t.Ended = StateFailed, err.Error(), time.Now().UTC()
		r.noteTurn(rt.t)
		ls.events.emit("turn.state", rt.t.ID, "", map[string]string{"state": rt.t.State, "detail": rt.t.Detail})
		ls.mu.Lock()
		ls.turn = nil
		ls.mu.Unlock()
		close(rt.done)
		ls.events.flush()
		return &rt.t, err
	}
	if err := r.saveTurn(rt.t); err != nil {
		// Nothing is started that the box could not record.
		ls.mu.Lock()
		ls.turn = nil
		ls.history = ls.history[:len(ls.history)-1]
		ls.mu.Unlock()
		close(rt.done)
		return nil, fmt.Errorf("the turn could not be recorded, so it did not start: %w", err)
	}
	ls.events.emit("message", rt.t.ID, "", map[string]string{"role": "user", "text": text})
	ls.events.emit("turn.state", rt.t.ID, "", map[string]string{"state": StateRunning})
	if _, err := r.groupOf(ls); err != nil {
		return fail(err)
	}
	ls.mu.Lock()
	rt.group = ls.turnGroup
	oomBefore := ls.turnOOMs
	ls.mu.Unlock()
	argv, own, err := r.workerCommand(ls.s.Agent)
	if err != nil {
		return fail(err)
	}
	token := r.mintToken(id)
	secrets, err := r.cfg.Secrets(runtimeName(ls.s.Agent))
	if err != nil {
		r.dropToken(token)
		return fail(err)
	}
	creds, err := credentials(token, secrets)
	if err != nil {
		r.dropToken(token)
		return fail(err)
	}
	work := r.workDir(id)
	w, err := r.cfg.Boundary.Command(sandbox.Spec{
		Argv: argv, Dir: work, OwnBinary: own, Credentials: creds, CredentialsDir: r.cfg.SecretDir,
		Env: r.workerEnv(work, "LOWKEY_SESSION="+id, "LOWKEY_TURN="+rt.t.ID, "LOWKEY_MCP_URL="+r.cfg.MCPURL),
	}, rt.group)
	if err != nil {
		r.dropToken(token)
		return fail(err)
	}
	stdin, stdout, stderr, err := w.Pipes(true)
	if err != nil {
		r.dropToken(token)
		w.Release()
		return fail(err)
	}
	cmd := w.Cmd
	rt.stdin = stdin
	rt.cmd, rt.worker = cmd, w
	rt.ctx, rt.cancel = context.WithCancel(ls.ctx)
	input, _ := json.Marshal(map[string]any{"session": id, "turn": rt.t.ID, "history": history, "message": text})
	input = append(input, '\n')
	// Input that fits the pipe is there before the worker looks for it;
	// more is written as the worker reads.
	early := len(input) <= pipeRoom
	if early {
		_, _ = stdin.Write(input)
	}
	if err := w.Start(); err != nil {
		r.dropToken(token)
		return fail(fmt.Errorf("could not start the agent: %w", err))
	}
	if !early {
		go func() {
			rt.stdinMu.Lock()
			_, _ = stdin.Write(input)
			rt.stdinMu.Unlock()
		}()
	}
	var reply strings.Builder
	var outMu sync.Mutex
	budget := outputBudget{spill: spillTo(work, "turn-"+rt.t.ID+".log", r.cfg.Boundary.Own)}
	var wg sync.WaitGroup
	read := func(stream string, rd io.Reader) {
		defer wg.Done()
		readLines(rd, func(line string, cut bool) {
			r.touch(ls, rt)
			if cut {
				line += fmt.Sprintf(" … (line cut at %d KiB)", maxLine>>10)
			}
			outMu.Lock()
			kept := budget.take(line)
			if kept && stream == "stdout" {
				reply.WriteString(line + "\n")
			}
			outMu.Unlock()
			if kept {
				ls.events.emit("turn.output", rt.t.ID, "", map[string]string{"stream": stream, "text": line})
			}
		})
	}
	wg.Add(2)
	go read("stdout", stdout)
	go read("stderr", stderr)
	go r.watchStall(ls, rt)
	go func() {
		wg.Wait()
		// The worker's output is closed: what it left behind goes now,
		// and so do its credentials file and its token.
		w.Release()
		werr := cmd.Wait()
		r.dropToken(token)
		// Whatever the agent left running in the turn's group goes with it.
		_ = rt.group.Kill()
		ooms := rt.group.OOMKills()
		oom := ooms > oomBefore
		if oom {
			r.cfg.Metrics.OOMKills.Add(float64(ooms - oomBefore))
		}
		rt.cancel()
		ls.mu.Lock()
		ls.turnOOMs = ooms
		t := rt.t
		t.Reply = strings.TrimSpace(reply.String())
		if err := budget.close(); err != nil {
			r.log.Warn("the turn's output log could not be written in full", "session", id, "turn", t.ID, "err", err)
		}
		if budget.dropped > 0 {
			t.Reply += "\n[" + budget.note() + "]"
			ls.events.emit("turn.output", t.ID, "", map[string]string{"stream": "stderr", "text": budget.note()})
		}
		t.Ended = time.Now().UTC()
		if code := cmd.ProcessState.ExitCode(); code >= 0 {
			t.ExitCode = &code
		}
		switch {
		case rt.killed:
			t.State, t.Detail = StateCancelled, "the session was killed"
		case rt.cancelled:
			t.State, t.Detail = StateCancelled, "cancelled"
		case oom:
			t.State, t.Detail = StateOOM, fmt.Sprintf("memory budget of %s exceeded", formatBytes(ls.s.MemoryLimitBytes))
		case werr != nil:
			t.State, t.Detail = StateFailed, "the agent "+describeExit(werr)
		default:
			t.State = StateDone
		}
		if t.Reply != "" {
			ls.history = append(ls.history, historyItem{"assistant", t.Reply})
		}
		ls.turn = nil
		ls.mu.Unlock()
		if err := r.saveTurn(t); err != nil {
			// Shown as it is: the turn's end is not on disk.
			t.State, t.Detail = StateFailed, "the end of this turn could not be recorded: "+err.Error()
		}
		if t.Reply != "" && t.State == StateDone {
			ls.events.emit("message", t.ID, "", map[string]string{"role": "assistant", "text": t.Reply})
		}
		ls.events.emit("turn.state", t.ID, "", map[string]string{"state": t.State, "detail": t.Detail})
		r.cfg.Metrics.TurnsEnded.WithLabelValues(t.State).Inc()
		r.log.Info("turn ended", "session", id, "turn", t.ID, "state", t.State, "detail", r.cfg.Mask.String(t.Detail))
		close(rt.done)
	}()
	// The answer to the message means it is on disk: the events of the
	// start were written while the worker started.
	ls.events.flush()
	return &rt.t, nil
}

func describeExit(err error) string {
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "was killed by " + ws.Signal().String()
		}
		return fmt.Sprintf("exited with status %d", exit.ExitCode())
	}
	return "failed: " + err.Error()
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20:
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// touch notes output; a stalled turn that speaks again is resumed.
func (r *Runtime) touch(ls *liveSession, rt *runningTurn) {
	ls.mu.Lock()
	rt.last = time.Now()
	resumed := rt.t.State == StateStalled
	if resumed {
		rt.t.State = StateRunning
		rt.t.Stalls[len(rt.t.Stalls)-1] = "stalled, resumed"
	}
	t := rt.t
	ls.mu.Unlock()
	if resumed {
		r.noteTurn(t)
		ls.events.emit("turn.state", t.ID, "", map[string]string{"state": StateRunning, "detail": "stalled, resumed"})
	}
}

func (r *Runtime) watchStall(ls *liveSession, rt *runningTurn) {
	tick := time.NewTicker(min(r.cfg.StallAfter/4, time.Second))
	defer tick.Stop()
	for {
		select {
		case <-rt.done:
			return
		case <-tick.C:
		}
		ls.mu.Lock()
		stalled := rt.t.State == StateRunning && time.Since(rt.last) >= r.cfg.StallAfter
		if stalled {
			rt.t.State = StateStalled
			rt.t.Stalls = append(rt.t.Stalls, "stalled")
		}
		t := rt.t
		ls.mu.Unlock()
		if stalled {
			r.noteTurn(t)
			ls.events.emit("turn.state", t.ID, "", map[string]string{"state": StateStalled, "detail": fmt.Sprintf("no output for %s", r.cfg.StallAfter)})
		}
	}
}

// Nudge pushes a turn: the worker gets a nudge message on stdin.
func (r *Runtime) Nudge(id, turn string) error {
	ls, rt, err := r.turn(id, turn)
	if err != nil {
		return err
	}
	rt.stdinMu.Lock()
	_, err = rt.stdin.Write([]byte(`{"type":"nudge"}` + "\n"))
	rt.stdinMu.Unlock()
	if err != nil {
		return fmt.Errorf("the agent is not reading its input: %w", err)
	}
	ls.events.emit("turn.nudged", turn, "", nil)
	return nil
}

func (r *Runtime) turn(id, turn string) (*liveSession, *runningTurn, error) {
	ls, err := r.session(id)
	if err != nil {
		return nil, nil, err
	}
	ls.mu.Lock()
	rt := ls.turn
	ls.mu.Unlock()
	if rt == nil || rt.t.ID != turn {
		return nil, nil, fmt.Errorf("%w: turn %s is not running", ErrNotFound, turn)
	}
	return ls, rt, nil
}

// CancelTurn interrupts a turn, then kills what is left of it after the
// grace period. Its device actions in flight are cancelled. Jobs it
// started go on.
func (r *Runtime) CancelTurn(id, turn string) error {
	ls, rt, err := r.turn(id, turn)
	if err != nil {
		return err
	}
	ls.mu.Lock()
	rt.cancelled = true
	ls.mu.Unlock()
	rt.cancel()
	pids, _ := rt.group.Procs()
	for _, p := range pids {
		_ = syscall.Kill(p, syscall.SIGINT)
	}
	select {
	case <-rt.done:
	case <-time.After(r.cfg.Grace):
		_ = rt.group.Kill()
		<-rt.done
	}
	return nil
}

// Kill stops all work in a session: the turn, every job, every device
// action in flight.
func (r *Runtime) Kill(id string) error {
	ls, err := r.session(id)
	if err != nil {
		return err
	}
	ls.mu.Lock()
	rt, g := ls.turn, ls.group
	if rt != nil {
		rt.killed = true
	}
	jobs := make([]*runningJob, 0, len(ls.jobs))
	for _, j := range ls.jobs {
		j.stopped = true
		jobs = append(jobs, j)
	}
	ls.cancel()
	ls.ctx, ls.cancel = context.WithCancel(r.ctx)
	ls.mu.Unlock()
	var kerr error
	if g != nil {
		kerr = g.Kill()
	}
	if rt != nil {
		<-rt.done
	}
	for _, j := range jobs {
		<-j.done
	}
	ls.events.emit("session.killed", "", "", nil)
	return kerr
}

// turnContext is the context of the session's running turn (device
// actions an agent starts end with it), or the session's.
func (r *Runtime) turnContext(id string) (context.Context, string) {
	ls, err := r.session(id)
	if err != nil {
		ctx, cancel := context.WithCancel(r.ctx)
		cancel()
		return ctx, ""
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.turn != nil {
		return ls.turn.ctx, ls.turn.t.ID
	}
	return ls.ctx, ""
}

// SessionContext ends when the session is killed (device actions started
// from the API use it; a turn ending does not stop them).
func (r *Runtime) SessionContext(id string) context.Context {
	ls, err := r.session(id)
	if err != nil {
		ctx, cancel := context.WithCancel(r.ctx)
		cancel()
		return ctx
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.ctx
}

// Forget stops all work in a session and drops what the runtime holds for
// it; its stored records are the caller's to remove.
func (r *Runtime) Forget(id string) error {
	err := r.Kill(id)
	r.mu.Lock()
	ls := r.live[id]
	delete(r.live, id)
	for tok, sid := range r.byTok {
		if sid == id {
			delete(r.byTok, tok)
		}
	}
	r.mu.Unlock()
	if ls != nil {
		ls.cancel()
		ls.events.flush()
		ls.mu.Lock()
		g := ls.group
		ls.mu.Unlock()
		if g != nil {
			_ = g.Delete()
		}
	}
	return err
}

// Close kills every session's work (the box is stopping) and removes the
// box's credentials directory.
func (r *Runtime) Close() {
	defer r.stop()
	defer func() {
		if r.boxDir != "" {
			_ = os.RemoveAll(r.boxDir)
		}
	}()
	r.mu.Lock()
	ids := make([]string, 0, len(r.live))
	for id := range r.live {
		ids = append(ids, id)
	}
	r.mu.Unlock()
	for _, id := range ids {
		_ = r.Kill(id)
		r.mu.Lock()
		ls := r.live[id]
		r.mu.Unlock()
		if ls != nil {
			ls.events.flush()
		}
		if ls != nil && ls.group != nil {
			_ = ls.group.Delete()
		}
	}
}
