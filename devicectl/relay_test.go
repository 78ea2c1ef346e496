package devicectl

import (
	"context"
	"encoding/json"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/turn/v5"
)

// turnServer runs a TURN server on loopback TCP for user:pass; tamper, when
// set, rewrites what the relay passes on to the other side.
func turnServer(t *testing.T, user, pass string, tamper func([]byte) []byte) (url string, relayed *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	relayed = &atomic.Int64{}
	gen := &countingRelay{RelayAddressGeneratorStatic: turn.RelayAddressGeneratorStatic{RelayAddress: net.IPv4(127, 0, 0, 1), Address: "127.0.0.1"}, n: relayed, tamper: tamper}
	key := turn.GenerateAuthKey(user, "test", pass)
	srv, err := turn.NewServer(turn.ServerConfig{
		Realm: "test",
		AuthHandler: func(ra *turn.RequestAttributes) (string, []byte, bool) {
			return ra.Username, key, ra.Username == user
		},
		ListenerConfigs: []turn.ListenerConfig{{Listener: ln, RelayAddressGenerator: gen}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return "turn:" + ln.Addr().String() + "?transport=tcp", relayed
}

// countingRelay counts the packets its relayed addresses carry and may
// rewrite them.
type countingRelay struct {
	turn.RelayAddressGeneratorStatic
	n      *atomic.Int64
	tamper func([]byte) []byte
}

func (g *countingRelay) AllocatePacketConn(c turn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	pc, addr, err := g.RelayAddressGeneratorStatic.AllocatePacketConn(c)
	if err != nil {
		return nil, nil, err
	}
	return &countingConn{PacketConn: pc, g: g}, addr, nil
}

type countingConn struct {
	net.PacketConn
	g *countingRelay
}

func (c *countingConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	c.g.n.Add(1)
	if c.g.tamper != nil {
		p = c.g.tamper(append([]byte(nil), p...))
	}
	return c.PacketConn.WriteTo(p, addr)
}

// relayOnly links with the computer's side on the relay only (its own
// addresses never tried), through url with user:pass.
func relayOnly(url, user, pass string) func(h, c *PeerConfig) {
	return func(h, c *PeerConfig) {
		c.RelayOnly = true
		c.ICEServers = []ICEServer{{URLs: []string{url}, Username: user, Credential: pass}}
	}
}

// A computer that can reach nothing of the box but a TURN server links
// through it; the link says so, and calls and a 5 MiB result go through.
func TestLinkThroughATURNRelay(t *testing.T) {
	url, relayed := turnServer(t, "laptop", "right-password", nil)
	p, err := connect(t, echoHandler, relayOnly(url, "laptop", "right-password"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	if got := p.hub.Path(); got != PathRelayed {
		t.Fatalf("the box says the path is %q, want %q", got, PathRelayed)
	}
	if got := p.comp.Path(); got != PathRelayed {
		t.Fatalf("the computer says the path is %q, want %q", got, PathRelayed)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := p.hub.Link.Call(ctx, "echo", "", json.RawMessage(`{"bytes":5242880}`))
	if err != nil || len(res.Blob) != 5<<20 {
		t.Fatalf("a 5 MiB result through the relay: %v", err)
	}
	if relayed.Load() == 0 {
		t.Fatal("nothing passed through the relay")
	}
}

// The relay's credential is wrong: no relayed address, no link, and the
// set-up says it failed rather than hanging.
func TestLinkWithAWrongRelayCredentialFailsClosed(t *testing.T) {
	url, relayed := turnServer(t, "laptop", "right-password", nil)
	p, err := connect(t, echoHandler, relayOnly(url, "laptop", "wrong-password"))
	if err == nil {
		p.close()
		t.Fatal("a link came up with a wrong relay credential")
	}
	if relayed.Load() != 0 {
		t.Fatalf("the relay carried %d packets for a wrong credential", relayed.Load())
	}
}

// A relay that rewrites what it carries (here the DTLS records, after ICE
// got through): the handshake fails, no link, no call.
func TestLinkThroughARelayThatRewritesPacketsFailsClosed(t *testing.T) {
	tampered := atomic.Int64{}
	url, _ := turnServer(t, "laptop", "right-password", func(b []byte) []byte {
		if len(b) > 13 && b[0] >= 20 && b[0] <= 63 { // a DTLS record
			b[len(b)-1] ^= 0xff
			tampered.Add(1)
		}
		return b
	})
	p, err := connect(t, echoHandler, relayOnly(url, "laptop", "right-password"))
	if err == nil {
		p.close()
		t.Fatal("a link came up through a relay that rewrites its packets")
	}
	if tampered.Load() == 0 {
		t.Fatalf("the relay rewrote nothing (the set-up failed before DTLS: %v)", err)
	}
	t.Logf("set-up: %v", err)
}

// An offer naming relays the computer should not use is refused whole.
func TestOfferWithMalformedRelaysIsRefused(t *testing.T) {
	for _, servers := range [][]ICEServer{
		{{URLs: []string{"http://example.test"}}},
		{{URLs: []string{"turn:example.test:3478"}}}, // no credentials
		make([]ICEServer, maxICEServers+1),
	} {
		body, err := json.Marshal(Signal{Type: "offer", SDP: "v=0", ICEServers: servers})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := DecodeSignal(body); err == nil {
			t.Errorf("an offer with relays %+v was taken", servers)
		}
	}
	body, _ := json.Marshal(Signal{Type: "offer", SDP: "v=0", ICEServers: []ICEServer{{URLs: []string{"stun:example.test:3478"}}, {URLs: []string{"turn:example.test:3478?transport=tcp"}, Username: "u", Credential: "p"}}})
	if _, err := DecodeSignal(body); err != nil {
		t.Errorf("an offer with a STUN and a TURN server: %v", err)
	}
}
