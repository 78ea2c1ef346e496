package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lowkey-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Agents run the built programs as their own account: the directory
	// is theirs to read.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	build := exec.Command("go", "build", "-o", dir+string(os.PathSeparator), "github.com/lowkeyhq/lowkey/cmd/...", "github.com/lowkeyhq/lowkey/e2e/attacker")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the binaries:", err)
		os.Exit(1)
	}
	bin = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuffer collects a process's output while tests read it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a long-running binary (the hub, "lowkey-companion run").
type proc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

// command builds the command line for a binary, inside a network
// namespace when ns is set.
func command(ns, name string, args ...string) *exec.Cmd {
	path := filepath.Join(bin, name)
	if ns != "" {
		return exec.Command("ip", append([]string{"netns", "exec", ns, path}, args...)...)
	}
	return exec.Command(path, args...)
}

func start(t *testing.T, ns, name string, args ...string) *proc {
	t.Helper()
	return startCmd(t, name, command(ns, name, args...))
}

// startCmd starts a command built by command and changed by the caller.
func startCmd(t *testing.T, name string, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{t: t, name: name, cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.out)
		}
	})
	return p
}

// waitFor waits until the output matches re and returns the first group.
func (p *proc) waitFor(re string, limit time.Duration) string {
	p.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(limit)
	for {
		if m := rx.FindStringSubmatch(p.out.String()); m != nil {
			if len(m) > 1 {
				return m[1]
			}
			return m[0]
		}
		select {
		case <-p.done:
			p.t.Fatalf("%s exited (%v) before printing %q:\n%s", p.name, p.err, re, p.out)
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s did not print %q within %s:\n%s", p.name, re, limit, p.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *proc) exited(limit time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(limit):
		return false
	}
}

func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop ends it as a person would (Ctrl-C), then for good.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	if !p.exited(5 * time.Second) {
		p.kill()
	}
}

// run runs a short command and returns its output and exit code.
func run(t *testing.T, ns, name string, args ...string) (string, int) {
	t.Helper()
	return runWithin(t, time.Minute, ns, name, args...)
}

// runWithin is run with its own time limit (benchmarks on a busy machine).
func runWithin(t *testing.T, limit time.Duration, ns, name string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := command(ns, name, args...)
	cmd = exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	default:
		t.Fatalf("%s %v: %v", name, args, err)
		return "", -1
	}
}

func mustRun(t *testing.T, ns, name string, args ...string) string {
	t.Helper()
	out, code := run(t, ns, name, args...)
	if code != 0 {
		t.Fatalf("%s %s: exit %d\n%s", name, strings.Join(args, " "), code, out)
	}
	return out
}

// box is a running "lowkey hub".
type box struct {
	*proc
	data string
	// backups is where it keeps timed backups, when outside data.
	backups string
	addr    string
	ns      string
}

func startBox(t *testing.T, ns, data, listen string, extra ...string) *box {
	t.Helper()
	args := append([]string{"hub", "--data", data, "--listen", listen}, extra...)
	// Many boxes run at once in tests: no fixed pages port unless asked.
	if !strings.Contains(strings.Join(extra, " "), "--pages-listen") {
		args = append(args, "--pages-listen=")
	}
	p := start(t, ns, "lowkey", args...)
	url := p.waitFor(`Lowkey hub is ready: https?://(\S+)`, 20*time.Second)
	return &box{proc: p, data: data, addr: url, ns: ns}
}

func (b *box) pairCode(t *testing.T, extra ...string) string {
	t.Helper()
	out := mustRun(t, "", "lowkey", append([]string{"pair-code", "--data", b.data}, extra...)...)
	m := regexp.MustCompile(`Pairing code: (\d{4}-\d{4})`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no code in %q", out)
	}
	return m[1]
}

// device is one row of "lowkey devices".
type device struct {
	ID, Name, Online, RTT string
}

func (b *box) devices(t *testing.T) []device {
	t.Helper()
	out := mustRun(t, "", "lowkey", "devices", "--data", b.data)
	var ds []device
	for _, line := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 4 || (f[2] != "yes" && f[2] != "no") {
			continue // a capability note, not a device row
		}
		d := device{ID: f[0], Name: f[1], Online: f[2], RTT: f[3]}
		if d.RTT != "-" && len(f) > 4 {
			d.RTT += " " + f[4]
		}
		ds = append(ds, d)
	}
	return ds
}

// waitOnline polls "lowkey devices" until the device shows online with a
// round-trip time, and returns how long that took.
func (b *box) waitOnline(t *testing.T, id string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		for _, d := range b.devices(t) {
			if d.ID == id && d.Online == "yes" && d.RTT != "-" {
				return time.Since(start)
			}
		}
		if time.Since(start) > limit {
			t.Fatalf("device %s not online within %s: %+v", id, limit, b.devices(t))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
