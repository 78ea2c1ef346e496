package devicectl

import (
	"context"
	"errors"
	"sync"
)

// Pipe returns two connected in-memory transports: for benchmarks, tests
// and the in-process demo's baseline.
func Pipe() (Transport, Transport) {
	ab, ba := make(chan []byte, 256), make(chan []byte, 256)
	done := make(chan struct{})
	var once sync.Once
	closeFn := func() { once.Do(func() { close(done) }) }
	return &pipeEnd{in: ba, out: ab, done: done, close: closeFn}, &pipeEnd{in: ab, out: ba, done: done, close: closeFn}
}

type pipeEnd struct {
	in, out chan []byte
	done    chan struct{}
	close   func()
}

var errPipeClosed = errors.New("pipe closed")

func (p *pipeEnd) Send(ctx context.Context, b []byte) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-p.done:
		return errPipeClosed
	case p.out <- append([]byte(nil), b...):
		return nil
	}
}

func (p *pipeEnd) Recv(ctx context.Context) ([]byte, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-p.done:
		return nil, errPipeClosed
	case b := <-p.in:
		return b, nil
	}
}

// Close closes both ends.
func (p *pipeEnd) Close() error { p.close(); return nil }
