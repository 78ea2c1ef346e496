package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alecthomas/kong"

	"github.com/lowkeyhq/lowkey/internal/cli"
)

type result struct {
	code     int
	out, err string
}

func lc(t *testing.T, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, cli.IO{In: strings.NewReader(""), Out: &out, Err: &errOut})
	return result{code, out.String(), errOut.String()}
}

// Every command answers --help and "help CMD" with its usage and the exit
// codes, exit 0.
func TestEveryCommandHasHelp(t *testing.T) {
	parser, err := kong.New(&companionCLI{}, kong.Vars{"state": "s", "host": "h"})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range parser.Model.Node.Children {
		n++
		r := lc(t, c.Name, "--help")
		if r.code != 0 || !strings.HasPrefix(r.out, "Usage: lowkey-companion "+c.Name) || !strings.Contains(r.out, "Exit codes: 0 done") {
			t.Errorf("%s --help: exit %d\n%s%s", c.Name, r.code, r.out, r.err)
		}
		if h := lc(t, "help", c.Name); h.code != 0 || h.out != r.out {
			t.Errorf("help %s differs from --help:\n%s%s", c.Name, h.out, h.err)
		}
	}
	if n < 9 {
		t.Errorf("only %d commands", n)
	}
}

// Wrong command lines: the reason and the usage on stderr, exit 2.
func TestWrongCommandLinesAreRefusedWithUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		says string
	}{
		{nil, "Usage: lowkey-companion <command>"},
		{[]string{"nosuch"}, "unexpected argument nosuch"},
		{[]string{"status", "extra"}, "unexpected argument extra"},
		{[]string{"pause", "now"}, "unexpected argument now"},
		{[]string{"run", "--headles"}, "unknown flag --headles"},
		{[]string{"pair", "box.local"}, "unexpected argument box.local"},
		{[]string{"pair", "--hub", "http://[::1", "--code", "1234-5678", "--state", t.TempDir()}, "Usage: lowkey-companion pair"},
		{[]string{"completion"}, `expected "<shell>"`},
		{[]string{"consent", "maybe"}, `the rule is ask or trust, not "maybe"`},
		{[]string{"consent", "--desktop", "--state", t.TempDir()}, "--browser and --desktop go with a rule"},
		{[]string{"approve", "a", "b"}, "unexpected argument b"},
		{[]string{"deny", "--hour"}, "unknown flag --hour"},
		{[]string{"run", "--ask-wait", "2h", "--state", t.TempDir()}, "--ask-wait must be between 0 and 1h"},
	} {
		r := lc(t, tc.args...)
		if r.code != cli.ExitUsage || !strings.Contains(r.err, tc.says) || !strings.Contains(r.err, "Usage: lowkey-companion") {
			t.Errorf("lowkey-companion %s: exit %d, want 2 saying %q\n%s%s", strings.Join(tc.args, " "), r.code, tc.says, r.out, r.err)
		}
	}
}

// The consent rules are the person's, kept in the state directory: the
// defaults ask before desktop access and trust the box for the browser;
// approve and deny need a running companion and say so.
func TestConsentCommands(t *testing.T) {
	dir := t.TempDir()
	if r := lc(t, "consent", "--state", dir); r.code != 0 || !strings.Contains(r.out, "browser access: trust") || !strings.Contains(r.out, "desktop access: ask") {
		t.Fatalf("the defaults: %d %s%s", r.code, r.out, r.err)
	}
	if r := lc(t, "consent", "ask", "--browser", "--state", dir); r.code != 0 || !strings.Contains(r.out, "browser access: ask") || !strings.Contains(r.out, "desktop access: ask") {
		t.Fatalf("ask --browser: %d %s%s", r.code, r.out, r.err)
	}
	if r := lc(t, "consent", "trust", "--state", dir); r.code != 0 || !strings.Contains(r.out, "browser access: trust") || !strings.Contains(r.out, "desktop access: trust") {
		t.Fatalf("trust: %d %s%s", r.code, r.out, r.err)
	}
	for _, cmd := range []string{"approve", "deny"} {
		if r := lc(t, cmd, "--state", dir); r.code != 1 || !strings.Contains(r.err, "no companion is running here") {
			t.Errorf("%s with nothing running: %d %s", cmd, r.code, r.err)
		}
	}
}

// --state goes before or after the command, else $LOWKEY_COMPANION_STATE:
// pause writes its mark where it was told.
func TestStateFlagAnywhereAndFromTheEnvironment(t *testing.T) {
	for _, args := range [][]string{
		{"pause", "--state", "DIR"},
		{"--state", "DIR", "pause"},
		{"--state=DIR", "pause"},
	} {
		dir := t.TempDir()
		for i := range args {
			args[i] = strings.ReplaceAll(args[i], "DIR", dir)
		}
		if r := lc(t, args...); r.code != 0 || !strings.Contains(r.out, "Paused") {
			t.Fatalf("%v: exit %d\n%s", args, r.code, r.err)
		}
		if _, err := os.Stat(filepath.Join(dir, "paused")); err != nil {
			t.Errorf("%v left no mark in %s: %v", args, dir, err)
		}
	}
	dir := t.TempDir()
	t.Setenv("LOWKEY_COMPANION_STATE", dir)
	if r := lc(t, "pause"); r.code != 0 {
		t.Fatalf("pause: %+v", r)
	}
	if _, err := os.Stat(filepath.Join(dir, "paused")); err != nil {
		t.Errorf("LOWKEY_COMPANION_STATE was not used: %v", err)
	}
	if r := lc(t, "resume"); r.code != 0 {
		t.Fatalf("resume: %+v", r)
	}
	if _, err := os.Stat(filepath.Join(dir, "paused")); !os.IsNotExist(err) {
		t.Errorf("resume left the mark: %v", err)
	}
	// Not paired: a failure that says what to do, exit 1.
	if r := lc(t, "status"); r.code != cli.ExitFailed || !strings.Contains(r.err, "lowkey-companion pair") {
		t.Errorf("status before pairing: %+v", r)
	}
}

// install-service: --print shows the unit and where it goes; installing
// before pairing says to pair first.
func TestInstallServiceCommand(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	state := filepath.Join(t.TempDir(), "state")
	r := lc(t, "install-service", "--print", "--state", state)
	if r.code != 0 || !strings.Contains(r.out, "systemd/user/lowkey-companion.service") || !strings.Contains(r.out, "run --state "+state) {
		t.Fatalf("install-service --print: exit %d\n%s%s", r.code, r.out, r.err)
	}
	r = lc(t, "install-service", "--state", state)
	if r.code != 1 || !strings.Contains(r.err, "not paired yet") {
		t.Fatalf("install-service before pairing: exit %d\n%s%s", r.code, r.out, r.err)
	}
	if r := lc(t, "install-service", "--for-package"); r.code != 0 || !strings.Contains(r.out, "ExecStart=/usr/bin/lowkey-companion run\n") {
		t.Fatalf("the package's unit: exit %d\n%s%s", r.code, r.out, r.err)
	}
}
