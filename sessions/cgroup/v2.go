package cgroup

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/containerd/cgroups/v3/cgroup2"
)

// v2Mount is where the unified hierarchy is (a variable for the tests,
// which use a hybrid machine's unified tree).
var v2Mount = "/sys/fs/cgroup"

type v2Group struct {
	name string
	m    *cgroup2.Manager
}

// enableV2Controllers lets the root's children use memory and pids.
func enableV2Controllers(dir string) error {
	for _, d := range []string{filepath.Dir(dir), dir} {
		b, err := os.ReadFile(filepath.Join(d, "cgroup.subtree_control"))
		if err != nil {
			return err
		}
		for _, c := range []string{"memory", "pids"} {
			if !strings.Contains(string(b), c) {
				if err := os.WriteFile(filepath.Join(d, "cgroup.subtree_control"), []byte("+"+c), 0o644); err != nil {
					return fmt.Errorf("cannot enable the %s controller in %s: %w", c, d, err)
				}
			}
		}
	}
	return nil
}

func newV2(name string, l Limits) (Group, error) {
	res := &cgroup2.Resources{}
	if l.MemoryBytes > 0 {
		zero := int64(0) // v2 counts swap apart: none, so no escape
		res.Memory = &cgroup2.Memory{Max: &l.MemoryBytes, Swap: &zero}
	}
	if l.Pids > 0 {
		res.Pids = &cgroup2.Pids{Max: l.Pids}
	}
	// A group left by a hub that died is emptied and made anew.
	_, _ = sweepV2(name)
	m, err := cgroup2.NewManager(v2Mount, "/"+name, res)
	if err != nil {
		return nil, err
	}
	// Children (turn, jobs) need the controllers too.
	_ = os.WriteFile(filepath.Join(v2Mount, name, "cgroup.subtree_control"), []byte("+memory +pids"), 0o644)
	return &v2Group{name: name, m: m}, nil
}

// sweepV2 empties and removes a group left from before, if there is one.
func sweepV2(name string) (int, error) {
	if _, err := os.Stat(filepath.Join(v2Mount, name)); err != nil {
		return 0, nil
	}
	return sweep(&v2Group{name: name})
}

func (g *v2Group) Name() string { return g.name }

func (g *v2Group) Child(name string) (Group, error) {
	m, err := g.m.NewChild(name, &cgroup2.Resources{})
	if err != nil {
		return nil, err
	}
	return &v2Group{name: g.name + "/" + name, m: m}, nil
}

// Start uses clone-into-cgroup: the child is born in the group.
func (g *v2Group) Start(cmd *exec.Cmd) error {
	f, err := os.Open(filepath.Join(v2Mount, g.name))
	if err != nil {
		return err
	}
	defer f.Close()
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.UseCgroupFD = true
	cmd.SysProcAttr.CgroupFD = int(f.Fd())
	return cmd.Start()
}

func (g *v2Group) Place(pid int) error {
	if err := os.WriteFile(filepath.Join(v2Mount, g.name, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
		return fmt.Errorf("cgroup v2: %w", err)
	}
	return nil
}

func (g *v2Group) Procs() ([]int, error) { return walkPids(filepath.Join(v2Mount, g.name)) }

func (g *v2Group) OOMKills() uint64 {
	return counter(filepath.Join(v2Mount, g.name, "memory.events"), "oom_kill")
}

func (g *v2Group) Kill() error {
	if err := os.WriteFile(filepath.Join(v2Mount, g.name, "cgroup.kill"), []byte("1"), 0o644); err != nil {
		// Kernels before 5.14 have no cgroup.kill. Thawed whatever Freeze
		// says, as on v1.
		if g.m != nil {
			_ = g.m.Freeze()
			defer g.m.Thaw()
		}
		pids, _ := g.Procs()
		for _, p := range pids {
			_ = killPid(p)
		}
	}
	return killProcs(g.Procs)
}

func (g *v2Group) Delete() error {
	err := removeTree(filepath.Join(v2Mount, g.name))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

func killPid(p int) error { return syscall.Kill(p, syscall.SIGKILL) }
