package cgroup

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/opencontainers/runtime-spec/specs-go"
)

const v1Mount = "/sys/fs/cgroup"

// v1Subsystems are the hierarchies a v1 group lives in.
var v1Subsystems = []string{"memory", "pids", "freezer"}

// v1 groups live in three hierarchies: memory (the budget), pids (the
// fork limit) and freezer (to kill a group without racing its forks).
type v1Group struct {
	name string
	cg   cgroup1.Cgroup
}

func v1Hierarchy() ([]cgroup1.Subsystem, error) {
	return []cgroup1.Subsystem{cgroup1.NewMemory(v1Mount), cgroup1.NewPids(v1Mount), cgroup1.NewFreezer(v1Mount)}, nil
}

func newV1(name string, l Limits) (Group, error) {
	res := &specs.LinuxResources{}
	if l.MemoryBytes > 0 {
		swap := l.MemoryBytes // memory+swap equal to memory: no swap escape
		res.Memory = &specs.LinuxMemory{Limit: &l.MemoryBytes, Swap: &swap}
		if _, err := os.Stat(filepath.Join(v1Mount, "memory", "memory.memsw.limit_in_bytes")); err != nil {
			res.Memory.Swap = nil // no swap accounting: nothing to escape into
		}
	}
	if l.Pids > 0 {
		res.Pids = &specs.LinuxPids{Limit: &l.Pids}
	}
	// A group left by a hub that died is emptied and made anew.
	_, _ = sweepV1(name)
	cg, err := cgroup1.New(cgroup1.StaticPath("/"+name), res, cgroup1.WithHiearchy(v1Hierarchy))
	if err != nil {
		return nil, err
	}
	return &v1Group{name: name, cg: cg}, nil
}

// sweepV1 empties and removes a group left from before, if there is one.
func sweepV1(name string) (int, error) {
	if _, err := os.Stat(filepath.Join(v1Mount, "memory", name)); err != nil {
		return 0, nil
	}
	cg, err := cgroup1.Load(cgroup1.StaticPath("/"+name), cgroup1.WithHiearchy(v1Hierarchy))
	if err != nil {
		return 0, err
	}
	return sweep(&v1Group{name: name, cg: cg})
}

func (g *v1Group) Name() string { return g.name }

func (g *v1Group) Child(name string) (Group, error) {
	cg, err := g.cg.New(name, &specs.LinuxResources{})
	if err != nil {
		return nil, err
	}
	return &v1Group{name: g.name + "/" + name, cg: cg}, nil
}

func (g *v1Group) Start(cmd *exec.Cmd) error { return gate(cmd, g.Place) }

func (g *v1Group) Place(pid int) error {
	id := []byte(strconv.Itoa(pid))
	for _, sub := range v1Subsystems {
		if err := os.WriteFile(filepath.Join(g.dir(sub), "cgroup.procs"), id, 0); err != nil {
			return fmt.Errorf("cgroup v1 %s: %w", sub, err)
		}
	}
	return nil
}

func (g *v1Group) dir(sub string) string { return filepath.Join(v1Mount, sub, g.name) }

func (g *v1Group) Procs() ([]int, error) { return walkPids(g.dir("memory")) }

// OOMKills sums the kills here and in the groups below: v1 counts a kill
// where the killed process was, not where the limit was hit.
func (g *v1Group) OOMKills() uint64 {
	return sumBelow(g.dir("memory"), "memory.oom_control", "oom_kill")
}

// Kill freezes the group so nothing forks while it is emptied, kills
// every process, and thaws it so the kills are delivered.
func (g *v1Group) Kill() error {
	// Thawed whatever Freeze says: a freeze that gives up (a process stuck
	// in the kernel) can leave the group frozen, and a frozen group never
	// dies.
	_ = g.cg.Freeze()
	pids, _ := g.Procs()
	for _, p := range pids {
		_ = killPid(p)
	}
	_ = g.cg.Thaw()
	return killProcs(g.Procs)
}

func (g *v1Group) Delete() error {
	var errs []error
	for _, sub := range v1Subsystems {
		errs = append(errs, removeTree(g.dir(sub)))
	}
	return errors.Join(errs...)
}
