package sessions

// Memory budgets: each session's cgroup, and its turns' inside it.

import (
	"fmt"
	"strings"

	"github.com/lowkeyhq/lowkey/sessions/cgroup"
)

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
