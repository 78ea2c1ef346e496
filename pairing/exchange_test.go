package pairing

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// memConn is one end of an in-memory pairing connection. A tap, if set,
// sees (and may change) every message this end sends.
type memConn struct {
	in, out chan *Message
	tap     func(*Message) *Message
}

func memPipe() (*memConn, *memConn) {
	a, b := make(chan *Message, 8), make(chan *Message, 8)
	return &memConn{in: a, out: b}, &memConn{in: b, out: a}
}

func (c *memConn) Send(ctx context.Context, m *Message) error {
	cp := *m
	if c.tap != nil {
		if t := c.tap(&cp); t != nil {
			cp = *t
		}
	}
	select {
	case c.out <- &cp:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *memConn) Recv(ctx context.Context) (*Message, error) {
	// A message already sent is read before a cancel, as on a socket.
	select {
	case m := <-c.in:
		return m, nil
	default:
	}
	select {
	case m := <-c.in:
		return m, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type run struct {
	hubPeer, compPeer *Peer
	hubErr, compErr   error
}

func exchange(t *testing.T, w *Window, hub, comp *Identity, code string, tapComp, tapHub func(*Message) *Message) run {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a, b := memPipe()
	a.tap, b.tap = tapComp, tapHub
	var r run
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.hubPeer, r.hubErr = (&Responder{Identity: hub, Name: "box", Window: w}).Serve(ctx, b)
		if r.hubErr != nil {
			cancel()
		}
	}()
	r.compPeer, r.compErr = Pair(ctx, a, comp, code, "laptop", "linux/amd64")
	if r.compErr != nil {
		cancel()
	}
	wg.Wait()
	return r
}

func ids(t *testing.T) (*Identity, *Identity) {
	hub, err := NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	comp, err := NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return hub, comp
}

func TestPairingPinsBothSides(t *testing.T) {
	hub, comp := ids(t)
	w := NewWindow(0, nil)
	code, _, err := w.Open(0, true)
	if err != nil {
		t.Fatal(err)
	}
	r := exchange(t, w, hub, comp, FormatCode(code), nil, nil)
	if r.hubErr != nil || r.compErr != nil {
		t.Fatalf("hub: %v, companion: %v", r.hubErr, r.compErr)
	}
	if r.hubPeer.ID != comp.ID() || !SameFingerprint(r.hubPeer.Fingerprint, comp.Fingerprint()) || r.hubPeer.Name != "laptop" {
		t.Fatalf("hub pinned %+v", r.hubPeer)
	}
	if r.compPeer.ID != hub.ID() || !SameFingerprint(r.compPeer.Fingerprint, hub.Fingerprint()) || r.compPeer.Name != "box" {
		t.Fatalf("companion pinned %+v", r.compPeer)
	}
	// One code pairs one computer.
	r = exchange(t, w, hub, comp, code, nil, nil)
	if !errors.Is(r.compErr, ErrNoWindow) {
		t.Fatalf("second use of a code: %v", r.compErr)
	}
}

func TestWrongCodeFailsOnBothSidesAndCounts(t *testing.T) {
	hub, comp := ids(t)
	w := NewWindow(0, nil)
	code, _, _ := w.Open(0, true)
	wrong := []byte(code)
	wrong[7] = '0' + (wrong[7]-'0'+1)%10
	r := exchange(t, w, hub, comp, string(wrong), nil, nil)
	if !errors.Is(r.compErr, ErrWrongCode) || !errors.Is(r.hubErr, ErrWrongCode) {
		t.Fatalf("companion: %v, hub: %v", r.compErr, r.hubErr)
	}
	if _, _, fails, total, _ := w.State(); fails != 1 || total != 1 {
		t.Fatalf("failures %d/%d, want 1/1", fails, total)
	}
	// The right code still works in the same window.
	r = exchange(t, w, hub, comp, code, nil, nil)
	if r.compErr != nil || r.hubErr != nil {
		t.Fatalf("right code after a wrong one: %v / %v", r.compErr, r.hubErr)
	}
}

func TestExpiredCode(t *testing.T) {
	hub, comp := ids(t)
	w := NewWindow(0, nil)
	code, _, _ := w.Open(0, true)
	w.now = func() time.Time { return time.Now().Add(WindowTTL + time.Second) }
	r := exchange(t, w, hub, comp, code, nil, nil)
	if !errors.Is(r.compErr, ErrExpired) || !errors.Is(r.hubErr, ErrExpired) {
		t.Fatalf("companion: %v, hub: %v", r.compErr, r.hubErr)
	}
}

func TestTwentyFailuresCloseTheWindow(t *testing.T) {
	hub, comp := ids(t)
	w := NewWindow(0, nil)
	code, _, _ := w.Open(0, true)
	bad := "00000001"
	if bad == code {
		bad = "00000002"
	}
	for i := range MaxWindowFailures {
		if r := exchange(t, w, hub, comp, bad, nil, nil); !errors.Is(r.compErr, ErrWrongCode) {
			t.Fatalf("attempt %d: %v", i, r.compErr)
		}
	}
	r := exchange(t, w, hub, comp, code, nil, nil)
	if !errors.Is(r.compErr, ErrClosed) {
		t.Fatalf("right code after %d failures: %v, want the window closed", MaxWindowFailures, r.compErr)
	}
}

func TestHundredFailuresLockUntilReopenedOnTheBox(t *testing.T) {
	var saved int
	w := NewWindow(MaxTotalFailures-1, func(total int, locked bool) { saved = total })
	if _, _, err := w.Open(0, false); err != nil {
		t.Fatal(err)
	}
	a, err := w.Begin()
	if err != nil {
		t.Fatal(err)
	}
	a.Fail()
	if _, _, _, _, locked := w.State(); !locked || saved != MaxTotalFailures {
		t.Fatalf("locked=%v saved=%d", locked, saved)
	}
	if _, err := w.Begin(); !errors.Is(err, ErrLocked) {
		t.Fatalf("begin while locked: %v", err)
	}
	if _, _, err := w.Open(0, false); !errors.Is(err, ErrLocked) {
		t.Fatalf("reopen over the API while locked: %v", err)
	}
	if _, _, err := w.Open(0, true); err != nil {
		t.Fatalf("reopen on the box: %v", err)
	}
	if _, _, _, total, locked := w.State(); locked || total != 0 {
		t.Fatalf("after reopening: locked=%v total=%d", locked, total)
	}
	// A restarted hub starts locked from the saved count.
	if _, _, _, _, locked := NewWindow(MaxTotalFailures, nil).State(); !locked {
		t.Fatal("saved count did not lock a new window")
	}
}

func TestOneExchangeAtATime(t *testing.T) {
	w := NewWindow(0, nil)
	w.Open(0, true)
	a, err := w.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Begin(); !errors.Is(err, ErrBusy) {
		t.Fatalf("second exchange: %v", err)
	}
	a.Abandon()
	if _, _, fails, _, _ := w.State(); fails != 0 {
		t.Fatal("an abandoned exchange counted as a guess")
	}
	if _, err := w.Begin(); err != nil {
		t.Fatalf("after abandon: %v", err)
	}
}

func TestReplayedHandshakeFails(t *testing.T) {
	hub, comp := ids(t)
	w := NewWindow(0, nil)
	code, _, _ := w.Open(0, true)
	var recorded []*Message
	rec := func(m *Message) *Message { recorded = append(recorded, m); return nil }
	if r := exchange(t, w, hub, comp, code, rec, nil); r.compErr != nil {
		t.Fatal(r.compErr)
	}
	// An eavesdropper replays the companion's messages to a new window
	// that happens to have the same code: the confirmation cannot match
	// the box's fresh CPace share.
	w2 := NewWindow(0, nil)
	w2.Open(0, true)
	w2.code = code
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a, b := memPipe()
	errc := make(chan error, 1)
	go func() {
		_, err := (&Responder{Identity: hub, Window: w2}).Serve(ctx, b)
		errc <- err
	}()
	for _, m := range recorded {
		if err := a.Send(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	go func() {
		for {
			if _, err := a.Recv(ctx); err != nil {
				return
			}
		}
	}()
	if err := <-errc; !errors.Is(err, ErrWrongCode) {
		t.Fatalf("replay: %v, want ErrWrongCode", err)
	}
	if _, _, fails, _, _ := w2.State(); fails != 1 {
		t.Fatalf("replay counted %d failures, want 1", fails)
	}
}

func TestRelaySwappingFingerprintsFails(t *testing.T) {
	for _, side := range []string{"companion", "hub"} {
		t.Run(side, func(t *testing.T) {
			hub, comp := ids(t)
			mitm, _ := NewIdentity()
			w := NewWindow(0, nil)
			code, _, _ := w.Open(0, true)
			swap := func(m *Message) *Message {
				if m.Type == "hello" {
					m.Fingerprint = mitm.Fingerprint()
				}
				return m
			}
			var r run
			if side == "companion" {
				r = exchange(t, w, hub, comp, code, swap, nil)
			} else {
				r = exchange(t, w, hub, comp, code, nil, swap)
			}
			if r.compErr == nil && r.hubErr == nil {
				t.Fatal("pairing succeeded with a swapped fingerprint")
			}
			if r.compPeer != nil && r.hubPeer != nil {
				t.Fatal("both sides pinned keys")
			}
		})
	}
}

func TestCodes(t *testing.T) {
	for _, c := range []string{"00000000", "12345678", "87654321", "11112222", "12121212", "90123456"} {
		if !TrivialCode(c) {
			t.Errorf("%s not seen as trivial", c)
		}
	}
	for range 1000 {
		c, err := NewCode()
		if err != nil || len(c) != 8 || TrivialCode(c) {
			t.Fatalf("NewCode gave %q, %v", c, err)
		}
	}
	for in, want := range map[string]string{"1234-5679": "12345679", "1234 5679": "12345679", "12345679": "12345679"} {
		if got, err := NormalizeCode(in); err != nil || got != want {
			t.Errorf("NormalizeCode(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "1234", "1234-567a", "123456789"} {
		if _, err := NormalizeCode(bad); err == nil {
			t.Errorf("NormalizeCode(%q) accepted", bad)
		}
	}
}
