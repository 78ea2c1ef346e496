package devicectl

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lowkeyhq/lowkey/errcode"
	"github.com/lowkeyhq/lowkey/pairing"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type pair struct {
	hub, comp *Conn
	ta, tb    Transport
}

func (p *pair) close() {
	p.hub.Close()
	p.comp.Close()
	p.ta.(io.Closer).Close()
	p.hub.Wait()
	p.comp.Wait()
}

// connect links two fresh identities over loopback through a signed
// in-memory signaling pipe, the way the hub and a companion do.
func connect(t testing.TB, handler Handler, mutate func(*PeerConfig, *PeerConfig)) (*pair, error) {
	t.Helper()
	hubID, _ := pairing.NewIdentity()
	compID, _ := pairing.NewIdentity()
	ta, tb := Pipe()
	binding := pairing.NewNonce()
	hs := &SignedSignaler{T: ta, Key: hubID.Key, PeerKey: compID.Public(), Role: "hub", PeerRole: "companion", Binding: binding}
	cs := &SignedSignaler{T: tb, Key: compID.Key, PeerKey: hubID.Public(), Role: "companion", PeerRole: "hub", Binding: binding}
	hc := PeerConfig{Identity: hubID, PeerFingerprint: compID.Fingerprint(), LoopbackOnly: true}
	cc := PeerConfig{Identity: compID, PeerFingerprint: hubID.Fingerprint(), LoopbackOnly: true, Link: LinkConfig{Handler: handler}}
	if mutate != nil {
		mutate(&hc, &cc)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var (
		comp    *Conn
		compErr error
		wg      sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		comp, compErr = Answer(ctx, cc, cs)
		if compErr != nil {
			ta.(io.Closer).Close()
		}
	}()
	hub, err := Offer(ctx, hc, hs)
	if err != nil {
		// As the hub does: a failed set-up closes the signaling too.
		ta.(io.Closer).Close()
	}
	wg.Wait()
	p := &pair{hub: hub, comp: comp, ta: ta, tb: tb}
	if err != nil || compErr != nil {
		if hub != nil {
			hub.Close()
		}
		if comp != nil {
			comp.Close()
		}
		ta.(io.Closer).Close()
		if hub != nil {
			hub.Wait()
		}
		if comp != nil {
			comp.Wait()
		}
		return nil, errors.Join(err, compErr)
	}
	return p, nil
}

func echoHandler(ctx context.Context, req *Request) (*Result, error) {
	switch req.Action {
	case "echo":
		var a struct{ Bytes int }
		_ = json.Unmarshal(req.Args, &a)
		blob := make([]byte, a.Bytes)
		for i := range blob {
			blob[i] = byte(i * 7)
		}
		return &Result{JSON: json.RawMessage(`{"ok":true}`), Blob: blob}, nil
	case "block":
		<-ctx.Done()
		return nil, ctx.Err()
	case "deadline":
		dl, ok := ctx.Deadline()
		b, _ := json.Marshal(map[string]any{"has": ok, "left_ms": time.Until(dl).Milliseconds()})
		return &Result{JSON: b}, nil
	}
	return nil, &errcode.Error{Code: errcode.UnknownAction, Message: "no such action " + req.Action}
}

func TestLinkEchoSizes(t *testing.T) {
	p, err := connect(t, echoHandler, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	for _, n := range []int{0, 100, inlineMax, inlineMax + 1, 1 << 20, 5 << 20} {
		res, err := p.hub.Link.Call(context.Background(), "echo", "", map[string]int{"bytes": n})
		if err != nil {
			t.Fatalf("echo %d: %v", n, err)
		}
		if len(res.Blob) != n {
			t.Fatalf("echo %d: got %d bytes", n, len(res.Blob))
		}
		for i := range res.Blob {
			if res.Blob[i] != byte(i*7) {
				t.Fatalf("echo %d: byte %d differs", n, i)
			}
		}
	}
}

func TestLinkUnknownActionCarriesError(t *testing.T) {
	p, err := connect(t, echoHandler, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	_, err = p.hub.Link.Call(context.Background(), "nope", "", nil)
	var ae *errcode.Error
	if !errors.As(err, &ae) || ae.Code != "unknown_action" {
		t.Fatalf("got %v, want unknown_action", err)
	}
}

func TestLinkCancelReachesTheComputer(t *testing.T) {
	started := make(chan struct{})
	stopped := make(chan error, 1)
	h := func(ctx context.Context, req *Request) (*Result, error) {
		close(started)
		<-ctx.Done()
		stopped <- ctx.Err()
		return nil, ctx.Err()
	}
	p, err := connect(t, h, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := p.hub.Link.Call(ctx, "block", "", nil)
		errc <- err
	}()
	<-started
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("call returned %v", err)
	}
	select {
	case err := <-stopped:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("handler saw %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the action on the computer was not cancelled")
	}
}

func TestLinkDeadlineTravels(t *testing.T) {
	p, err := connect(t, echoHandler, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	res, err := p.hub.Link.Call(ctx, "deadline", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Has    bool
		LeftMS int64 `json:"left_ms"`
	}
	_ = json.Unmarshal(res.JSON, &got)
	if !got.Has || got.LeftMS <= 0 || got.LeftMS > 3000 {
		t.Fatalf("computer saw deadline %+v", got)
	}
	short, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	if _, err := p.hub.Link.Call(short, "block", "", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("blocked call: %v", err)
	}
}

func TestSmallCallDuringBulk(t *testing.T) {
	p, err := connect(t, echoHandler, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	bulkDone := make(chan error, 1)
	go func() {
		_, err := p.hub.Link.Call(context.Background(), "echo", "", map[string]int{"bytes": 20 << 20})
		bulkDone <- err
	}()
	time.Sleep(20 * time.Millisecond)
	// The small call must finish while the large one is still moving.
	if _, err := p.hub.Link.Call(context.Background(), "echo", "", map[string]int{"bytes": 100}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-bulkDone:
		t.Logf("bulk finished first (%v): the machine was fast; ordering not observed", err)
	default:
	}
	if err := <-bulkDone; err != nil {
		t.Fatal(err)
	}
}

// Results just over the inline size, at the small pace (as while small
// calls are answered during a transfer), then larger ones at the full
// pace: the drain threshold follows the window both ways, so none of them
// waits for the writer's fallback timer.
func TestMediumResultsAfterSmallCallsDoNotStall(t *testing.T) {
	// The writer's re-check timer is put out of reach: every result must
	// be carried by the drain signal alone, however busy the machine. A
	// lost signal leaves a result stuck, and the call never returns.
	p, err := connect(t, echoHandler, func(hc, cc *PeerConfig) { cc.Link.DrainRecheck = time.Hour })
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	const rounds = 20
	for range rounds {
		for _, n := range []int{33 << 10, 200 << 10} {
			if n < 64<<10 {
				p.comp.Link.lastSmall.Store(time.Now().UnixNano())
			} else {
				p.comp.Link.lastSmall.Store(0)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			_, err := p.hub.Link.Call(ctx, "echo", "", map[string]int{"bytes": n})
			cancel()
			if err != nil {
				t.Fatalf("a %d-byte result: %v (it waited for a drain signal that never came)", n, err)
			}
		}
	}
}

func TestLinkRefusesWrongPinnedCertificate(t *testing.T) {
	other, _ := pairing.NewIdentity()
	_, err := connect(t, echoHandler, func(hc, cc *PeerConfig) { hc.PeerFingerprint = other.Fingerprint() })
	if !errors.Is(err, ErrFingerprint) {
		t.Fatalf("got %v, want ErrFingerprint", err)
	}
}

func TestLinkCloseFailsPendingCalls(t *testing.T) {
	p, err := connect(t, echoHandler, nil)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := p.hub.Link.Call(context.Background(), "block", "", nil)
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	p.comp.Close()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("call succeeded on a closed link")
		}
	case <-time.After(15 * time.Second):
		t.Fatal("pending call not released after the peer went away")
	}
	p.close()
}

func TestPing(t *testing.T) {
	p, err := connect(t, echoHandler, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	d, err := p.hub.Link.Ping(context.Background())
	if err != nil || d <= 0 {
		t.Fatalf("ping %v %v", d, err)
	}
}

func TestResultHashChecked(t *testing.T) {
	// A chunk that differs from what the header announced is refused.
	l := &Link{calls: map[uint64]*call{}}
	c := &call{done: make(chan struct{})}
	l.calls[1] = c
	blob := make([]byte, 40000)
	_, _ = rand.Read(blob)
	h := encodeResponse(1, &responseHeader{blobSize: uint64(len(blob)), chunked: true})
	f, err := decodeFrame(h)
	if err != nil {
		t.Fatal(err)
	}
	l.onResponse(f)
	for i, part := range [][]byte{blob[:32768], blob[32768:]} {
		f, _ := decodeFrame(encodeChunk(1, uint32(i), part))
		l.onChunk(f)
	}
	wrong := make([]byte, 8)
	f, _ = decodeFrame(encodeSimple(frameEnd, 1, wrong))
	l.onEnd(f)
	<-c.done
	if !errors.Is(c.err, ErrBadFrame) || !bytes.Contains([]byte(c.err.Error()), []byte("hash")) {
		t.Fatalf("got %v", c.err)
	}
}

// Chunks vary in size (small while small calls are being answered) and
// may reach the reader before their header, which travels on the other
// channel: the result is whole either way.
func TestResultFromChunksOfMixedSizesInAnyOrderWithItsHeader(t *testing.T) {
	blob := make([]byte, 150000)
	_, _ = rand.Read(blob)
	sum := binary.BigEndian.AppendUint64(nil, checksum(blob))
	cuts := []int{0, 8 << 10, 68 << 10, 76 << 10, 136 << 10, len(blob)}
	for _, headerFirst := range []bool{true, false} {
		l := &Link{calls: map[uint64]*call{}}
		c := &call{done: make(chan struct{})}
		l.calls[7] = c
		header := func() {
			f, err := decodeFrame(encodeResponse(7, &responseHeader{json: []byte(`{}`), blobSize: uint64(len(blob)), chunked: true}))
			if err != nil {
				t.Fatal(err)
			}
			l.receive(encodeResponse(7, &f.resp))
		}
		if headerFirst {
			header()
		}
		for i := 1; i < len(cuts); i++ {
			l.receive(encodeChunk(7, uint32(i-1), blob[cuts[i-1]:cuts[i]]))
			if i == 2 && !headerFirst {
				header()
			}
		}
		l.receive(encodeSimple(frameEnd, 7, sum))
		<-c.done
		if c.err != nil || !bytes.Equal(c.result.Blob, blob) {
			t.Fatalf("header first %v: err %v, %d bytes back", headerFirst, c.err, len(c.result.Blob))
		}
	}
}

// Right after a small answer, bulk moves in small chunks with little in
// flight; a moment later, in large ones again.
func TestBulkPaceFollowsSmallCalls(t *testing.T) {
	l := &Link{cfg: LinkConfig{ChunkSize: DefaultChunkSize, HighWater: 128 << 10}}
	if w, c := l.pace(); w != 128<<10 || c != DefaultChunkSize {
		t.Fatalf("idle link: window %d chunk %d", w, c)
	}
	l.lastSmall.Store(time.Now().UnixNano())
	if w, c := l.pace(); w != smallWindow || c != smallChunk {
		t.Fatalf("after a small answer: window %d chunk %d", w, c)
	}
	l.lastSmall.Store(time.Now().Add(-time.Second).UnixNano())
	if w, c := l.pace(); w != 128<<10 || c != DefaultChunkSize {
		t.Fatalf("a second later: window %d chunk %d", w, c)
	}
}

// Calls one after another, with no transfer moving, keep the full pace:
// a screenshot right after a click is not cut into small chunks.
func TestSequentialCallsKeepFullPace(t *testing.T) {
	p, err := connect(t, echoHandler, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	for _, n := range []int{100, 200 << 10, 100} {
		if _, err := p.hub.Link.Call(context.Background(), "echo", "", map[string]int{"bytes": n}); err != nil {
			t.Fatal(err)
		}
	}
	if w, c := p.comp.Link.pace(); w != p.comp.Link.cfg.HighWater || c != p.comp.Link.cfg.ChunkSize {
		t.Fatalf("after sequential calls: window %d chunk %d", w, c)
	}
	// With a transfer moving, a small answer slows it down.
	done := make(chan error, 1)
	go func() {
		_, err := p.hub.Link.Call(context.Background(), "echo", "", map[string]int{"bytes": 20 << 20})
		done <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := p.hub.Link.Call(context.Background(), "echo", "", map[string]int{"bytes": 100}); err != nil {
			t.Fatal(err)
		}
		if w, _ := p.comp.Link.pace(); w == smallWindow {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("small calls during a transfer never slowed it")
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
