package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/jezek/xgb"

	"github.com/lowkeyhq/lowkey/devicectl/browser"
)

// Missing skips a test whose requirement this machine lacks, except in CI,
// where it fails: CI installs everything the suite needs.
func Missing(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is missing, and CI must provide it", what)
	}
	t.Skipf("%s is missing on this machine", what)
}

// RequireBrowser needs a system Chromium.
func RequireBrowser(t testing.TB) string {
	t.Helper()
	p := browser.Find("")
	if p == "" {
		Missing(t, "Chromium")
	}
	return p
}

// Xvfb starts a virtual X display of w×h for one test and returns its
// name (":N").
func Xvfb(t testing.TB, w, h int) string {
	t.Helper()
	bin, err := exec.LookPath("Xvfb")
	if err != nil {
		Missing(t, "Xvfb")
	}
	for n := 90 + os.Getpid()%300; n < 1000; n++ {
		if _, err := os.Stat(fmt.Sprintf("/tmp/.X11-unix/X%d", n)); err == nil {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/tmp/.X%d-lock", n)); err == nil {
			continue
		}
		d := fmt.Sprintf(":%d", n)
		// -noreset: the server would otherwise reset (dropping clients)
		// each time its last client leaves.
		cmd := exec.Command(bin, d, "-screen", "0", fmt.Sprintf("%dx%dx24", w, h), "-nolisten", "tcp", "-br", "-noreset")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if c, err := xgb.NewConnDisplay(d); err == nil {
				c.Close()
				return d
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("Xvfb %s did not come up", d)
	}
	t.Fatal("no free X display number")
	return ""
}

// AgentCLIs is the directory of the agent CLIs from npm (claude), as
// .ci/run installs them: $LOWKEY_AGENT_CLIS, else
// /var/cache/lowkey/agent-clis. It returns the directory of their
// programs, which every account can read.
func AgentCLIs(t testing.TB, bin string) string {
	t.Helper()
	root := os.Getenv("LOWKEY_AGENT_CLIS")
	if root == "" {
		root = "/var/cache/lowkey/agent-clis"
	}
	dir := filepath.Join(root, "node_modules", ".bin")
	if _, err := os.Stat(filepath.Join(dir, bin)); err != nil {
		Missing(t, bin+" from npm in "+root+" (see .ci/run)")
	}
	return dir
}
