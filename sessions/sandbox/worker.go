package sandbox

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Spec is one worker to run.
type Spec struct {
	// Argv is the program and its arguments; Argv[0] is a path.
	Argv []string
	Env  []string
	Dir  string
	// Credentials is the content of the worker's credentials file (nil:
	// none). The file is made under CredentialsDir, readable by the
	// worker's account only.
	Credentials    []byte
	CredentialsDir string
	// OwnBinary marks Argv[0] as the hub's own program (the built-in
	// agents): it is opened by the hub's account, so the agent account
	// need not be able to reach the directory it was built into.
	OwnBinary bool
}

// CredentialsName is the file name of a worker's credentials file; its
// path is in the worker's LOWKEY_CREDENTIALS_FILE.
const CredentialsName = "credentials.json"

// Group is where a worker starts: its control group.
type Group interface {
	// Start starts cmd inside the group.
	Start(cmd *exec.Cmd) error
	// Place moves a process that has not run anything of its own yet
	// into the group.
	Place(pid int) error
}

// Worker is a command ready to start inside the boundary.
type Worker struct {
	Cmd *exec.Cmd

	cfg     []byte
	ctlR    *os.File
	ctlW    *os.File
	wrote   chan struct{}
	hostDir string   // a credentials directory on the host's disk
	opened  *os.File // the agent program, opened for the worker
	once    sync.Once

	group Group
	// A warm worker is an init started ahead and already placed in its
	// group, waiting for its orders; its streams were made with it.
	warm   bool
	stdin  io.WriteCloser
	stdout io.ReadCloser
	stderr io.ReadCloser
}

// initConfig is what the init reads from its control pipe.
type initConfig struct {
	Argv      []string `json:"argv"`
	Env       []string `json:"env"`
	Dir       string   `json:"dir"`
	Hide      []string `json:"hide"`
	CredDir   string   `json:"cred_dir,omitempty"`
	CredFile  string   `json:"cred_file,omitempty"`
	Cred      []byte   `json:"cred,omitempty"`
	UID       int      `json:"uid"`
	GID       int      `json:"gid"`
	Groups    []uint32 `json:"groups,omitempty"`
	SetUID    bool     `json:"setuid"`
	OwnBinary bool     `json:"own_binary"`
}

// Command builds the worker that runs spec inside the boundary, in
// group. Take its streams with Pipes, start it with Start, and call
// Release once its output has closed.
func (b *Boundary) Command(s Spec, g Group) (*Worker, error) { return b.command(s, b.hide, g) }

func (b *Boundary) command(s Spec, hide []string, g Group) (*Worker, error) {
	if len(s.Argv) == 0 {
		return nil, errors.New("no program to run")
	}
	w := &Worker{wrote: make(chan struct{}), group: g}
	if !b.namespaces {
		return b.plain(w, s)
	}
	c := initConfig{Argv: s.Argv, Env: s.Env, Dir: s.Dir, Hide: hide, OwnBinary: s.OwnBinary, UID: os.Getuid(), GID: os.Getgid()}
	if b.cred != nil {
		c.UID, c.GID, c.Groups, c.SetUID = int(b.cred.Uid), int(b.cred.Gid), b.cred.Groups, true
	}
	if s.Credentials != nil {
		// A tmpfs of the worker's own covers the directory: no other
		// worker, and nothing on disk, ever holds the file.
		c.CredDir, c.Cred = s.CredentialsDir, s.Credentials
		c.CredFile = filepath.Join(s.CredentialsDir, CredentialsName)
		c.Env = withCredentials(c.Env, c.CredFile)
	}
	var err error
	if w.cfg, err = json.Marshal(c); err != nil {
		return nil, err
	}
	if b.warmUp(w) {
		return w, nil
	}
	w.Cmd, w.ctlR, w.ctlW, err = b.initCommand()
	if err != nil {
		return nil, err
	}
	return w, nil
}

// initCommand is the init of a worker's namespaces, with the pipe it
// takes its orders from.
func (b *Boundary) initCommand() (*exec.Cmd, *os.File, *os.File, error) {
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		return nil, nil, nil, err
	}
	cmd := exec.Command(b.initBin, "worker-init")
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.ExtraFiles = []*os.File{ctlR}
	// A session of its own: no terminal of the box's, none of its
	// terminal's signals.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID}
	if b.userNS {
		uid, gid := os.Getuid(), os.Getgid()
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWUSER
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: uid, HostID: uid, Size: 1}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: gid, HostID: gid, Size: 1}}
		// The init keeps what it needs to mount across its exec; the
		// worker it starts gets none of it.
		cmd.SysProcAttr.AmbientCaps = []uintptr{unix.CAP_SYS_ADMIN}
	}
	return cmd, ctlR, ctlW, nil
}

// plain runs the worker as it is (as the agent account when the hub is
// root), its credentials file on the host's disk in a directory only that
// account can open.
func (b *Boundary) plain(w *Worker, s Spec) (*Worker, error) {
	path := s.Argv[0]
	cmd := exec.Command(path, s.Argv[1:]...)
	cmd.Env, cmd.Dir = s.Env, s.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if b.cred != nil {
		cmd.SysProcAttr.Credential = b.cred
		if s.OwnBinary {
			// Opened by the hub's account, run as the agent's.
			f, err := os.Open(path)
			if err != nil {
				return nil, fmt.Errorf("opening the agent program: %w", err)
			}
			cmd.Path, cmd.ExtraFiles = "/proc/self/fd/3", []*os.File{f}
			w.opened = f
		}
	}
	if s.Credentials != nil {
		dir, file, err := b.hostCredentials(s.CredentialsDir, s.Credentials)
		if err != nil {
			return nil, err
		}
		w.hostDir = dir
		cmd.Env = withCredentials(cmd.Env, file)
	}
	close(w.wrote)
	w.Cmd = cmd
	return w, nil
}

// withCredentials tells the worker where its credentials file is.
func withCredentials(env []string, file string) []string {
	return append(env[:len(env):len(env)], "LOWKEY_CREDENTIALS_FILE="+file)
}

// hostCredentials writes a credentials file in a fresh directory with an
// unguessable name under base, both owned by the workers' account.
func (b *Boundary) hostCredentials(base string, content []byte) (dir, file string, err error) {
	if b.cred != nil {
		// The agent account may pass through the box's directory, not
		// list it.
		if err := os.Chmod(base, 0o711); err != nil {
			return "", "", fmt.Errorf("credentials: %w", err)
		}
	}
	dir = filepath.Join(base, "cred-"+rand.Text())
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("credentials: %w", err)
	}
	fail := func(err error) (string, string, error) {
		os.RemoveAll(dir)
		return "", "", fmt.Errorf("credentials: %w", err)
	}
	file = filepath.Join(dir, CredentialsName)
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fail(err)
	}
	_, err = f.Write(content)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fail(err)
	}
	if b.cred != nil {
		for _, p := range []string{file, dir} {
			if err := os.Lchown(p, int(b.cred.Uid), int(b.cred.Gid)); err != nil {
				return fail(err)
			}
		}
	}
	return dir, file, nil
}

// Pipes are the worker's streams (stdin nil unless withStdin: the worker
// reads nothing).
func (w *Worker) Pipes(withStdin bool) (stdin io.WriteCloser, stdout, stderr io.ReadCloser, err error) {
	if w.warm {
		if !withStdin {
			w.stdin.Close()
			w.stdin = nil
		}
		return w.stdin, w.stdout, w.stderr, nil
	}
	if withStdin {
		if stdin, err = w.Cmd.StdinPipe(); err != nil {
			return nil, nil, nil, err
		}
	}
	if stdout, err = w.Cmd.StdoutPipe(); err != nil {
		return nil, nil, nil, err
	}
	if stderr, err = w.Cmd.StderrPipe(); err != nil {
		return nil, nil, nil, err
	}
	return stdin, stdout, stderr, nil
}

// Start starts the worker in its group (a warm one is there already)
// and hands the init its orders.
func (w *Worker) Start() error {
	if w.warm {
		w.order()
		return nil
	}
	start := (*exec.Cmd).Start
	if w.group != nil {
		start = w.group.Start
	}
	err := start(w.Cmd)
	// The child has its own copies.
	if w.ctlR != nil {
		w.ctlR.Close()
	}
	if w.opened != nil {
		w.opened.Close()
	}
	if err != nil {
		if w.ctlW != nil {
			close(w.wrote)
		}
		w.Release()
		return err
	}
	if w.ctlW != nil {
		w.order()
	}
	return nil
}

// order writes the init's orders (more than a pipe holds, with secrets).
func (w *Worker) order() {
	go func() {
		defer close(w.wrote)
		// An init that died unread makes this fail: its stderr says why.
		_, _ = w.ctlW.Write(w.cfg)
	}()
}

// Release lets the init end once its worker has (call it when the
// worker's output has closed: what the worker left behind then goes with
// the init) and removes a credentials file the worker left.
func (w *Worker) Release() {
	w.once.Do(func() {
		if w.ctlW != nil {
			<-w.wrote
			w.ctlW.Close()
		}
		if w.hostDir != "" {
			os.RemoveAll(w.hostDir)
		}
	})
}
