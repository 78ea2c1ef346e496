package sandbox

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// DefaultAgentUser is the account workers run as when the hub is root.
const DefaultAgentUser = "lowkey-agent"

// Modes of a boundary.
const (
	// ModeAgentUser: the hub is root; workers run as the agent account.
	ModeAgentUser = "agent-user"
	// ModeUserNS: the hub is an ordinary user; workers share its account
	// but run in user, mount and PID namespaces of their own.
	ModeUserNS = "user-namespace"
	// ModeNone: workers run as the hub's own user with nothing between.
	ModeNone = "none"
)

// Config says what a boundary keeps workers from.
type Config struct {
	// AgentUser is the account workers run as when the hub is root
	// (default lowkey-agent, made when missing). Ignored otherwise.
	AgentUser string
	// Hide lists directories workers must not see: the hub's data
	// directory, and anything else of the hub's.
	Hide []string
	// InitBin is a program that runs Init when called as
	// "InitBin worker-init" (the hub's own binary).
	InitBin string
}

// Boundary is how this box separates its workers from the hub.
type Boundary struct {
	mode    string
	missing string // what of the boundary this machine could not give ("" all of it)

	cred    *syscall.Credential // the agent account (root hubs)
	user    string
	home    string
	hide    []string
	initBin string
	// namespaces: workers start through the init in their own mount
	// and PID namespaces (with a user namespace when userNS).
	namespaces bool
	userNS     bool

	pool pool
}

// Prepare works out the boundary this machine allows: it makes the agent
// account when the hub is root, and tries the namespaces once.
func Prepare(cfg Config) (*Boundary, error) {
	b := &Boundary{initBin: cfg.InitBin}
	for _, p := range cfg.Hide {
		if abs, err := filepath.Abs(p); err == nil {
			b.hide = append(b.hide, abs)
		}
	}
	if privileged, err := MaySwitchUser(); privileged {
		name := cfg.AgentUser
		if name == "" {
			name = DefaultAgentUser
		}
		u, err := agentAccount(name)
		if err != nil {
			return nil, err
		}
		b.mode, b.user, b.home = ModeAgentUser, u.Username, u.HomeDir
		b.cred, err = credentialOf(u)
		if err != nil {
			return nil, err
		}
		if err := ownedDir(b.home, int(b.cred.Uid), int(b.cred.Gid)); err != nil {
			return nil, fmt.Errorf("the agent account's home: %w", err)
		}
		b.namespaces = true
		if err := b.probe(); err != nil {
			if os.Geteuid() != 0 {
				// A worker started without the init would keep the
				// account's capabilities: never.
				return nil, fmt.Errorf("the hub's account has the capabilities to run agents as %s, but their namespaces could not be made: %w", name, err)
			}
			b.namespaces = false
			b.missing = "workers run as " + name + " but share the hub's view of processes and files (namespaces unavailable: " + err.Error() + ")"
		}
		return b, nil
	} else if err != nil {
		return nil, err
	}
	b.mode = ModeUserNS
	if u, err := user.Current(); err == nil {
		b.user = u.Username
	}
	b.home, _ = os.UserHomeDir()
	b.namespaces, b.userNS = true, true
	if err := b.probe(); err != nil {
		b.mode, b.namespaces, b.userNS = ModeNone, false, false
		b.missing = "agents run as the hub's own user and can reach its data directory, process and tokens " +
			"(unprivileged user namespaces are unavailable here: " + err.Error() + "): run the hub as root, or as a service with its own account"
	}
	return b, nil
}

// Mode is ModeAgentUser, ModeUserNS or ModeNone.
func (b *Boundary) Mode() string { return b.mode }

// Missing says what of the boundary this machine could not give, "" when
// it holds whole.
func (b *Boundary) Missing() string { return b.missing }

// User is the account workers run as.
func (b *Boundary) User() string { return b.user }

// Home is the workers' HOME: the agent account's, kept across turns.
func (b *Boundary) Home() string { return b.home }

// Own hands a directory the hub made to the workers' account (a no-op
// unless the hub is root).
func (b *Boundary) Own(path string) error {
	if b.cred == nil {
		return nil
	}
	return os.Lchown(path, int(b.cred.Uid), int(b.cred.Gid))
}

// agentAccount looks the account up, making the default one when it is
// missing. Another name must exist: the hub does not make accounts it
// was not asked to.
func agentAccount(name string) (*user.User, error) {
	u, err := user.Lookup(name)
	if err == nil {
		if u.Uid == "0" {
			return nil, fmt.Errorf("the agent account %q is root: agents must not run as root (pick an unprivileged account with --agent-user)", name)
		}
		return u, nil
	}
	var unknown user.UnknownUserError
	if !errors.As(err, &unknown) {
		return nil, fmt.Errorf("looking up the agent account %q: %w", name, err)
	}
	if name != DefaultAgentUser {
		return nil, fmt.Errorf("no account %q on this machine: create it (useradd --system --create-home %s) or leave --agent-user at its default", name, name)
	}
	home := filepath.Join("/var/lib", name)
	useradd := sbin("useradd")
	var out []byte
	// Another hub starting at the same moment may be making it too, or
	// hold the password file's lock: look again, and try again.
	for range 20 {
		out, err = exec.Command(useradd, "--system", "--user-group", "--create-home", "--home-dir", home,
			"--shell", "/usr/sbin/nologin", "--comment", "Lowkey agents", name).CombinedOutput()
		if u, lerr := user.Lookup(name); lerr == nil {
			return u, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil, fmt.Errorf("making the agent account %s: %v: %s", name, err, out)
}

// sbin finds an administrator's command, on the PATH or where systems
// keep them (a root shell's PATH does not always name /usr/sbin).
func sbin(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return name
}

func credentialOf(u *user.User) (*syscall.Credential, error) {
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("agent account uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("agent account gid %q: %w", u.Gid, err)
	}
	c := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	gids, _ := u.GroupIds()
	for _, g := range gids {
		if n, err := strconv.ParseUint(g, 10, 32); err == nil {
			c.Groups = append(c.Groups, uint32(n))
		}
	}
	return c, nil
}

// ownedDir makes dir if needed and checks it belongs to uid, 0700.
func ownedDir(dir string, uid, gid int) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if int(st.Uid) != uid {
		if err := os.Lchown(dir, uid, gid); err != nil {
			return err
		}
	}
	return os.Chmod(dir, 0o700)
}

// probe runs /bin/true through the init once, as every worker starts:
// the hub's directories covered, a credentials file on a tmpfs of its own.
func (b *Boundary) probe() error {
	if b.initBin == "" {
		return errors.New("no program to start workers with")
	}
	dir, err := os.MkdirTemp("", "lowkey-probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	w, err := b.command(Spec{Argv: []string{"/bin/true"}, Dir: "/", Credentials: []byte("{}\n"), CredentialsDir: dir}, b.hide, nil)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	w.Cmd.Stdout, w.Cmd.Stderr = &out, &out
	if err := w.Start(); err != nil {
		return err
	}
	w.Release()
	if err := w.Cmd.Wait(); err != nil {
		return fmt.Errorf("%v: %s", err, trimOutput(out.Bytes()))
	}
	return nil
}

func trimOutput(b []byte) string {
	s := string(b)
	if len(s) > 300 {
		s = s[:300]
	}
	return s
}
