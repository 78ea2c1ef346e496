package hub

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/lowkeyhq/lowkey/errcode"
	"github.com/lowkeyhq/lowkey/sessions/sandbox"
)

// ownDataDir makes the data directory, or checks the one there: a real
// directory of the hub's own account, 0700.
func ownDataDir(dir string) error { return privateDir("data directory", dir) }

// privateDir makes dir, or checks the one there: a real directory of the
// hub's own account, 0700 (made so when it was wider).
func privateDir(what, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok {
		return fmt.Errorf("%s %s is not a directory", what, dir)
	}
	if int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%s %s belongs to uid %d, not to this hub's account (uid %d): run the hub as its owner, or chown it", what, dir, st.Uid, os.Geteuid())
	}
	if fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	return nil
}

// prepareBoundary sets up what separates agents from the hub, and the
// sessions' work directory outside the data directory.
func (h *Hub) prepareBoundary() error {
	hide := []string{h.cfg.DataDir}
	if h.cfg.BackupEvery > 0 {
		// Its archives hold the box's keys, wherever they are kept.
		hide = append(hide, h.cfg.BackupDir)
	}
	if os.Geteuid() != 0 {
		// Groups delegated to the hub's account are writable by it, and so
		// by workers sharing that account: they must not see them.
		hide = append(hide, h.groups.Dirs()...)
	}
	b, err := sandbox.Prepare(sandbox.Config{AgentUser: h.cfg.AgentUser, Hide: hide, InitBin: h.cfg.WorkerBin})
	if err != nil {
		return fmt.Errorf("agent account: %w", err)
	}
	h.boundary = b
	// Nothing else running as the hub's account may trace it or read its
	// memory, environment or open files through /proc. With user
	// namespaces the workers cannot see the hub at all, and the hub must
	// stay dumpable: a child inherits the flag until its exec, and the
	// hub could not write a non-dumpable child's uid_map.
	if b.Mode() != sandbox.ModeUserNS {
		if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
			return fmt.Errorf("making the hub untraceable: %w", err)
		}
	}
	if h.cfg.WorkDir == "" {
		if b.Mode() == sandbox.ModeAgentUser {
			// Not in the agent's home: each path to a session's files must
			// be one the agent cannot re-point (the hub, as root, reads and
			// writes there: pages, output logs).
			h.cfg.WorkDir = "/var/lib/lowkey-work"
		} else {
			h.cfg.WorkDir = filepath.Clean(h.cfg.DataDir) + "-work"
		}
	}
	data, _ := filepath.Abs(h.cfg.DataDir)
	work, _ := filepath.Abs(h.cfg.WorkDir)
	if work == data || strings.HasPrefix(work, data+string(filepath.Separator)) {
		return fmt.Errorf("the work directory %s is inside the data directory %s: agents must never see the hub's data (pick another --work-dir)", work, data)
	}
	if m := b.Missing(); m != "" {
		h.log.Warn("agents are not fully separated from the box: "+m, "mode", b.Mode())
	} else {
		h.log.Info("agents are separated from the box", "mode", b.Mode(), "account", b.User(), "work", h.cfg.WorkDir)
	}
	return nil
}

// Separation says how this box keeps agents from the hub: the mode, the
// account and what is missing.
func (h *Hub) Separation() (mode, account, missing string) {
	return h.boundary.Mode(), h.boundary.User(), h.boundary.Missing()
}

// listenAdmin opens the admin socket, for the hub's own account and root.
func listenAdmin(sock string) (net.Listener, error) {
	// The store's lock is ours, so a leftover socket is from a hub that died.
	if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	return ln, nil
}

type peerKey struct{}

// peerContext notes who is on the other end of an admin connection, as
// the kernel says (SO_PEERCRED): a file mode can be changed, this cannot.
func peerContext(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ctx
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) { cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) }); err != nil || cerr != nil {
		return ctx
	}
	return context.WithValue(ctx, peerKey{}, cred)
}

// peerChecked admits admin calls from the hub's own account and root only.
func (h *Hub) peerChecked(next http.Handler) http.Handler {
	self := uint32(os.Geteuid())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cred, _ := r.Context().Value(peerKey{}).(*unix.Ucred)
		if cred == nil || (cred.Uid != self && cred.Uid != 0) {
			uid := "unknown"
			if cred != nil {
				uid = strconv.FormatUint(uint64(cred.Uid), 10)
				h.log.Warn("admin socket call refused", "uid", cred.Uid, "pid", cred.Pid)
			}
			fail(w, errcode.NotTheBox,
				"the admin socket answers only the hub's own account (uid "+strconv.FormatUint(uint64(self), 10)+") and root, not uid "+uid+": run this as the account that runs the hub")
			return
		}
		next.ServeHTTP(w, r)
	})
}
