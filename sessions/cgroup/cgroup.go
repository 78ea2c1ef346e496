package cgroup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/cgroups/v3"
	"golang.org/x/sys/unix"
)

// Limits of one session.
type Limits struct {
	MemoryBytes int64
	Pids        int64
}

// Group is one control group.
type Group interface {
	// Name is the group's path below the cgroup root.
	Name() string
	// Child makes a leaf group inside this one (a turn, a job).
	Child(name string) (Group, error)
	// Start starts cmd inside the group.
	Start(cmd *exec.Cmd) error
	// Place moves a started process into the group: one that runs
	// nothing of its own until it is placed (a worker's init waiting for
	// its orders), so nothing it starts is born outside.
	Place(pid int) error
	// Procs lists every process in the group and below.
	Procs() ([]int, error)
	// OOMKills counts processes the kernel killed for memory here.
	OOMKills() uint64
	// Kill kills every process in the group and below, and waits (up to
	// a second) until the group is empty.
	Kill() error
	// Delete removes the group; it must be empty.
	Delete() error
}

// Manager makes session groups under one root ("lowkey").
type Manager struct {
	root   string
	mode   string // "v1", "v2" or "none"
	reason string
}

// Detect finds which cgroup version the machine runs and whether this
// process may make groups there.
func Detect(root string) *Manager {
	m := &Manager{root: root}
	switch cgroups.Mode() {
	case cgroups.Unified:
		m.mode = "v2"
		if err := probeWrite(filepath.Join(v2Mount, root)); err != nil {
			m.mode, m.reason = "none", "cgroup v2: cannot create groups ("+err.Error()+"): run the hub as root, or from the lowkey package's unit (lowkey.service)"
		} else if err := enableV2Controllers(filepath.Join(v2Mount, root)); err != nil {
			m.mode, m.reason = "none", "cgroup v2: "+err.Error()
		}
	case cgroups.Legacy, cgroups.Hybrid:
		m.mode = "v1"
		for _, sub := range v1Subsystems {
			if _, err := os.Stat(filepath.Join(v1Mount, sub)); err != nil {
				m.mode, m.reason = "none", "cgroup v1 without the "+sub+" controller"
				break
			}
			if err := probeWrite(filepath.Join(v1Mount, sub, root)); err != nil {
				m.mode, m.reason = "none", "cgroup v1: cannot create groups ("+err.Error()+"): run the hub as root"
				break
			}
		}
	default:
		m.mode, m.reason = "none", "this system has no cgroups"
	}
	return m
}

// Mode is "v1", "v2" or "none".
func (m *Manager) Mode() string { return m.mode }

// Dirs are the directories the sessions' groups live under (none without
// budgets).
func (m *Manager) Dirs() []string {
	switch m.mode {
	case "v1":
		var out []string
		for _, sub := range v1Subsystems {
			out = append(out, filepath.Join(v1Mount, sub, m.root))
		}
		return out
	case "v2":
		return []string{filepath.Join(v2Mount, m.root)}
	}
	return nil
}

// Unavailable says why there are no budgets ("" when there are).
func (m *Manager) Unavailable() string { return m.reason }

// NewSession makes (or re-makes) the group of one session.
func (m *Manager) NewSession(id string, l Limits) (Group, error) {
	name := m.root + "/" + id
	switch m.mode {
	case "v1":
		return newV1(name, l)
	case "v2":
		return newV2(name, l)
	}
	return &noGroup{name: name}, nil
}

// Sweep kills every process left in a session's group (by a box that
// died) and removes the group. It says how many processes it stopped.
func (m *Manager) Sweep(id string) (int, error) {
	name := m.root + "/" + id
	switch m.mode {
	case "v1":
		return sweepV1(name)
	case "v2":
		return sweepV2(name)
	}
	return 0, nil
}

// sweep empties a group and removes it.
func sweep(g Group) (int, error) {
	procs, _ := g.Procs()
	if err := g.Kill(); err != nil {
		return len(procs), err
	}
	return len(procs), g.Delete()
}

// probes numbers this process's probes: two boxes in one process (tests)
// may probe at once.
var probes atomic.Int64

func probeWrite(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	probe := filepath.Join(dir, fmt.Sprintf("probe-%d-%d", os.Getpid(), probes.Add(1)))
	if err := os.Mkdir(probe, 0o755); err != nil {
		return err
	}
	return os.Remove(probe)
}

// gate starts cmd so that it runs nothing of its own before place has
// put it in its group: v1 has no clone-into-cgroup. The child asks to be
// traced and so stops right after its exec; it is placed, then let go.
// Where tracing is not allowed (a seccomp profile that forbids ptrace),
// a shell waits on a pipe instead, which costs one more exec.
func gate(cmd *exec.Cmd, place func(pid int) error) error {
	if !canTrace() {
		return shellGate(cmd, place)
	}
	return traceGate(cmd, place)
}

var (
	traceOnce sync.Once
	traceOK   bool
)

// canTrace tries the trace gate once on /bin/true: a failed Start cannot
// be retried on the same command, so the choice is made ahead.
func canTrace() bool {
	traceOnce.Do(func() {
		cmd := exec.Command("/bin/true")
		traceOK = traceGate(cmd, func(int) error { return nil }) == nil && cmd.Wait() == nil
	})
	return traceOK
}

func traceGate(cmd *exec.Cmd, place func(pid int) error) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Ptrace = true
	// The tracer is the thread that forked: the detach must come from it.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := cmd.Start(); err != nil {
		return err
	}
	pid := cmd.Process.Pid
	var ws syscall.WaitStatus
	for {
		_, err := syscall.Wait4(pid, &ws, syscall.WALL, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return fmt.Errorf("start gate: %w", err)
		}
		break
	}
	if !ws.Stopped() {
		// Gone before it ran (reaped here): Wait only releases the pipes.
		_ = cmd.Wait()
		return fmt.Errorf("the process ended before it started (%v)", ws)
	}
	// Should the box die right here, the process dies too rather than run
	// outside its group.
	_ = syscall.PtraceSetOptions(pid, unix.PTRACE_O_EXITKILL)
	if err := place(pid); err != nil {
		_ = cmd.Process.Kill()
		_ = syscall.PtraceDetach(pid)
		_ = cmd.Wait()
		return err
	}
	if err := syscall.PtraceDetach(pid); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return fmt.Errorf("start gate: %w", err)
	}
	return nil
}

// shellGate starts cmd stopped on a pipe read: a shell waits for one
// line, closes the pipe and execs the real command.
func shellGate(cmd *exec.Cmd, place func(pid int) error) error {
	if cmd.Err != nil {
		return cmd.Err
	}
	// The shell would find out only after the start: ask first.
	if err := syscall.Access(cmd.Path, 1); err != nil {
		return &os.PathError{Op: "exec", Path: cmd.Path, Err: err}
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	fd := 3 + len(cmd.ExtraFiles)
	cmd.ExtraFiles = append(cmd.ExtraFiles, r)
	script := fmt.Sprintf(`read -r _ <&%[1]d; exec %[1]d<&-; exec "$@"`, fd)
	cmd.Args = append([]string{"/bin/sh", "-c", script, "lowkey-worker", cmd.Path}, cmd.Args[1:]...)
	cmd.Path = "/bin/sh"
	if err := cmd.Start(); err != nil {
		w.Close()
		return err
	}
	if err := place(cmd.Process.Pid); err != nil {
		w.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return err
	}
	_, err = w.Write([]byte("go\n"))
	w.Close()
	return err
}

// killProcs kills the listed processes until the list comes back empty.
func killProcs(list func() ([]int, error)) error {
	deadline := time.Now().Add(time.Second)
	for {
		pids, err := list()
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d processes still in the group after a second", len(pids))
		}
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func readPids(file string) ([]int, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		// A group removed while it is read (a job that just ended) is
		// empty, not an error.
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENODEV) {
			return nil, nil
		}
		return nil, err
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if p, err := strconv.Atoi(f); err == nil {
			out = append(out, p)
		}
	}
	return out, nil
}

// walkPids reads cgroup.procs of dir and every group below it.
func walkPids(dir string) ([]int, error) {
	var out []int
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENODEV) {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		pids, err := readPids(filepath.Join(path, "cgroup.procs"))
		out = append(out, pids...)
		return err
	})
	return out, err
}

// counter reads "key N" from a flat-keyed cgroup file.
func counter(file, key string) uint64 {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// removeTree removes a group and its children, deepest first.
func removeTree(dir string) error {
	var dirs []string
	_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, path)
		}
		return nil
	})
	var first error
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Remove(dirs[i]); err != nil && !errors.Is(err, os.ErrNotExist) && first == nil {
			first = err
		}
	}
	return first
}

// noGroup runs processes without a budget, in their own process group so
// they can still be stopped together. A group holds what was started in
// it and in the groups below it, as a real group does.
type noGroup struct {
	name   string
	parent *noGroup
	mu     sync.Mutex
	pids   []int
}

func (g *noGroup) Name() string { return g.name }
func (g *noGroup) Child(name string) (Group, error) {
	return &noGroup{name: g.name + "/" + name, parent: g}, nil
}
func (g *noGroup) OOMKills() uint64 { return 0 }
func (g *noGroup) Delete() error    { return nil }
func (g *noGroup) Start(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	// Its own process group (a new session is one too), so the group can
	// be signalled as a whole.
	cmd.SysProcAttr.Setpgid = !cmd.SysProcAttr.Setsid
	if err := cmd.Start(); err != nil {
		return err
	}
	return g.Place(cmd.Process.Pid)
}

// live lists the process groups still running, forgetting the others.
func (g *noGroup) live() []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	alive := g.pids[:0]
	for _, p := range g.pids {
		if syscall.Kill(-p, 0) == nil {
			alive = append(alive, p)
		}
	}
	g.pids = alive
	return append([]int(nil), alive...)
}

// Place notes a process that leads a process group of its own (the
// workers' inits start in sessions of their own).
func (g *noGroup) Place(pid int) error {
	for up := g; up != nil; up = up.parent {
		up.mu.Lock()
		up.pids = append(up.pids, pid)
		up.mu.Unlock()
	}
	return nil
}

func (g *noGroup) Procs() ([]int, error) { return g.live(), nil }
func (g *noGroup) Kill() error {
	for _, p := range g.live() {
		_ = syscall.Kill(-p, syscall.SIGKILL)
	}
	return nil
}

// sumBelow adds up a counter over a group and every group below it.
func sumBelow(dir, file, key string) uint64 {
	var n uint64
	_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			n += counter(filepath.Join(path, file), key)
		}
		return nil
	})
	return n
}
