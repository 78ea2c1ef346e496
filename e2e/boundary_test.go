package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// The account the ordinary-user box runs as in these tests.
const e2eHubUser = "lowkey-e2e-hub"

// openTempDir is a fresh directory every account may pass through
// (t.TempDir's parent is its creator's alone), removed after the test.
func openTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "lowkey-e2e-open-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func needRoot(t *testing.T, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root " + why)
		}
		t.Skip("needs root " + why)
	}
}

// An agent, run by a box as root (so its workers run as the agent
// account) and by a box run as an ordinary user (so its workers run in
// user namespaces), tries every way into the hub it was reported to
// have: the admin socket by path and through the hub's /proc entries,
// the data directory, the store and the identity, the hub's environment,
// memory and descriptors, signals and ptrace, the owner's token through
// the HTTP API, its own MCP token after its turn ended, and another
// session's token. Every attempt fails; its ordinary work (files in its
// work directory and its home, a job, a file the owner made for it)
// still works; the audit holds nothing it did; a secret it printed is
// masked wherever it was kept.
func TestAgentsCannotReachTheHub(t *testing.T) {
	needRoot(t, "to run a box as root and another as an ordinary user")
	t.Run("box run as root", func(t *testing.T) {
		data := filepath.Join(t.TempDir(), "box")
		b := startBoxIn(t, data, nil, "--no-mdns")
		if !strings.Contains(b.out.String(), "Agents run as lowkey-agent") {
			t.Fatalf("the box does not say its agents run as lowkey-agent:\n%s", b.out)
		}
		attackBox(t, b, "lowkey-agent")
		// Sessions' directories sit in one the agent cannot change, so it
		// cannot point one elsewhere for the box to read or write as root.
		fi, err := os.Stat("/var/lib/lowkey-work")
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || fi.Mode().Perm() != 0o711 {
			t.Fatalf("/var/lib/lowkey-work is uid %d, %v", st.Uid, fi.Mode().Perm())
		}
	})
	t.Run("box run as an ordinary user", func(t *testing.T) {
		u := ordinaryUser(t)
		b := startOrdinaryBox(t, u, "--no-mdns")
		if !strings.Contains(b.out.String(), "Agents run in namespaces of their own") {
			t.Fatalf("the box does not say its agents run in namespaces:\n%s", b.out)
		}
		attackBox(t, b, u.Username)
	})
}

// startOrdinaryBox starts a box as the account u, its data in a
// directory of u's own.
func startOrdinaryBox(t *testing.T, u *user.User, extra ...string) *box {
	t.Helper()
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	own := filepath.Join(openTempDir(t), "owned")
	if err := os.Mkdir(own, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(own, uid, gid); err != nil {
		t.Fatal(err)
	}
	return startBoxIn(t, filepath.Join(own, "data"), &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, extra...)
}

// ordinaryUser is an unprivileged account to run a box as.
func ordinaryUser(t *testing.T) *user.User {
	t.Helper()
	if u, err := user.Lookup(e2eHubUser); err == nil {
		return u
	}
	useradd := "/usr/sbin/useradd"
	if p, err := exec.LookPath("useradd"); err == nil {
		useradd = p
	}
	out, err := exec.Command(useradd, "--system", "--user-group", "--create-home", "--home-dir", "/var/lib/"+e2eHubUser,
		"--shell", "/usr/sbin/nologin", e2eHubUser).CombinedOutput()
	if err != nil {
		// Another test process may have made it meanwhile.
		if u, lerr := user.Lookup(e2eHubUser); lerr == nil {
			return u
		}
		t.Fatalf("useradd: %v: %s", err, out)
	}
	u, err := user.Lookup(e2eHubUser)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// startBoxIn starts "lowkey hub" from inside its data directory (so the
// hub's /proc/PID/cwd leads there), as cred when given.
func startBoxIn(t *testing.T, data string, cred *syscall.Credential, extra ...string) *box {
	t.Helper()
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	// Its backups outside its data directory: agents must not reach them
	// either (they hold the box's keys).
	backups := data + "-backups"
	cmd := command("", "lowkey", append([]string{"hub", "--data", data, "--listen", "127.0.0.1:0", "--pages-listen=", "--backup-dir", backups}, extra...)...)
	cmd.Dir = data
	if cred != nil {
		if err := os.Chown(data, int(cred.Uid), int(cred.Gid)); err != nil {
			t.Fatal(err)
		}
		u, err := user.LookupId(strconv.Itoa(int(cred.Uid)))
		if err != nil {
			t.Fatal(err)
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		cmd.Env = []string{"HOME=" + u.HomeDir, "PATH=/usr/local/bin:/usr/bin:/bin", "USER=" + u.Username}
	}
	p := startCmd(t, "lowkey", cmd)
	url := p.waitFor(`Lowkey hub is ready: https?://(\S+)`, 20*time.Second)
	return &box{proc: p, data: data, addr: url, backups: backups}
}

type turnView struct {
	ID, State, Detail, Reply string
}

// runTurn says text in a session and waits for the turn to end.
func runTurn(t *testing.T, b *box, token, sid, text string) turnView {
	t.Helper()
	tid := apiJSON(t, "POST", base(b.addr)+"/api/v1/sessions/"+sid+"/messages", token, `{"text":`+strconv.Quote(text)+`}`, http.StatusCreated)["turn_id"].(string)
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		_, raw := apiDo(t, "GET", base(b.addr)+"/api/v1/sessions/"+sid, token, "")
		var s struct{ Turns []turnView }
		if err := json.Unmarshal(raw, &s); err != nil {
			t.Fatal(err)
		}
		for _, tr := range s.Turns {
			if tr.ID == tid && tr.State != "running" && tr.State != "stalled" {
				return tr
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("turn %s did not end", tid)
	return turnView{}
}

// workerOf finds the process of a session's running worker that runs
// prog, and the credentials file its environment names.
func workerOf(t *testing.T, sid, prog string) (int, string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		procs, _ := os.ReadDir("/proc")
		for _, p := range procs {
			pid, err := strconv.Atoi(p.Name())
			if err != nil {
				continue
			}
			cmdline, _ := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
			env, _ := os.ReadFile(filepath.Join("/proc", p.Name(), "environ"))
			argv0, _, _ := bytes.Cut(cmdline, []byte{0})
			if filepath.Base(string(argv0)) != prog || !bytes.Contains(env, []byte("LOWKEY_SESSION="+sid+"\x00")) {
				continue
			}
			for _, kv := range strings.Split(string(env), "\x00") {
				if f, ok := strings.CutPrefix(kv, "LOWKEY_CREDENTIALS_FILE="); ok {
					return pid, f
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no worker running %s in %s", prog, sid)
	return 0, ""
}

func attackBox(t *testing.T, b *box, agentAccount string) {
	token := strings.TrimSpace(mustRun(t, "", "lowkey", "token", "--data", b.data))
	hubPid := b.cmd.Process.Pid
	const execSecret, openaiSecret = "exec-secret-e2e-4f1c9a", "openai-secret-e2e-77b2"
	for name, set := range map[string][2]string{"E2E_EXEC_SECRET": {"exec", execSecret}, "E2E_OPENAI_SECRET": {"openai", openaiSecret}} {
		cmd := command("", "lowkey", "secrets", "set", "--data", b.data, "--for", set[0], name)
		cmd.Stdin = strings.NewReader(set[1] + "\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("secrets set: %v %s", err, out)
		}
	}
	notes := filepath.Join(openTempDir(t), "notes.txt")
	if err := os.WriteFile(notes, []byte("notes for the agent\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	// The victim: a session whose worker holds its credentials file,
	// unread, for the whole attack.
	victim := apiJSON(t, "POST", base(b.addr)+"/api/v1/sessions", token, `{"agent":"exec:sleep 120"}`, http.StatusCreated)["id"].(string)
	apiJSON(t, "POST", base(b.addr)+"/api/v1/sessions/"+victim+"/messages", token, `{"text":"hold"}`, http.StatusCreated)
	vpid, vfile := workerOf(t, victim, "sleep")
	held, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(vpid), "root", vfile))
	if err != nil {
		held, err = os.ReadFile(vfile)
	}
	var vcreds struct {
		MCPToken string `json:"mcp_token"`
	}
	if err != nil || json.Unmarshal(held, &vcreds) != nil || vcreds.MCPToken == "" {
		t.Fatalf("the victim's credentials file is not there to steal (%v): %q", err, held)
	}

	backups := b.backups
	if backups == "" {
		backups = filepath.Join(b.data, "backups")
	}
	// The box's first backup is made at once: there is one to steal.
	deadline := time.Now().Add(30 * time.Second)
	var archive string
	for {
		if names, _ := filepath.Glob(filepath.Join(backups, "lowkey-*.tar")); len(names) > 0 {
			archive = names[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no backup in %s to attack", backups)
		}
		time.Sleep(20 * time.Millisecond)
	}
	agent := fmt.Sprintf("exec:%s --hub-pid=%d --data=%s --api=%s --shared=%s --backups=%s --backup-file=%s", filepath.Join(bin, "attacker"), hubPid, b.data, base(b.addr), notes, backups, archive)
	sid := apiJSON(t, "POST", base(b.addr)+"/api/v1/sessions", token, `{"agent":`+strconv.Quote(agent)+`}`, http.StatusCreated)["id"].(string)
	first := runTurn(t, b, token, sid, "try everything")
	lines := strings.Split(first.Reply, "\n")
	attacks, honest := 0, map[string]bool{}
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "attack "):
			attacks++
			if !strings.Contains(l, ": refused: ") {
				t.Errorf("the agent got in: %s", l)
			}
		case strings.HasPrefix(l, "honest "):
			name, rest, _ := strings.Cut(strings.TrimPrefix(l, "honest "), ": ")
			honest[name] = rest == "ok"
			if rest != "ok" {
				t.Errorf("ordinary work failed: %s", l)
			}
		}
	}
	if attacks < 19 {
		t.Errorf("only %d attacks reported: the agent did not get through its list\n%s", attacks, first.Reply)
	}
	for _, want := range []string{"credentials", "write-work", "write-home", "read-shared", "job", "keep-token"} {
		if !honest[want] {
			t.Errorf("honest %s did not report ok", want)
		}
	}
	if strings.Contains(first.Reply, vcreds.MCPToken) {
		t.Error("the agent found the other session's MCP token")
	}
	// Its secrets are the ones meant for its runtime, and what it printed
	// of them is masked.
	if !strings.Contains(first.Reply, "secret names: E2E_EXEC_SECRET\n") {
		t.Errorf("the exec turn got other secrets than its own:\n%s", first.Reply)
	}
	if !strings.Contains(first.Reply, "secret E2E_EXEC_SECRET=[secret E2E_EXEC_SECRET]") {
		t.Errorf("the printed secret is not masked in the turn's reply:\n%s", first.Reply)
	}
	if first.State != "done" {
		t.Errorf("the attacking turn ended %s (%s)", first.State, first.Detail)
	}
	// The job ran as the agent's account.
	_, raw := apiDo(t, "GET", base(b.addr)+"/api/v1/sessions/"+sid, token, "")
	if !strings.Contains(string(raw), `job-ran\n`+agentAccount+`\n`) {
		t.Errorf("no job ran as %s: %s", agentAccount, raw)
	}

	// A second turn: the first one's token is dead, its own works.
	second := runTurn(t, b, token, sid, "again")
	for _, want := range []string{"attack old-mcp-token: refused", "honest token-kept: ok", "honest own-token: ok"} {
		if !strings.Contains(second.Reply, want) {
			t.Errorf("second turn: no %q in\n%s", want, second.Reply)
		}
	}

	// Nothing it did is in the audit, and its toggle is still off.
	_, audit := apiDo(t, "GET", base(b.addr)+"/api/v1/audit?session="+sid, token, "")
	if strings.TrimSpace(string(audit)) != "[]" {
		t.Errorf("the audit holds actions of the agent: %s", audit)
	}
	// The secret is masked in everything kept: the session (turns and
	// job cards), its events, the hub's log.
	_, raw = apiDo(t, "GET", base(b.addr)+"/api/v1/sessions/"+sid, token, "")
	events := allEvents(t, b.addr, token, sid)
	for what, text := range map[string]string{"session": string(raw), "events": events, "log": b.out.String()} {
		for _, v := range []string{execSecret, openaiSecret} {
			if strings.Contains(text, v) {
				t.Errorf("a secret value is in the %s", what)
			}
		}
	}
	if !strings.Contains(events, "job-secret [secret E2E_EXEC_SECRET]") {
		t.Errorf("the job that echoed the secret is not in the events, masked")
	}
	apiJSON(t, "POST", base(b.addr)+"/api/v1/sessions/"+victim+"/kill", token, "", http.StatusOK)
}

// allEvents is a session's whole event log as the API replays it.
func allEvents(t *testing.T, addr, token, sid string) string {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/api/v1/sessions/"+sid+"/events?since=0", http.Header{"Authorization": {"Bearer " + token}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	var all strings.Builder
	for {
		_ = ws.SetReadDeadline(time.Now().Add(time.Second))
		_, msg, err := ws.ReadMessage()
		if err != nil {
			return all.String()
		}
		all.Write(msg)
		all.WriteByte('\n')
	}
}

// The admin socket answers the hub's own account and root only, even
// with its file mode and the data directory opened up to everyone.
func TestAdminSocketChecksWhoCalls(t *testing.T) {
	needRoot(t, "to call the admin socket as another account")
	data := filepath.Join(openTempDir(t), "box")
	b := startBoxIn(t, data, nil, "--no-mdns")
	for _, p := range []string{filepath.Dir(data), data, filepath.Join(data, "hub.sock")} {
		if err := os.Chmod(p, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	cmd := command("", "lowkey", "token", "--data", b.data)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "answers only the hub's own account (uid 0) and root, not uid 65534") {
		t.Fatalf("another account called the admin socket: %v\n%s", err, out)
	}
	if strings.Contains(string(out), mustRun(t, "", "lowkey", "token", "--data", b.data)) {
		t.Fatal("the token reached another account")
	}
	// The owner rotates the token: the old one stops working at once.
	old := strings.TrimSpace(mustRun(t, "", "lowkey", "token", "--data", b.data))
	fresh, _, _ := strings.Cut(mustRun(t, "", "lowkey", "token", "--rotate", "--data", b.data), "\n")
	if fresh == old || fresh != strings.TrimSpace(mustRun(t, "", "lowkey", "token", "--data", b.data)) {
		t.Fatalf("rotate: old %q new %q", old, fresh)
	}
	if code, _ := apiDo(t, "GET", base(b.addr)+"/api/v1/sessions", old, ""); code != http.StatusUnauthorized {
		t.Fatalf("the old token still answers %d", code)
	}
	if code, raw := apiDo(t, "GET", base(b.addr)+"/api/v1/devices", fresh, ""); code != http.StatusOK {
		t.Fatalf("the new token: %d %s", code, raw)
	}
}

// A member cannot choose an exec: agent (a program the box would run);
// the built-in runtimes and the presets are theirs to use.
func TestMembersCannotChooseExecAgents(t *testing.T) {
	b := startBox(t, "", t.TempDir(), "127.0.0.1:0", "--no-mdns")
	setup := b.waitFor(`#/setup/(\S+)`, 5*time.Second)
	apiJSON(t, "POST", base(b.addr)+"/api/v1/setup", "", `{"token":"`+setup+`","name":"owner","password":"owner-password-1"}`, http.StatusOK)
	token := strings.TrimSpace(mustRun(t, "", "lowkey", "token", "--data", b.data))
	apiJSON(t, "POST", base(b.addr)+"/api/v1/users", token, `{"name":"bob","password":"bob-password-1"}`, http.StatusCreated)
	resp, err := http.Post(base(b.addr)+"/api/v1/login", "application/json", strings.NewReader(`{"name":"bob","password":"bob-password-1"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var me struct{ CSRF string }
	if err := json.NewDecoder(resp.Body).Decode(&me); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("login: %d %v", resp.StatusCode, err)
	}
	var cookie string
	for _, c := range resp.Cookies() {
		cookie = c.Name + "=" + c.Value
	}
	asBob := func(body string) (int, string) {
		req, _ := http.NewRequest("POST", base(b.addr)+"/api/v1/sessions", strings.NewReader(body))
		req.Header.Set("Cookie", cookie)
		req.Header.Set("X-CSRF-Token", me.CSRF)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		var out bytes.Buffer
		_, _ = out.ReadFrom(r.Body)
		return r.StatusCode, out.String()
	}
	if code, body := asBob(`{"agent":"exec:cat /etc/passwd"}`); code != http.StatusForbidden || !strings.Contains(body, "only the box's owner") {
		t.Fatalf("a member's exec: session: %d %s", code, body)
	}
	if code, body := asBob(`{"agent":"builtin"}`); code != http.StatusCreated {
		t.Fatalf("a member's builtin session: %d %s", code, body)
	}
	if code, body := asBob(`{"agent":"claude"}`); code != http.StatusCreated {
		t.Fatalf("a member's preset session: %d %s", code, body)
	}
	apiJSON(t, "POST", base(b.addr)+"/api/v1/sessions", token, `{"agent":"exec:cat /etc/hostname"}`, http.StatusCreated)
}

// A box whose account holds some of the capabilities running agents as
// lowkey-agent needs, not all, refuses to start, naming what it lacks (it
// would run agents half apart). The whole set is the package's test.
func TestABoxWithSomeCapabilitiesRefusesToStart(t *testing.T) {
	needRoot(t, "to start a box as another account with capabilities")
	u := ordinaryUser(t)
	own := filepath.Join(openTempDir(t), "owned")
	if err := os.Mkdir(own, 0o700); err != nil {
		t.Fatal(err)
	}
	sh(t, "chown", u.Username+":", own)
	const some = "+setuid,+setgid"
	cmd := exec.Command("setpriv", "--reuid="+u.Username, "--regid="+u.Gid, "--init-groups",
		"--inh-caps="+some, "--ambient-caps="+some, "--",
		filepath.Join(bin, "lowkey"), "hub", "--data", filepath.Join(own, "data"), "--listen", "127.0.0.1:0", "--pages-listen=", "--no-mdns")
	cmd.Env = []string{"HOME=" + u.HomeDir, "PATH=/usr/bin:/bin"}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "it lacks cap_sys_admin, cap_chown, cap_kill, cap_dac_override, cap_fowner") {
		t.Fatalf("a box with setuid and setgid only: %v\n%s", err, out)
	}
}
