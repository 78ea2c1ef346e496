package sessions

// A turn: one run of the agent on one message, from its start to how it ended.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lowkeyhq/lowkey/errcode"
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
	ID      string `json:"id"`
	Session string `json:"session"`
	Message string `json:"message"`
	// By is who sent the message (a person's name, "owner" for the API's
	// token).
	By       string    `json:"by,omitempty"`
	State    string    `json:"state"`
	Detail   string    `json:"detail,omitempty"`
	Reply    string    `json:"reply,omitempty"`
	Stalls   []string  `json:"stalls,omitempty"` // "stalled", "stalled, resumed"
	Started  time.Time `json:"started"`
	Ended    time.Time `json:"ended,omitzero"`
	ExitCode *int      `json:"exit_code,omitempty"`
	// Instructions says which standing instructions the agent was given:
	// "the box's standing instructions" or the owner's file.
	Instructions string `json:"instructions,omitempty"`
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
	calls     int // the box's tools the turn is waiting on now
	done      chan struct{}
}

// Turns lists a session's turns, oldest first.
func (r *Runtime) Turns(id string) []Turn {
	return listStored(r, "turn", id, func(t Turn) time.Time { return t.Started })
}

// listStored reads a session's records of one kind (turn, job), oldest
// first; a read that fails is logged and gives what was read.
func listStored[T any](r *Runtime, kind, session string, started func(T) time.Time) []T {
	out := []T{}
	if err := r.cfg.Store.Each(kind+"/"+session+"/", func(_ string, raw []byte) error {
		var v T
		if json.Unmarshal(raw, &v) == nil {
			out = append(out, v)
		}
		return nil
	}); err != nil {
		r.log.Error("reading a conversation's records", "kind", kind, "session", session, "err", err)
	}
	sort.Slice(out, func(i, j int) bool { return started(out[i]).Before(started(out[j])) })
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

// pipeRoom is what a pipe surely holds with no reader (Linux's smallest
// pipe buffer is one 4 KiB page; the default is 64 KiB).
const pipeRoom = 4 << 10

// StartTurn runs the agent on a new message. It returns once the turn is
// on disk and its worker has started (or failed to: the turn says why).
func (r *Runtime) StartTurn(id, text, by string) (*Turn, error) {
	ls, err := r.session(id)
	if err != nil {
		return nil, err
	}
	rt, history, err := r.beginTurn(ls, text, by)
	if err != nil {
		return nil, err
	}
	if err := r.runWorker(ls, rt, history); err != nil {
		return r.failStart(ls, rt, err)
	}
	// The answer to the message means it is on disk: the events of the
	// start were written while the worker started.
	ls.events.flush()
	return &rt.t, nil
}

// beginTurn makes the session's turn, records it and tells the thread;
// nothing starts that the box could not record.
func (r *Runtime) beginTurn(ls *liveSession, text, by string) (*runningTurn, []historyItem, error) {
	ls.mu.Lock()
	if ls.turn != nil {
		ls.mu.Unlock()
		return nil, nil, ErrBusy
	}
	rt := &runningTurn{t: Turn{ID: "t-" + randomID(), Session: ls.s.ID, Message: text, By: by, State: StateRunning, Started: time.Now().UTC()}, done: make(chan struct{}), last: time.Now()}
	ls.turn = rt
	history := append([]historyItem(nil), recentHistory(ls.history)...)
	ls.history = append(ls.history, historyItem{"user", text})
	ls.mu.Unlock()
	if err := r.saveTurn(rt.t); err != nil {
		ls.mu.Lock()
		ls.turn = nil
		ls.history = ls.history[:len(ls.history)-1]
		ls.mu.Unlock()
		close(rt.done)
		return nil, nil, fmt.Errorf("the turn could not be recorded, so it did not start: %w", err)
	}
	ls.events.emit("message", rt.t.ID, "", map[string]string{"role": "user", "text": text, "by": by})
	return rt, history, nil
}

// failStart ends a turn whose worker could not start.
func (r *Runtime) failStart(ls *liveSession, rt *runningTurn, err error) (*Turn, error) {
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

// turnOutput is what a turn's worker writes, as it is kept.
type turnOutput struct {
	wg     sync.WaitGroup // the two readers
	mu     sync.Mutex
	reply  strings.Builder
	budget outputBudget
}

// runWorker starts the turn's worker in the session's turn group, with
// its token and credentials, and the goroutines that read and end it.
func (r *Runtime) runWorker(ls *liveSession, rt *runningTurn, history []historyItem) error {
	id := ls.s.ID
	text, source := "", "the box's standing instructions"
	if r.cfg.Instructions != nil {
		if t, s := r.cfg.Instructions(); t != "" {
			text, source = t, s
		}
	}
	ls.mu.Lock()
	rt.t.Instructions = source
	ls.mu.Unlock()
	ls.events.emit("turn.state", rt.t.ID, "", map[string]string{"state": StateRunning, "instructions": source})
	if _, err := r.groupOf(ls); err != nil {
		return err
	}
	ls.mu.Lock()
	rt.group = ls.turnGroup
	oomBefore := ls.turnOOMs
	ls.mu.Unlock()
	argv, own, err := r.workerCommand(ls.s.Agent)
	if err != nil {
		return err
	}
	token := r.mintToken(id)
	started := false
	defer func() {
		if !started {
			r.dropToken(token)
		}
	}()
	secrets, err := r.cfg.Secrets(runtimeName(ls.s.Agent))
	if err != nil {
		return err
	}
	creds, err := credentials(token, secrets)
	if err != nil {
		return err
	}
	work := r.workDir(id)
	w, err := r.cfg.Boundary.Command(sandbox.Spec{
		Argv: argv, Dir: work, OwnBinary: own, Credentials: creds, CredentialsDir: r.cfg.SecretDir,
		Env: r.workerEnv(work, append([]string{"LOWKEY_SESSION=" + id, "LOWKEY_TURN=" + rt.t.ID, "LOWKEY_MCP_URL=" + r.cfg.MCPURL}, r.agentBin(ls.s.Agent)...)...),
	}, rt.group)
	if err != nil {
		return err
	}
	stdin, stdout, stderr, err := w.Pipes(true)
	if err != nil {
		w.Release()
		return err
	}
	rt.stdin = stdin
	rt.cmd, rt.worker = w.Cmd, w
	rt.ctx, rt.cancel = context.WithCancel(ls.ctx)
	input, err := json.Marshal(map[string]any{"session": id, "turn": rt.t.ID, "history": history, "message": rt.t.Message, "instructions": text})
	if err != nil {
		w.Release()
		return err
	}
	input = append(input, '\n')
	// Input that fits the pipe is there before the worker looks for it;
	// more is written as the worker reads.
	early := len(input) <= pipeRoom
	if early {
		_, _ = stdin.Write(input)
	}
	if err := w.Start(); err != nil {
		return fmt.Errorf("could not start the agent: %w", err)
	}
	started = true
	if !early {
		go func() {
			rt.stdinMu.Lock()
			_, _ = stdin.Write(input)
			rt.stdinMu.Unlock()
		}()
	}
	out := &turnOutput{budget: outputBudget{spill: spillTo(work, "turn-"+rt.t.ID+".log", r.cfg.Boundary.Own)}}
	out.wg.Add(2)
	go r.readTurn(ls, rt, out, "stdout", stdout)
	go r.readTurn(ls, rt, out, "stderr", stderr)
	go r.watchStall(ls, rt)
	go r.endTurn(ls, rt, w, token, oomBefore, out)
	return nil
}

// readTurn keeps one of the worker's streams within the turn's budget and
// shows each kept line in the thread.
func (r *Runtime) readTurn(ls *liveSession, rt *runningTurn, out *turnOutput, stream string, rd io.Reader) {
	defer out.wg.Done()
	readLines(rd, func(line string, cut bool) {
		r.touch(ls, rt)
		if cut {
			line += fmt.Sprintf(" … (line cut at %d KiB)", maxLine>>10)
		}
		out.mu.Lock()
		kept := out.budget.take(line)
		if kept && stream == "stdout" {
			out.reply.WriteString(line + "\n")
		}
		out.mu.Unlock()
		if kept {
			ls.events.emit("turn.output", rt.t.ID, "", map[string]string{"stream": stream, "text": line})
		}
	})
}

// endTurn waits for the worker, clears what it leaves behind (its group,
// credentials, token), and records how the turn ended.
func (r *Runtime) endTurn(ls *liveSession, rt *runningTurn, w *sandbox.Worker, token string, oomBefore uint64, out *turnOutput) {
	out.wg.Wait()
	// The worker's output is closed: what it left behind goes now,
	// and so do its credentials file and its token.
	w.Release()
	werr := rt.cmd.Wait()
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
	t.Reply = strings.TrimSpace(out.reply.String())
	if err := out.budget.close(); err != nil {
		r.log.Warn("the turn's output log could not be written in full", "session", t.Session, "turn", t.ID, "err", err)
	}
	if out.budget.dropped > 0 {
		t.Reply += "\n[" + out.budget.note() + "]"
		ls.events.emit("turn.output", t.ID, "", map[string]string{"stream": "stderr", "text": out.budget.note()})
	}
	t.Ended = time.Now().UTC()
	if code := rt.cmd.ProcessState.ExitCode(); code >= 0 {
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
	r.log.Info("turn ended", "session", t.Session, "turn", t.ID, "state", t.State, "detail", r.cfg.Mask.String(t.Detail))
	close(rt.done)
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

// busy marks a tool call of the session's running turn: the turn is not
// stalled while the box itself is working for it. The returned func ends
// the call.
func (r *Runtime) busy(id string) func() {
	ls, err := r.session(id)
	if err != nil {
		return func() {}
	}
	ls.mu.Lock()
	rt := ls.turn
	if rt != nil {
		rt.calls++
	}
	ls.mu.Unlock()
	if rt == nil {
		return func() {}
	}
	r.touch(ls, rt)
	return func() {
		ls.mu.Lock()
		rt.calls--
		ls.mu.Unlock()
		r.touch(ls, rt)
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
		stalled := rt.t.State == StateRunning && rt.calls == 0 && time.Since(rt.last) >= r.cfg.StallAfter
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
		return &errcode.Error{Code: errcode.Closed, Message: "the agent of this turn has closed its input, so it cannot be nudged: cancel the turn instead", Err: err}
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
