package sessions

// The stop levels above a job: cancel a turn, kill all work in a session, forget it.

import (
	"context"
	"syscall"
	"time"
)

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
