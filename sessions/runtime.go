package sessions

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/lowkeyhq/lowkey/sessions/cgroup"
	"github.com/lowkeyhq/lowkey/sessions/sandbox"
)

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
	// AgentPath is the PATH of turns and jobs, where agent CLIs are found
	// (default: the system's directories).
	AgentPath string
	// AgentBins are explicit paths of presets' CLIs, by preset name.
	AgentBins map[string]string
	// Instructions returns the box's standing instructions for agents and
	// where they come from ("" and "": the built-in ones).
	Instructions func() (text, source string)
	// Metrics counts how turns and jobs end (default: counters of its own).
	Metrics *Metrics
	Logger  *slog.Logger
}

// DeviceInfo is one paired computer as an agent sees it.
type DeviceInfo struct {
	ID      string `json:"id" jsonschema:"the computer's id, for device.action"`
	Name    string `json:"name" jsonschema:"its name"`
	Online  bool   `json:"online" jsonschema:"whether its link is up now"`
	Browser bool   `json:"browser" jsonschema:"whether this conversation's browser toggle is on for it"`
	Desktop bool   `json:"desktop" jsonschema:"whether this conversation's desktop toggle is on for it"`
}

// Devices is the box's side of device actions for agents.
type Devices interface {
	// List describes the paired computers and this session's toggles on
	// each.
	List(session string) []DeviceInfo
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
