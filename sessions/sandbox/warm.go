package sandbox

import (
	"io"
	"os"
	"os/exec"
	"sync"
)

// A worker's init is the box's own program, and a large one starts in
// milliseconds, several times a plain fork/exec. So one init is kept
// started ahead: it has its namespaces and waits for its orders, outside
// any group. A turn or job takes it, places it in its group before it
// has run anything of its own, and only then gives it its orders, so
// everything it starts is born inside the group. Another is started
// meanwhile. When none is ready, or placing fails, the worker starts
// the ordinary way.

// pool holds the init started ahead.
type pool struct {
	mu       sync.Mutex
	ready    *spare
	starting bool
	closed   bool
	wg       sync.WaitGroup
}

// spare is an init waiting for its orders.
type spare struct {
	cmd            *exec.Cmd
	ctlW           *os.File
	stdin          io.WriteCloser
	stdout, stderr io.ReadCloser
}

// warmUp gives the worker the init that is ready, placed in the
// worker's group, and says whether it did (the worker starts cold
// otherwise).
func (b *Boundary) warmUp(w *Worker) bool {
	if w.group == nil {
		return false
	}
	sp := b.take()
	if sp == nil {
		return false
	}
	if err := w.group.Place(sp.cmd.Process.Pid); err != nil {
		sp.discard()
		return false
	}
	w.Cmd, w.ctlW = sp.cmd, sp.ctlW
	w.stdin, w.stdout, w.stderr = sp.stdin, sp.stdout, sp.stderr
	w.warm = true
	return true
}

// take returns the ready init, if there is one, and starts the next.
func (b *Boundary) take() *spare {
	p := &b.pool
	p.mu.Lock()
	defer p.mu.Unlock()
	sp := p.ready
	p.ready = nil
	if !p.starting && !p.closed {
		p.starting = true
		p.wg.Add(1)
		go b.startSpare()
	}
	return sp
}

func (b *Boundary) startSpare() {
	p := &b.pool
	defer p.wg.Done()
	sp, err := b.newSpare()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.starting = false
	if err != nil {
		return
	}
	if p.closed || p.ready != nil {
		sp.discard()
		return
	}
	p.ready = sp
}

func (b *Boundary) newSpare() (*spare, error) {
	cmd, ctlR, ctlW, err := b.initCommand()
	if err != nil {
		return nil, err
	}
	sp := &spare{cmd: cmd, ctlW: ctlW}
	fail := func(err error) (*spare, error) {
		ctlR.Close()
		ctlW.Close()
		return nil, err
	}
	if sp.stdin, err = cmd.StdinPipe(); err != nil {
		return fail(err)
	}
	if sp.stdout, err = cmd.StdoutPipe(); err != nil {
		return fail(err)
	}
	if sp.stderr, err = cmd.StderrPipe(); err != nil {
		return fail(err)
	}
	if err := cmd.Start(); err != nil {
		return fail(err)
	}
	ctlR.Close()
	return sp, nil
}

// discard ends an init that got no orders: it exits on the closed pipe.
func (sp *spare) discard() {
	sp.ctlW.Close()
	sp.stdin.Close()
	_, _ = io.Copy(io.Discard, sp.stdout)
	_, _ = io.Copy(io.Discard, sp.stderr)
	_ = sp.cmd.Wait()
}

// Close ends the init kept ready; workers started after it start cold.
func (b *Boundary) Close() {
	p := &b.pool
	p.mu.Lock()
	p.closed = true
	sp := p.ready
	p.ready = nil
	p.mu.Unlock()
	p.wg.Wait()
	if sp != nil {
		sp.discard()
	}
}
