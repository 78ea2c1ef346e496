package devicectl

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/lowkeyhq/lowkey/pairing"
)

type sigPair struct {
	hub, comp *SignedSignaler
	hubT      Transport // raw end on the hub's side, for forging
}

func signalers(t *testing.T) sigPair {
	hub, _ := pairing.NewIdentity()
	comp, _ := pairing.NewIdentity()
	ta, tb := Pipe()
	t.Cleanup(func() { ta.(interface{ Close() error }).Close() })
	binding := pairing.NewNonce()
	return sigPair{
		hub:  &SignedSignaler{T: ta, Key: hub.Key, PeerKey: comp.Public(), Role: "hub", PeerRole: "companion", Binding: binding},
		comp: &SignedSignaler{T: tb, Key: comp.Key, PeerKey: hub.Public(), Role: "companion", PeerRole: "hub", Binding: binding},
		hubT: ta,
	}
}

func forge(t *testing.T, key ed25519.PrivateKey, s *SignedSignaler, role string, seq uint64, sig Signal) []byte {
	body, _ := json.Marshal(sig)
	b, err := json.Marshal(envelope{Seq: seq, Body: body, Sig: ed25519.Sign(key, s.signed(role, seq, body))})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSignalingAcceptsGenuine(t *testing.T) {
	p := signalers(t)
	if err := p.hub.Send(context.Background(), Signal{Type: "offer", SDP: "v=0 genuine"}); err != nil {
		t.Fatal(err)
	}
	if s, err := p.comp.Recv(context.Background()); err != nil || s.SDP != "v=0 genuine" {
		t.Fatalf("%+v %v", s, err)
	}
}

func TestSignalingRefusesTampered(t *testing.T) {
	p := signalers(t)
	genuine := forge(t, p.hub.Key, p.hub, "hub", 1, Signal{Type: "offer", SDP: "v=0 genuine"})
	var e envelope
	_ = json.Unmarshal(genuine, &e)
	e.Body, _ = json.Marshal(Signal{Type: "offer", SDP: "v=0 swapped"})
	tampered, _ := json.Marshal(e)
	p.hubT.Send(context.Background(), tampered)
	if _, err := p.comp.Recv(context.Background()); !errors.Is(err, ErrBadSignal) {
		t.Fatalf("tampered offer: %v", err)
	}
}

func TestSignalingRefusesReplay(t *testing.T) {
	p := signalers(t)
	msg := forge(t, p.hub.Key, p.hub, "hub", 1, Signal{Type: "candidate"})
	p.hubT.Send(context.Background(), msg)
	if _, err := p.comp.Recv(context.Background()); err != nil {
		t.Fatal(err)
	}
	p.hubT.Send(context.Background(), msg)
	if _, err := p.comp.Recv(context.Background()); !errors.Is(err, ErrBadSignal) {
		t.Fatalf("replayed: %v", err)
	}
	// A message from another connection (other nonces) does not verify.
	q := signalers(t)
	q.hub.Key, q.comp.PeerKey = p.hub.Key, p.comp.PeerKey
	q.hubT.Send(context.Background(), forge(t, p.hub.Key, p.hub, "hub", 1, Signal{Type: "candidate"}))
	if _, err := q.comp.Recv(context.Background()); !errors.Is(err, ErrBadSignal) {
		t.Fatalf("from another connection: %v", err)
	}
}

func TestSignalingRefusesReflectionAndStrangers(t *testing.T) {
	p := signalers(t)
	// The companion's own signature, reflected back at it.
	p.hubT.Send(context.Background(), forge(t, p.comp.Key, p.comp, "companion", 1, Signal{Type: "offer", SDP: "v=0"}))
	if _, err := p.comp.Recv(context.Background()); !errors.Is(err, ErrBadSignal) {
		t.Fatalf("reflected: %v", err)
	}
	q := signalers(t)
	stranger, _ := pairing.NewIdentity()
	q.hubT.Send(context.Background(), forge(t, stranger.Key, q.hub, "hub", 1, Signal{Type: "offer", SDP: "v=0"}))
	if _, err := q.comp.Recv(context.Background()); !errors.Is(err, ErrBadSignal) {
		t.Fatalf("stranger: %v", err)
	}
}

// A connection's signaling waits end with the connection, not with its
// transport: a box whose computer went silent mid-set-up (the transport
// still open, nothing arriving) is not left with a reader blocked on it.
func TestAConnsSignalWaitsEndWhenItEndsWithTheTransportStillOpen(t *testing.T) {
	p := signalers(t)
	id, err := pairing.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan *Conn, 1)
	go func() {
		c, _ := Offer(ctx, PeerConfig{Identity: id, PeerFingerprint: "sha-256 00", LoopbackOnly: true}, p.hub)
		got <- c
	}()
	// The offer went out; the computer never answers.
	if s, err := p.comp.Recv(context.Background()); err != nil || s.Type != "offer" {
		t.Fatalf("the offer: %v %v", s, err)
	}
	cancel()
	c := <-got
	if c == nil {
		t.Fatal("no connection to wait for")
	}
	waited := make(chan struct{})
	go func() { c.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(30 * time.Second):
		t.Fatal("the signal reader still waits on the open transport after the connection ended")
	}
}
