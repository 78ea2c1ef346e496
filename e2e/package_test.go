package e2e

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// repoRoot is the checkout the tests run in.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// buildPackages runs packaging/build (with env) and returns the two
// packages it made, copied into a directory of their own.
func buildPackages(t *testing.T, env ...string) (box, companion string) {
	t.Helper()
	root := repoRoot(t)
	cmd := exec.Command(filepath.Join(root, "packaging", "build"))
	cmd.Dir, cmd.Env = root, append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("packaging/build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	debs, _ := filepath.Glob(filepath.Join(root, "dist", "*.deb"))
	for _, d := range debs {
		b, err := os.ReadFile(d)
		if err != nil {
			t.Fatal(err)
		}
		to := filepath.Join(dir, filepath.Base(d))
		if err := os.WriteFile(to, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(filepath.Base(d), "lowkey-companion_") {
			companion = to
		} else if strings.HasPrefix(filepath.Base(d), "lowkey_") {
			box = to
		}
	}
	if box == "" || companion == "" {
		t.Fatalf("packaging/build made %v", debs)
	}
	return box, companion
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

func sh(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// unitKeys reads a systemd unit's Key=value lines.
func unitKeys(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keys := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			keys[k] = v
		}
	}
	return keys
}

// startInstalledHub runs the installed unit's command line the way
// systemd would run it (no systemd is PID 1 here): as its User= and
// Group=, with its AmbientCapabilities= (and nothing else in the bounding
// set), its EnvironmentFile= read and $LOWKEY_OPTS expanded.
func startInstalledHub(t *testing.T) *box {
	t.Helper()
	unit := unitKeys(t, "/usr/lib/systemd/system/lowkey.service")
	opts := strings.TrimSpace(sh(t, "sh", "-c", ". "+strings.TrimPrefix(unit["EnvironmentFile"], "-")+` && printf '%s' "$LOWKEY_OPTS"`))
	argv := strings.Fields(strings.ReplaceAll(unit["ExecStart"], "$LOWKEY_OPTS", opts))
	var caps []string
	for _, c := range strings.Fields(unit["AmbientCapabilities"]) {
		caps = append(caps, "+"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
	}
	set := strings.Join(caps, ",")
	u, err := user.Lookup(unit["User"])
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--reuid=" + unit["User"], "--regid=" + unit["Group"], "--init-groups",
		"--inh-caps=" + set, "--ambient-caps=" + set, "--bounding-set=-all," + set, "--"}, argv...)
	cmd := exec.Command("setpriv", args...)
	cmd.Dir = "/"
	cmd.Env = []string{"HOME=" + u.HomeDir, "PATH=/usr/local/bin:/usr/bin:/bin", "USER=" + u.Username}
	p := startCmd(t, "lowkey hub (installed)", cmd)
	addr := p.waitFor(`Lowkey hub is ready: https?://(\S+)`, 30*time.Second)
	return &box{proc: p, data: "/var/lib/lowkey", addr: addr}
}

// procStatus reads a process's /proc status lines.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(raw), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}

// The box's package, as its owner meets it: it builds the same bytes twice,
// installs with its two accounts and its directories, its units pass
// systemd's own check, the hub starts from the installed files as the
// lowkey account on loopback and runs agents as lowkey-agent (with no
// capability, in their memory budget, and the attacks on the hub fail),
// an upgrade keeps the data and the owner's edit of its options, and
// removing and purging it leave the data.
func TestThePackagesInstallRunUpgradeAndLeaveTheData(t *testing.T) {
	needRoot(t, "to install packages and make accounts")
	if _, err := os.Stat("/var/lib/lowkey"); err == nil || exec.Command("dpkg", "-s", "lowkey").Run() == nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("this machine already has a lowkey box installed")
		}
		t.Skip("this machine already has a lowkey box installed (/var/lib/lowkey): the test would change it")
	}
	// The tests' root boxes keep their work in /var/lib/lowkey-work too:
	// it goes back as it was.
	var workBefore *syscall.Stat_t
	if fi, err := os.Stat("/var/lib/lowkey-work"); err == nil {
		workBefore = fi.Sys().(*syscall.Stat_t)
	}
	t.Cleanup(func() {
		_ = exec.Command("dpkg", "--purge", "lowkey", "lowkey-companion").Run()
		os.RemoveAll("/var/lib/lowkey")
		if workBefore != nil {
			_ = os.Chown("/var/lib/lowkey-work", int(workBefore.Uid), int(workBefore.Gid))
			_ = os.Chmod("/var/lib/lowkey-work", os.FileMode(workBefore.Mode&0o7777))
		} else {
			os.RemoveAll("/var/lib/lowkey-work")
		}
	})

	deb, companionDeb := buildPackages(t)
	again, companionAgain := buildPackages(t)
	if fileSum(t, deb) != fileSum(t, again) || fileSum(t, companionDeb) != fileSum(t, companionAgain) {
		t.Fatalf("two builds of one commit differ: %s %s", deb, again)
	}
	version := regexp.MustCompile(`lowkey_([^_]+)_`).FindStringSubmatch(filepath.Base(deb))[1]

	sh(t, "dpkg", "-i", deb)
	hubUser, err := user.Lookup("lowkey")
	if err != nil {
		t.Fatalf("the package made no lowkey account: %v", err)
	}
	if _, err := user.Lookup("lowkey-agent"); err != nil {
		t.Fatalf("the package made no lowkey-agent account: %v", err)
	}
	fi, err := os.Stat("/var/lib/lowkey")
	if err != nil || fi.Mode().Perm() != 0o700 || strconv.Itoa(int(fi.Sys().(*syscall.Stat_t).Uid)) != hubUser.Uid {
		t.Fatalf("/var/lib/lowkey after install: %v %v", fi, err)
	}
	if out := sh(t, "systemd-analyze", "verify", "/usr/lib/systemd/system/lowkey.service"); strings.TrimSpace(out) != "" {
		t.Fatalf("systemd-analyze verify lowkey.service:\n%s", out)
	}
	unit := unitKeys(t, "/usr/lib/systemd/system/lowkey.service")
	if unit["Delegate"] != "yes" || unit["User"] != "lowkey" {
		t.Fatalf("the unit: %v", unit)
	}
	if v := strings.TrimSpace(sh(t, "/usr/bin/lowkey", "version")); v != "lowkey "+version {
		t.Fatalf("the installed lowkey says %q, the package is %s", v, version)
	}

	b := startInstalledHub(t)
	if !strings.HasPrefix(b.addr, "127.0.0.1:") {
		t.Fatalf("the installed box listens on %s, not on loopback", b.addr)
	}
	if st := procStatus(t, b.cmd.Process.Pid); strings.Fields(st["Uid"])[0] != hubUser.Uid {
		t.Fatalf("the installed hub runs as uid %s, not lowkey (%s)", st["Uid"], hubUser.Uid)
	}
	if !strings.Contains(b.out.String(), "Agents run as lowkey-agent") || !strings.Contains(b.out.String(), "memory budgets for sessions") {
		t.Fatalf("the installed hub does not run agents as lowkey-agent in memory budgets:\n%s", b.out)
	}
	token := strings.TrimSpace(mustRun(t, "", "lowkey", "token", "--data", b.data))
	// The admin commands find the installed box by themselves (sudo lowkey
	// pair-code), and tell an account that is not the box's what to do.
	plain := exec.Command("/usr/bin/lowkey", "token")
	plain.Env = []string{"HOME=" + t.TempDir(), "PATH=/usr/bin:/bin"}
	if out, err := plain.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != token {
		t.Fatalf("lowkey token as root, no --data: %v %s", err, out)
	}
	other := ordinaryUser(t)
	ouid, _ := strconv.Atoi(other.Uid)
	ogid, _ := strconv.Atoi(other.Gid)
	plain = exec.Command("/usr/bin/lowkey", "pair-code")
	plain.Env = []string{"HOME=/nonexistent", "PATH=/usr/bin:/bin"}
	plain.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(ouid), Gid: uint32(ogid)}}
	if out, err := plain.CombinedOutput(); err == nil || !strings.Contains(string(out), "not this account's") {
		t.Fatalf("lowkey pair-code as %s: %v %s", other.Username, err, out)
	}
	probe := `exec:sh -c "id -un; grep -E '^Cap(Inh|Prm|Eff|Amb)' /proc/self/status; cat /proc/self/cgroup"`
	sid := apiJSON(t, "POST", base(b.addr)+"/api/v1/sessions", token, `{"agent":`+strconv.Quote(probe)+`}`, http.StatusCreated)["id"].(string)
	tr := runTurn(t, b, token, sid, "who am I")
	if tr.State != "done" || !strings.HasPrefix(tr.Reply, "lowkey-agent\n") || !strings.Contains(tr.Reply, "/lowkey/"+sid) {
		t.Fatalf("the agent of the installed box: %s\n%s", tr.State, tr.Reply)
	}
	for _, set := range []string{"CapInh", "CapPrm", "CapEff", "CapAmb"} {
		if !strings.Contains(tr.Reply, set+":\t0000000000000000") {
			t.Fatalf("the agent holds capabilities (%s):\n%s", set, tr.Reply)
		}
	}
	attackBox(t, b, "lowkey-agent")
	b.stop()

	// An upgrade: the owner's edit of the options is kept, and the data.
	opts, err := os.ReadFile("/etc/default/lowkey")
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(opts), `LOWKEY_OPTS="--listen 127.0.0.1:7780"`, `LOWKEY_OPTS="--listen 127.0.0.1:7780 --name upgraded-box"`, 1)
	if edited == string(opts) {
		t.Fatalf("/etc/default/lowkey is not as shipped:\n%s", opts)
	}
	if err := os.WriteFile("/etc/default/lowkey", []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	newer, _ := buildPackages(t, "VERSION="+version+"+1")
	sh(t, "dpkg", "--force-confold", "-i", newer)
	if v := strings.TrimSpace(sh(t, "/usr/bin/lowkey", "version")); v != "lowkey "+version+"+1" {
		t.Fatalf("after the upgrade lowkey says %q", v)
	}
	if got, _ := os.ReadFile("/etc/default/lowkey"); string(got) != edited {
		t.Fatalf("the upgrade changed the owner's options:\n%s", got)
	}
	b = startInstalledHub(t)
	if code, raw := apiDo(t, "GET", base(b.addr)+"/api/v1/sessions/"+sid, token, ""); code != http.StatusOK || !strings.Contains(string(raw), "lowkey-agent") {
		t.Fatalf("after the upgrade, with the same token, the conversation: %d %s", code, raw)
	}
	b.stop()

	// Removing, then purging, leave the box's data.
	sh(t, "dpkg", "-r", "lowkey")
	if _, err := os.Stat("/usr/bin/lowkey"); err == nil {
		t.Fatal("dpkg -r left /usr/bin/lowkey")
	}
	sh(t, "dpkg", "--purge", "lowkey")
	for _, kept := range []string{"/var/lib/lowkey/identity.json", "/var/lib/lowkey/store", "/var/lib/lowkey/backups"} {
		if _, err := os.Stat(kept); err != nil {
			t.Fatalf("purging the package lost %s: %v", kept, err)
		}
	}
	if names, _ := filepath.Glob("/var/lib/lowkey/backups/lowkey-*.tar"); len(names) == 0 {
		t.Fatal("the installed box made no timed backup")
	}

	// The companion's package: the program and its user unit, the one
	// install-service writes, which systemd's check passes.
	sh(t, "dpkg", "-i", companionDeb)
	runtimeDir := t.TempDir()
	verify := exec.Command("systemd-analyze", "verify", "--user", "/usr/lib/systemd/user/lowkey-companion.service")
	verify.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+runtimeDir)
	if out, err := verify.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "" {
		t.Fatalf("systemd-analyze verify --user lowkey-companion.service: %v\n%s", err, out)
	}
	installed, err := os.ReadFile("/usr/lib/systemd/user/lowkey-companion.service")
	if err != nil {
		t.Fatal(err)
	}
	if want := mustRun(t, "", "lowkey-companion", "install-service", "--for-package"); string(installed) != want {
		t.Fatalf("the packaged unit is not install-service's:\n%s\nwant\n%s", installed, want)
	}
	sh(t, "dpkg", "--purge", "lowkey-companion")
}
