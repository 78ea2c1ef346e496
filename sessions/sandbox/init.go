package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// Init is the first process of a worker's namespaces ("InitBin
// worker-init"): it covers what the worker must not see, mounts a /proc
// that shows only the worker's own processes, writes the credentials
// file on a tmpfs of its own, then starts the worker as the agent
// account, passes signals on and reaps. It exits with the worker's
// status (128+N for a signal) once the box says the worker's output has
// closed; what is left in the namespace then ends with it.
func Init(stderr io.Writer) int {
	ctl := os.NewFile(3, "control")
	if ctl == nil {
		fmt.Fprintln(stderr, "worker-init: the box starts this for its workers; it is not for people")
		return 2
	}
	var c initConfig
	if err := json.NewDecoder(ctl).Decode(&c); err != nil {
		fmt.Fprintln(stderr, "worker-init: no orders from the box:", err)
		return 126
	}
	if err := c.setUp(); err != nil {
		fmt.Fprintln(stderr, "lowkey: the worker's boundary could not be set up:", err)
		return 126
	}
	cmd := exec.Command(c.Argv[0], c.Argv[1:]...)
	cmd.Env, cmd.Dir = c.Env, c.Dir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	if c.SetUID {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(c.UID), Gid: uint32(c.GID), Groups: c.Groups}
		if c.OwnBinary {
			// Opened by the box's account, run as the agent's.
			f, err := os.Open(c.Argv[0])
			if err != nil {
				fmt.Fprintln(stderr, "lowkey: could not open the agent program:", err)
				return 127
			}
			cmd.Path, cmd.ExtraFiles = "/proc/self/fd/3", []*os.File{f}
		}
	}
	// Nothing the init was given to mount or to switch accounts passes on
	// to the worker: capabilities are a thread's, so the thread that drops
	// them is the one that starts the worker.
	runtime.LockOSThread()
	if err := dropInherited(); err != nil {
		fmt.Fprintln(stderr, "lowkey: could not drop the init's capabilities:", err)
		return 126
	}
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(stderr, "lowkey: could not start the agent:", err)
		return 127
	}
	// The init holds none of the worker's streams, so the box sees them
	// close when the worker and what it left behind are done with them.
	if null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0); err == nil {
		for fd := 0; fd <= 2; fd++ {
			_ = unix.Dup2(int(null.Fd()), fd)
		}
		null.Close()
	}
	pid := cmd.Process.Pid
	released := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, ctl)
		close(released)
	}()
	go func() {
		for s := range signals {
			_ = syscall.Kill(pid, s.(syscall.Signal))
		}
	}()
	status := make(chan int, 1)
	go reap(pid, status)
	code := <-status
	<-released
	return code
}

// reap waits for every process that ends up as the init's child, and
// reports the worker's own status.
func reap(worker int, status chan<- int) {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, 0, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			// No children left: the worker was reaped already, or its
			// status is lost; either way the worker is gone.
			if errors.Is(err, syscall.ECHILD) {
				select {
				case status <- 127:
				default:
				}
				return
			}
			continue
		}
		if pid == worker {
			code := ws.ExitStatus()
			if ws.Signaled() {
				code = 128 + int(ws.Signal())
			}
			status <- code
		}
	}
}

// setUp makes the worker's view: the hub's directories covered over, a
// /proc of the worker's own PID namespace, and the credentials file.
func (c *initConfig) setUp() error {
	if len(c.Argv) == 0 {
		return errors.New("no program to run")
	}
	// Nothing mounted here reaches the box's own view.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	for _, dir := range c.Hide {
		if _, err := os.Stat(dir); err != nil {
			continue
		}
		if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=4k,mode=000"); err != nil {
			return fmt.Errorf("covering %s: %w", dir, err)
		}
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mounting /proc: %w", err)
	}
	if c.Cred == nil {
		return nil
	}
	opts := fmt.Sprintf("size=1m,mode=0700,uid=%d,gid=%d", c.UID, c.GID)
	if err := unix.Mount("tmpfs", c.CredDir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, opts); err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	if filepath.Dir(c.CredFile) != filepath.Clean(c.CredDir) {
		return errors.New("credentials: the file is not in its directory")
	}
	f, err := os.OpenFile(c.CredFile, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	_, err = f.Write(c.Cred)
	if err == nil {
		err = f.Chown(c.UID, c.GID)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	return nil
}

// dropInherited empties this thread's ambient and inheritable
// capabilities: a program it starts gets none of them, even one whose
// file asks to inherit some.
func dropInherited() error {
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return err
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return err
	}
	data[0].Inheritable, data[1].Inheritable = 0, 0
	return unix.Capset(&hdr, &data[0])
}
