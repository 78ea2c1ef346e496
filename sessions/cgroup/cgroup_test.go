package cgroup_test

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/cgroups/v3"

	"github.com/lowkeyhq/lowkey/internal/testenv"
	"github.com/lowkeyhq/lowkey/sessions/cgroup"
)

// The test binary doubles as the workers the tests run.
func TestMain(m *testing.M) {
	switch os.Getenv("LOWKEY_CGROUP_TEST_HELPER") {
	case "hog":
		var keep [][]byte
		for {
			b := make([]byte, 8<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			keep = append(keep, b)
		}
	case "sleep":
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	code := m.Run()
	// The tests' root group, everywhere it may have been made.
	for _, sub := range []string{"memory", "pids", "freezer", "unified", ""} {
		_ = os.Remove(filepath.Join("/sys/fs/cgroup", sub, testRoot))
	}
	os.Exit(code)
}

var testRoot = "lowkey-test-" + strconv.Itoa(os.Getpid())

func helper(kind string) *exec.Cmd {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "LOWKEY_CGROUP_TEST_HELPER="+kind)
	return cmd
}

func manager(t *testing.T) *cgroup.Manager {
	t.Helper()
	m := cgroup.Detect(testRoot)
	if m.Mode() == "none" {
		testenv.Missing(t, "cgroups ("+m.Unavailable()+")")
	}
	return m
}

func session(t *testing.T, m *cgroup.Manager, name string, l cgroup.Limits) cgroup.Group {
	t.Helper()
	g, err := m.NewSession(name, l)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Kill(); _ = g.Delete() })
	return g
}

func TestRunawayFailsAloneAtItsBudget(t *testing.T) {
	m := manager(t)
	small := session(t, m, "small", cgroup.Limits{MemoryBytes: 64 << 20, Pids: 64})
	other := session(t, m, "other", cgroup.Limits{MemoryBytes: 256 << 20, Pids: 64})
	turn, err := small.Child("turn")
	if err != nil {
		t.Fatal(err)
	}
	hog := helper("hog")
	if err := turn.Start(hog); err != nil {
		t.Fatal(err)
	}
	calm := exec.Command("/bin/sh", "-c", "sleep 0.3; echo fine")
	calmOut := &strings.Builder{}
	calm.Stdout = calmOut
	if err := other.Start(calm); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- hog.Wait() }()
	select {
	case err := <-done:
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("the runaway ended with %v, want killed", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the runaway was not stopped by its budget")
	}
	if small.OOMKills() == 0 {
		t.Fatal("the kernel's OOM kill is not counted in the session")
	}
	if err := calm.Wait(); err != nil || calmOut.String() != "fine\n" {
		t.Fatalf("the other session: %v %q", err, calmOut.String())
	}
	if other.OOMKills() != 0 {
		t.Fatal("the other session saw an OOM kill")
	}
}

func TestForkBombStopsAtThePidsLimit(t *testing.T) {
	m := manager(t)
	g := session(t, m, "bomb", cgroup.Limits{MemoryBytes: 256 << 20, Pids: 20})
	// Starts sleepers until fork fails, then reports how many it got.
	bomb := exec.Command("/bin/sh", "-c", `n=0; while [ $n -lt 200 ]; do sleep 30 >/dev/null 2>&1 & [ $? -eq 0 ] || break; n=$((n+1)); done 2>/dev/null; echo $n`)
	out := &strings.Builder{}
	bomb.Stdout = out
	if err := g.Start(bomb); err != nil {
		t.Fatal(err)
	}
	_ = bomb.Wait()
	procs, _ := g.Procs()
	if len(procs) == 0 || len(procs) > 20 {
		t.Fatalf("%d processes under a limit of 20", len(procs))
	}
	if n, _ := strconv.Atoi(strings.TrimSpace(out.String())); n >= 200 {
		t.Fatalf("the bomb started %d sleepers", n)
	}
	start := time.Now()
	if err := g.Kill(); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed %d processes in %s", len(procs), time.Since(start))
}

func TestKillTakesSetsidGrandchildrenAndSparesTheRest(t *testing.T) {
	testKill(t, manager(t), cgroup.Limits{MemoryBytes: 256 << 20, Pids: 100})
}

func testKill(t *testing.T, m *cgroup.Manager, l cgroup.Limits) {
	s := session(t, m, "kill", l)
	job, err := s.Child("job-1")
	if err != nil {
		t.Fatal(err)
	}
	turn, err := s.Child("turn")
	if err != nil {
		t.Fatal(err)
	}
	// The job leaves a grandchild in its own session, as daemons do.
	runner := exec.Command("/bin/sh", "-c", `setsid sleep 100 </dev/null >/dev/null 2>&1 & echo $!; wait`)
	pidOut, _ := runner.StdoutPipe()
	if err := job.Start(runner); err != nil {
		t.Fatal(err)
	}
	keeper := helper("sleep")
	if err := turn.Start(keeper); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(pidOut).ReadString('\n')
	grandchild, _ := strconv.Atoi(strings.TrimSpace(line))
	if grandchild == 0 {
		t.Fatal("no grandchild")
	}
	if err := job.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = runner.Wait()
	if syscall.Kill(grandchild, 0) == nil {
		if st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", grandchild)); !strings.Contains(string(st), ") Z") {
			t.Fatalf("the setsid grandchild %d survived the job's stop", grandchild)
		}
	}
	if procs, _ := job.Procs(); len(procs) != 0 {
		t.Fatalf("job still has %v", procs)
	}
	// The turn is untouched.
	if syscall.Kill(keeper.Process.Pid, 0) != nil {
		t.Fatal("stopping a job stopped the turn")
	}
	// Killing the session takes the rest.
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = keeper.Wait()
	if procs, _ := s.Procs(); len(procs) != 0 {
		t.Fatalf("session still has %v", procs)
	}
}

// A group someone left frozen is still emptied by Kill, and left thawed.
func TestKillThawsAFrozenGroup(t *testing.T) {
	m := manager(t)
	if m.Mode() != "v1" {
		t.Skip("the freezer file checked here is cgroup v1's")
	}
	g := session(t, m, "frozen", cgroup.Limits{MemoryBytes: 64 << 20, Pids: 16})
	p := helper("sleep")
	if err := g.Start(p); err != nil {
		t.Fatal(err)
	}
	state := "/sys/fs/cgroup/freezer/" + g.Name() + "/freezer.state"
	if err := os.WriteFile(state, []byte("FROZEN"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := g.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = p.Wait()
	if b, _ := os.ReadFile(state); strings.TrimSpace(string(b)) != "THAWED" {
		t.Fatalf("the group is left %s", b)
	}
}

// A process starts inside its group, with its arguments intact and not
// left traced (a debugger in the session still works), through either
// gate; a command that cannot start leaves nothing behind.
func TestStartsInsideItsGroup(t *testing.T) {
	m := manager(t)
	for _, gate := range []string{"trace", "shell"} {
		t.Run(gate, func(t *testing.T) {
			if gate == "shell" {
				cgroup.UseShellGate(t)
			}
			g := session(t, m, "start-"+gate, cgroup.Limits{MemoryBytes: 64 << 20, Pids: 16})
			cmd := exec.Command("/bin/sh", "-c", `grep TracerPid /proc/self/status; cat /proc/self/cgroup; printf '%s|' "$@"`, "sh", "a b", "$HOME", "'q'")
			out := &strings.Builder{}
			cmd.Stdout = out
			if err := g.Start(cmd); err != nil {
				t.Fatal(err)
			}
			if err := cmd.Wait(); err != nil {
				t.Fatal(err)
			}
			got := out.String()
			if !strings.Contains(got, "TracerPid:\t0\n") {
				t.Errorf("the process is still traced:\n%s", got)
			}
			if !strings.Contains(got, g.Name()+"\n") {
				t.Errorf("the process is not in %s:\n%s", g.Name(), got)
			}
			if !strings.HasSuffix(got, "a b|$HOME|'q'|") {
				t.Errorf("arguments changed on the way: %q", got)
			}
			missing := exec.Command("/nonexistent/worker")
			if err := g.Start(missing); err == nil {
				t.Fatal("a missing program started")
			}
			if procs, _ := g.Procs(); len(procs) != 0 {
				t.Fatalf("%d processes left by a start that failed", len(procs))
			}
		})
	}
}

// On a hybrid machine (memory on v1, an unified tree beside it) the v2
// way of starting, listing, killing and removing groups is exercised on
// the unified tree; its memory and pids limits need a pure v2 machine,
// where the tests above run on v2.
func TestV2GroupsOnTheUnifiedTree(t *testing.T) {
	if cgroups.Mode() != cgroups.Hybrid {
		// Not a lack: on a pure v2 machine the tests above run on v2.
		t.Skip("not a hybrid cgroup machine: the other tests cover this system's cgroups")
	}
	unified := "/sys/fs/cgroup/unified"
	if err := os.MkdirAll(filepath.Join(unified, testRoot), 0o755); err != nil {
		testenv.Missing(t, "a writable unified cgroup tree ("+err.Error()+")")
	}
	m := cgroup.V2At(t, unified, testRoot)
	t.Run("start", func(t *testing.T) {
		g := session(t, m, "start", cgroup.Limits{})
		out, err := startOutput(g, `cat /proc/self/cgroup`)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "0::/"+g.Name()+"\n") {
			t.Fatalf("the process was not born in %s:\n%s", g.Name(), out)
		}
	})
	t.Run("kill", func(t *testing.T) { testKill(t, m, cgroup.Limits{}) })
	t.Run("left over", func(t *testing.T) { testLeftOver(t, m, cgroup.Limits{}) })
}

// A session group left by a hub that died (its processes still running)
// is emptied when the session is made again.
func TestLeftOverGroupIsEmptied(t *testing.T) {
	testLeftOver(t, manager(t), cgroup.Limits{MemoryBytes: 64 << 20, Pids: 16})
}

func testLeftOver(t *testing.T, m *cgroup.Manager, l cgroup.Limits) {
	g, err := m.NewSession("left", l)
	if err != nil {
		t.Fatal(err)
	}
	orphan := helper("sleep")
	if err := g.Start(orphan); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- orphan.Wait() }()
	again := session(t, m, "left", l)
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("the left-over process survived the session being made again")
	}
	if procs, _ := again.Procs(); len(procs) != 0 {
		t.Fatalf("the new group holds %v", procs)
	}
}

func startOutput(g cgroup.Group, script string) (string, error) {
	cmd := exec.Command("/bin/sh", "-c", script)
	out := &strings.Builder{}
	cmd.Stdout = out
	if err := g.Start(cmd); err != nil {
		return "", err
	}
	err := cmd.Wait()
	return out.String(), err
}
