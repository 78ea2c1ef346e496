package sessions

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/lowkeyhq/lowkey/sessions/sandbox"
)

// publishDir publishes a directory of a session's files. The files are
// read by the agent's own account, in its own view of the box (a tar run
// as a worker), never by the hub: a directory the agent controls cannot
// lead the hub to read what only the hub may. The box checks the archive
// as it checks any upload.
func (r *Runtime) publishDir(id, dir string) (any, error) {
	ls, err := r.session(id)
	if err != nil {
		return nil, err
	}
	group, err := r.groupOf(ls)
	if err != nil {
		return nil, err
	}
	rel := strings.TrimPrefix(filepath.Clean("/"+dir), "/")
	if rel == "" {
		rel = "."
	}
	tar := lookPath(workerPath, "tar")
	if tar == "" {
		return nil, errors.New("publishing needs tar on the box: install it")
	}
	g, err := group.Child("publish-" + randomID())
	if err != nil {
		return nil, fmt.Errorf("publish group: %w", err)
	}
	defer func() {
		if err := g.Delete(); err != nil {
			r.log.Warn("could not remove a publish group", "session", id, "err", err)
		}
	}()
	work := r.workDir(id)
	w, err := r.cfg.Boundary.Command(sandbox.Spec{
		Argv: []string{tar, "-C", filepath.Join(work, rel), "-cf", "-", "."}, Dir: work,
		Env: r.workerEnv(work, "LOWKEY_SESSION="+id),
	}, g)
	if err != nil {
		return nil, err
	}
	_, stdout, stderr, err := w.Pipes(false)
	if err != nil {
		w.Release()
		return nil, err
	}
	if err := w.Start(); err != nil {
		return nil, fmt.Errorf("could not read the directory: %w", err)
	}
	var errOut bytes.Buffer
	errDone := make(chan struct{})
	go func() {
		defer close(errDone)
		_, _ = io.Copy(&errOut, io.LimitReader(stderr, 4<<10))
		_, _ = io.Copy(io.Discard, stderr)
	}()
	pg, perr := r.cfg.Pages.Publish(id, stdout)
	if perr != nil {
		// A refused archive is not read to its end: the reader stops.
		if err := g.Kill(); err != nil {
			r.log.Warn("could not stop a publish", "session", id, "err", err)
		}
	}
	_, _ = io.Copy(io.Discard, stdout)
	<-errDone
	w.Release()
	werr := w.Cmd.Wait()
	switch {
	case perr == nil && werr != nil:
		return nil, fmt.Errorf("%s could not be read whole: %s", dir, strings.TrimSpace(errOut.String()))
	case perr != nil && werr != nil && errOut.Len() > 0:
		return nil, fmt.Errorf("%s could not be read: %s", dir, strings.TrimSpace(errOut.String()))
	}
	return pg, perr
}
