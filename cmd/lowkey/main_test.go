package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/alecthomas/kong"

	"github.com/lowkeyhq/lowkey/hub"
	"github.com/lowkeyhq/lowkey/internal/admin"
	"github.com/lowkeyhq/lowkey/internal/cli"
)

func TestMain(m *testing.M) {
	// The test binary is the program when the box runs it (a worker), when
	// a shell asks it to complete, or when a test runs it as "lowkey".
	if len(os.Args) > 1 && (os.Args[1] == "worker-init" || os.Args[1] == "agent") ||
		os.Getenv("COMP_LINE") != "" || os.Getenv("LOWKEY_TEST_AS_MAIN") == "1" {
		main()
	}
	os.Exit(m.Run())
}

type result struct {
	code     int
	out, err string
}

// lk runs the program in this process with stdin.
func lk(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, cli.IO{In: strings.NewReader(stdin), Out: &out, Err: &errOut})
	return result{code, out.String(), errOut.String()}
}

// commands lists every command path a person can type, from the grammar
// itself, so a command added later is held to the same tests.
func commands(t *testing.T) []string {
	t.Helper()
	parser, err := kong.New(&lowkey{}, kong.Vars{"data": "d", "agent_user": "a", "runtimes": "builtin,exec", "link_rounds": "1", "link_bulk_runs": "1", "link_isolated": "1", "browser_rounds": "1"})
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	var walk func(n *kong.Node, prefix string)
	walk = func(n *kong.Node, prefix string) {
		for _, c := range n.Children {
			if c.Hidden {
				continue
			}
			p := strings.TrimSpace(prefix + " " + c.Name)
			paths = append(paths, p)
			walk(c, p)
		}
	}
	walk(parser.Model.Node, "")
	if len(paths) < 20 {
		t.Fatalf("only %d commands found: %v", len(paths), paths)
	}
	return paths
}

// Every command answers --help, -h and "help CMD" with its own usage and
// the exit codes, on stdout, exit 0.
func TestEveryCommandHasHelp(t *testing.T) {
	for _, c := range commands(t) {
		words := strings.Fields(c)
		r := lk(t, "", append(words, "--help")...)
		if r.code != 0 || !strings.HasPrefix(r.out, "Usage: lowkey "+c) || !strings.Contains(r.out, "Exit codes: 0 done") {
			t.Errorf("%s --help: exit %d\n%s%s", c, r.code, r.out, r.err)
			continue
		}
		if h := lk(t, "", append(words, "-h")...); h.out != r.out {
			t.Errorf("%s -h differs from --help:\n%s", c, h.out)
		}
		if h := lk(t, "", append([]string{"help"}, words...)...); h.code != 0 || h.out != r.out {
			t.Errorf("help %s: exit %d, differs from --help:\n%s%s", c, h.code, h.out, h.err)
		}
	}
	r := lk(t, "", "help", "nosuch")
	if r.code != cli.ExitUsage || !strings.Contains(r.err, `no command "nosuch"`) {
		t.Errorf("help nosuch: exit %d\n%s", r.code, r.err)
	}
}

// Wrong command lines are refused before anything runs: the reason and the
// command's usage on stderr, exit 2.
func TestWrongCommandLinesAreRefusedWithUsage(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		says string
	}{
		{nil, "Usage: lowkey <command>"},
		{[]string{"nosuch"}, `unexpected argument nosuch`},
		{[]string{"devices", "revoke"}, `expected "<id>"`},
		{[]string{"devices", "revoke", "a", "b"}, "unexpected argument b"},
		{[]string{"devices", "extra"}, "unexpected argument extra"},
		{[]string{"secrets"}, "expected one of"},
		{[]string{"secrets", "set"}, `expected "<name>"`},
		{[]string{"secrets", "rm"}, `expected "<name>"`},
		{[]string{"secrets", "set", "X", "--for", "nobody"}, `--for must be one of "builtin","openai","exec","claude","codex","gemini","opencode","all"`},
		{[]string{"secrets", "list", "X"}, "unexpected argument X"},
		{[]string{"pair-code", "extra"}, "unexpected argument extra"},
		{[]string{"pair-code", "--ttl", "90"}, `missing unit in duration "90"`},
		{[]string{"pair-code", "--ttl", "6m"}, "at most 5m"},
		{[]string{"token", "extra"}, "unexpected argument extra"},
		{[]string{"token", "--rotat"}, "unknown flag --rotat"},
		{[]string{"backup"}, `expected "<file>"`},
		{[]string{"restore"}, `expected "<file>"`},
		{[]string{"restore", filepath.Join(dir, "missing.tar")}, "missing.tar"},
		{[]string{"demo", "extra"}, "unexpected argument extra"},
		{[]string{"bench"}, "expected one of"},
		{[]string{"bench", "link", "extra"}, "unexpected argument extra"},
		{[]string{"bench", "soak", "--for", "25h"}, "--for must be between 0 and 24h"},
		{[]string{"bench", "live", "--fps", "0"}, "more than zero"},
		{[]string{"hub", "extra"}, "unexpected argument extra"},
		{[]string{"hub", "--session-memory", "lots"}, `"lots" is not a size: use a number of bytes or units like 512MiB`},
		{[]string{"hub", "--tls-cert", "/etc/hostname", "--data", dir}, "--tls-cert and --tls-key go together"},
		{[]string{"completion", "tcsh"}, `must be one of "bash","zsh","fish"`},
		{[]string{"hub", "--agent-bin", "claud=/usr/bin/true", "--data", dir}, `there is no preset "claud"`},
		{[]string{"hub", "--agent-bin", "claude", "--data", dir}, "--agent-bin"},
		{[]string{"hub", "--ice-server", "turn:relay.example:3478", "--data", dir}, "a TURN server and its credentials go in --ice-servers FILE"},
		{[]string{"hub", "--ice-server", "stun:", "--data", dir}, "stun:HOST:PORT"},
		{[]string{"hub", "--ice-servers", filepath.Join(dir, "none.json"), "--data", dir}, "none.json"},
		{[]string{"bench", "link", "--path", "sideways"}, `--path must be one of "direct","relayed"`},
		{[]string{"hub", "--log-format", "xml", "--data", dir}, `--log-format must be one of "text","json"`},
		{[]string{"hub", "--backup-every", "30s", "--data", dir}, "--backup-every 30s: at least 1m, or 0"},
		{[]string{"hub", "--backup-keep", "0", "--data", dir}, "--backup-keep 0: keep at least 1"},
		{[]string{"doctor", "extra"}, "unexpected argument extra"},
	} {
		r := lk(t, "", tc.args...)
		if r.code != cli.ExitUsage || !strings.Contains(r.err, tc.says) || !strings.Contains(r.err, "Usage: lowkey") || r.out != "" {
			t.Errorf("lowkey %s: exit %d, want 2 saying %q with the usage\nstdout: %s\nstderr: %s", strings.Join(tc.args, " "), r.code, tc.says, r.out, r.err)
		}
	}
}

// --data is one flag for every command, before or after the command and
// its arguments, else $LOWKEY_DATA; with no hub there, exit 3 naming the
// socket it tried.
func TestDataFlagAnywhereAndFromTheEnvironment(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "hub.sock")
	for _, args := range [][]string{
		{"devices", "revoke", "d-1", "--data", dir},
		{"devices", "--data", dir, "revoke", "d-1"},
		{"--data", dir, "devices", "revoke", "d-1"},
		{"--data=" + dir, "token"},
		{"token", "--rotate", "--data", dir},
		{"secrets", "rm", "--data", dir, "X"},
		{"pair-code", "--data", dir, "--ttl", "90s"},
	} {
		r := lk(t, "", args...)
		if r.code != cli.ExitUnreachable || !strings.Contains(r.err, sock) {
			t.Errorf("lowkey %s: exit %d, want 3 naming %s\n%s%s", strings.Join(args, " "), r.code, sock, r.out, r.err)
		}
	}
	t.Setenv("LOWKEY_DATA", dir)
	if r := lk(t, "", "devices"); r.code != cli.ExitUnreachable || !strings.Contains(r.err, sock) {
		t.Errorf("LOWKEY_DATA=%s lowkey devices: exit %d\n%s", dir, r.code, r.err)
	}
	other := t.TempDir()
	if r := lk(t, "", "devices", "--data", other); !strings.Contains(r.err, filepath.Join(other, "hub.sock")) {
		t.Errorf("--data did not win over LOWKEY_DATA: %s", r.err)
	}
}

// hubProcess is "lowkey hub" run as its own process, as people run it.
type hubProcess struct {
	cmd  *exec.Cmd
	data string
	out  *bufio.Scanner
}

func startHub(t *testing.T, args ...string) *hubProcess {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(t.TempDir(), "data")
	cmd := exec.Command(self, append([]string{"hub", "--listen", "127.0.0.1:0", "--pages-listen", "", "--no-mdns", "--work-dir", filepath.Join(t.TempDir(), "work")}, args...)...)
	cmd.Env = append(os.Environ(), "LOWKEY_TEST_AS_MAIN=1", "LOWKEY_DATA="+data)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &hubProcess{cmd: cmd, data: data, out: bufio.NewScanner(stdout)}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	for h.out.Scan() {
		if strings.HasPrefix(h.out.Text(), "Lowkey hub is ready: ") {
			return h
		}
	}
	cmd.Wait()
	t.Fatalf("the hub did not start:\n%s", stderr.String())
	return nil
}

// stop ends the hub the way a service manager does; it must exit 0.
func (h *hubProcess) stop(t *testing.T) {
	t.Helper()
	if err := h.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var rest []string
	for h.out.Scan() {
		rest = append(rest, h.out.Text())
	}
	if err := h.cmd.Wait(); err != nil {
		t.Fatalf("lowkey hub after SIGTERM: %v\n%s", err, strings.Join(rest, "\n"))
	}
	if !strings.Contains(strings.Join(rest, "\n"), "stopping") {
		t.Errorf("the hub did not say it was stopping: %q", rest)
	}
}

// Every admin command against a running hub, flags in either place, sizes
// and durations in the units people write.
func TestAdminCommandsAgainstARunningHub(t *testing.T) {
	h := startHub(t, "--session-memory", "1GiB")

	// --session-memory 1GiB is every new session's budget.
	var s struct {
		ID               string `json:"id"`
		MemoryLimitBytes int64  `json:"memory_limit_bytes"`
	}
	c := admin.New(hub.SocketPath(h.data))
	if err := c.Do("POST", "/api/v1/sessions", map[string]string{}, &s); err != nil {
		t.Fatal(err)
	}
	if err := c.Do("GET", "/api/v1/sessions/"+s.ID, nil, &s); err != nil {
		t.Fatal(err)
	}
	if s.MemoryLimitBytes != 1<<30 {
		t.Errorf("a new session's budget is %d bytes, want 1 GiB from --session-memory 1GiB", s.MemoryLimitBytes)
	}

	r := lk(t, "", "pair-code", "--ttl", "90s", "--data", h.data)
	if r.code != 0 || !regexp.MustCompile(`Pairing code: \d{4}-\d{4} \(valid until`).MatchString(r.out) {
		t.Errorf("pair-code: exit %d\n%s%s", r.code, r.out, r.err)
	}

	tok := lk(t, "", "--data", h.data, "token")
	rotated := lk(t, "", "token", "--data", h.data, "--rotate")
	again := lk(t, "", "token", "--data", h.data)
	if tok.code != 0 || rotated.code != 0 || len(strings.TrimSpace(tok.out)) < 32 || rotated.out == tok.out || again.out != rotated.out {
		t.Errorf("token, token --rotate, token: %+v %+v %+v", tok, rotated, again)
	}
	if !strings.Contains(rotated.err, "the old token no longer works") {
		t.Errorf("token --rotate did not say the old one is gone: %q", rotated.err)
	}

	if r := lk(t, "sk-test-123\n", "secrets", "set", "--data", h.data, "OPENAI_API_KEY", "--for", "exec"); r.code != 0 || !strings.Contains(r.out, "stored OPENAI_API_KEY: turns of the exec runtime") {
		t.Errorf("secrets set: exit %d\n%s%s", r.code, r.out, r.err)
	}
	if r := lk(t, "", "secrets", "set", "EMPTY", "--data", h.data); r.code != cli.ExitFailed || !strings.Contains(r.err, "no value on stdin") {
		t.Errorf("secrets set with nothing on stdin: exit %d\n%s", r.code, r.err)
	}
	if r := lk(t, "", "--data", h.data, "secrets", "list"); r.code != 0 || r.out != "OPENAI_API_KEY\tfor exec\n" || strings.Contains(r.out, "sk-test") {
		t.Errorf("secrets list: exit %d %q", r.code, r.out)
	}
	if r := lk(t, "", "secrets", "rm", "OPENAI_API_KEY", "--data", h.data); r.code != 0 {
		t.Errorf("secrets rm: exit %d\n%s", r.code, r.err)
	}
	if r := lk(t, "", "secrets", "list", "--data", h.data); r.code != 0 || r.out != "" {
		t.Errorf("secrets list after rm: %q", r.out)
	}

	if r := lk(t, "", "devices", "--data", h.data); r.code != 0 || !strings.Contains(r.out, "no paired computers") {
		t.Errorf("devices: exit %d\n%s%s", r.code, r.out, r.err)
	}
	// The hub's own refusal: exit 1 with its message, not a usage error.
	if r := lk(t, "", "devices", "revoke", "d-nosuch", "--data", h.data); r.code != cli.ExitFailed || r.err == "" || strings.Contains(r.err, "Usage:") {
		t.Errorf("devices revoke of an unknown device: exit %d\n%s", r.code, r.err)
	}

	archive := filepath.Join(t.TempDir(), "box.tar")
	if r := lk(t, "", "backup", archive, "--data", h.data); r.code != 0 || !strings.Contains(r.out, "verified") {
		t.Fatalf("backup: exit %d\n%s%s", r.code, r.out, r.err)
	}
	fresh := filepath.Join(t.TempDir(), "restored")
	if r := lk(t, "", "restore", "--data", fresh, archive); r.code != 0 || !strings.Contains(r.out, "restored into "+fresh) {
		t.Errorf("restore: exit %d\n%s%s", r.code, r.out, r.err)
	}
	if _, err := os.Stat(filepath.Join(fresh, "identity.json")); err != nil {
		t.Errorf("restore left no identity: %v", err)
	}
	if r := lk(t, "", "restore", archive, "--data", h.data); r.code != cli.ExitFailed {
		t.Errorf("restore over the running box's data: exit %d, want 1\n%s", r.code, r.err)
	}
	h.stop(t)
}

// Completion: the program answers the shell's COMP_LINE, and each shell's
// script hands completion to it.
func TestShellCompletion(t *testing.T) {
	for line, want := range map[string]string{
		"lowkey dev":                     "devices",
		"lowkey devices re":              "revoke",
		"lowkey hub --session-m":         "--session-memory",
		"lowkey secrets set X --for exe": "exec",
	} {
		t.Setenv("COMP_LINE", line)
		r := lk(t, "")
		if r.code != 0 || strings.TrimSpace(r.out) != want {
			t.Errorf("completing %q: exit %d %q, want %q", line, r.code, r.out, want)
		}
	}
	os.Unsetenv("COMP_LINE")

	for _, shell := range []string{"bash", "zsh", "fish"} {
		path, err := exec.LookPath(shell)
		if err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not installed (.ci/run installs it)", shell)
			}
			t.Logf("no %s here: its script is not tried", shell)
			continue
		}
		r := lk(t, "", "completion", shell)
		if r.code != 0 {
			t.Fatalf("completion %s: exit %d %s", shell, r.code, r.err)
		}
		script := filepath.Join(t.TempDir(), "lowkey."+shell)
		if err := os.WriteFile(script, []byte(r.out), 0o600); err != nil {
			t.Fatal(err)
		}
		// Each shell loads the script and is asked what follows "lowkey dev".
		check := map[string]string{
			"bash": `source "$1" && complete -p lowkey && COMP_LINE="lowkey devices re" COMP_POINT=17 $(complete -p lowkey | sed -E "s/.*-C '([^']*)'.*/\1/")`,
			"zsh":  `source "$1" && print -r -- $_comps[lowkey]`,
			"fish": `source $argv[1]; and complete -C "lowkey devices re"`,
		}[shell]
		args := []string{"-c", check, shell, script}
		if shell == "fish" {
			args = []string{"-c", check, script}
		}
		cmd := exec.Command(path, args...)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("%s with the script: %v\n%s", shell, err, out)
			continue
		}
		self, _ := os.Executable()
		wantIn := map[string]string{"bash": "revoke", "zsh": self, "fish": "revoke"}[shell]
		if !strings.Contains(string(out), wantIn) {
			t.Errorf("%s with the script said %q, want %q in it", shell, out, wantIn)
		}
	}
}

// The version is one line.
func TestVersion(t *testing.T) {
	if r := lk(t, "", "version"); r.code != 0 || r.out != "lowkey "+version+"\n" {
		t.Errorf("version: %+v", r)
	}
}

// Sizes take the units people write, and a wrong one says what to write.
func TestSizeTakesHumanUnits(t *testing.T) {
	for in, want := range map[string]int64{"512MiB": 512 << 20, "2GiB": 2 << 30, "1048576": 1 << 20, "64 MiB": 64 << 20} {
		var s size
		if err := s.UnmarshalText([]byte(in)); err != nil || int64(s) != want {
			t.Errorf("%q: %d %v, want %d", in, s, err, want)
		}
	}
	var s size
	if err := s.UnmarshalText([]byte("lots")); err == nil {
		t.Error(`"lots" was taken as a size`)
	}
}

// With no hub, doctor says so first, checks what it can, and exits 1.
func TestDoctorWithoutAHub(t *testing.T) {
	r := lk(t, "", "doctor", "--data", filepath.Join(t.TempDir(), "none"))
	if r.code != cli.ExitFailed || !strings.HasPrefix(r.out, "FAIL  hub") || !strings.Contains(r.out, "→ start it") ||
		!strings.Contains(r.out, "disk") || !strings.Contains(r.err, "checks failed") {
		t.Fatalf("doctor with no hub: exit %d\n%s%s", r.code, r.out, r.err)
	}
}
