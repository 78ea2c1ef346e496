package hub

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"

	"github.com/lowkeyhq/lowkey/devicectl"
)

// turnClient allocates on the box's relay, over TCP to its web port.
func turnClient(t *testing.T, addr string, cred *devicectl.RelayCredential) (*turn.Client, net.PacketConn, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: addr, TURNServerAddr: addr, Conn: turn.NewSTUNConn(c),
		Username: cred.Username, Password: cred.Credential, Realm: turnRealm, RTO: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Listen(); err != nil {
		t.Fatal(err)
	}
	relayed, err := cl.Allocate()
	if err != nil {
		cl.Close()
		c.Close()
		return nil, nil, err
	}
	t.Cleanup(func() { relayed.Close(); cl.Close(); c.Close() })
	return cl, relayed, nil
}

// The box's relay answers on its web port, to a credential minted for a
// link only, while that link lasts; it relays to the box itself and to
// nothing else, so a paired computer cannot use it to reach the LAN.
func TestTheBoxsRelay(t *testing.T) {
	h, err := Start(Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", PagesListen: "", NoMDNS: true, LoopbackICE: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	addr := h.ln.Addr().String()
	cred, end, err := h.relay.mint("laptop-id")
	if err != nil {
		t.Fatal(err)
	}

	cl, relayed, err := turnClient(t, addr, cred)
	if err != nil {
		t.Fatalf("allocate with the link's credential: %v", err)
	}
	if ip := relayed.LocalAddr().(*net.UDPAddr).IP; !ip.IsLoopback() {
		t.Fatalf("the relayed address is %v, not on the box's loopback", ip)
	}
	// To the box itself: relayed both ways.
	box, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer box.Close()
	if _, err := relayed.WriteTo([]byte("through the relay"), box.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if err := box.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, from, err := box.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "through the relay" {
		t.Fatalf("the box did not get the relayed packet: %v %q", err, buf[:n])
	}
	if _, err := box.WriteTo([]byte("back from the box"), from); err != nil {
		t.Fatal(err)
	}
	if err := relayed.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if n, _, err := relayed.ReadFrom(buf); err != nil || string(buf[:n]) != "back from the box" {
		t.Fatalf("the computer did not get the box's answer: %v", err)
	}
	// Anywhere else: refused.
	if err := cl.CreatePermission(&net.UDPAddr{IP: net.IPv4(192, 168, 1, 1), Port: 53}); err == nil {
		t.Fatal("the relay agreed to relay to an address on the LAN")
	}

	// The web app still answers on the same port.
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the web app on the relay's port: %s", resp.Status)
	}

	// A wrong password, and the link's credential after the link ended.
	if _, _, err := turnClient(t, addr, &devicectl.RelayCredential{Username: cred.Username, Credential: "guessed"}); err == nil {
		t.Fatal("the relay allocated for a wrong password")
	}
	end()
	if _, _, err := turnClient(t, addr, cred); err == nil {
		t.Fatal("the relay allocated for the credential of a link that ended")
	}

	// One link's allocations are bounded; a revoked computer's credentials
	// end at once.
	cred2, end2, err := h.relay.mint("laptop-id")
	if err != nil {
		t.Fatal(err)
	}
	defer end2()
	for i := range maxRelayAllocations {
		if _, _, err := turnClient(t, addr, cred2); err != nil {
			t.Fatalf("allocation %d of %d: %v", i+1, maxRelayAllocations, err)
		}
	}
	if _, _, err := turnClient(t, addr, cred2); err == nil {
		t.Fatalf("a link got more than %d relayed addresses", maxRelayAllocations)
	}
	h.relay.forget("laptop-id")
	h.relay.mu.Lock()
	left := len(h.relay.creds)
	h.relay.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d credentials left after the computer was forgotten", left)
	}
}

// The owner's STUN/TURN servers come from a file only they may read, in
// WebRTC's own shape; anything else says what to fix.
func TestLoadICEServers(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := `[{"urls": ["stun:stun.example:3478"]}, {"urls": ["turn:turn.example:3478?transport=tcp"], "username": "box", "credential": "s3cret"}]`
	servers, err := LoadICEServers(write("good.json", good, 0o600))
	if err != nil || len(servers) != 2 || servers[1].Credential != "s3cret" {
		t.Fatalf("a good file: %v %+v", err, servers)
	}
	for _, tc := range []struct {
		name, body string
		mode       os.FileMode
		says       string
	}{
		{"shared.json", good, 0o644, "chmod 600"},
		{"notjson.json", "turn:turn.example", 0o600, `want [{"urls"`},
		{"nocred.json", `[{"urls": ["turn:turn.example:3478"]}]`, 0o600, "needs a username and a credential"},
		{"typo.json", `[{"url": ["stun:stun.example:3478"]}]`, 0o600, `unknown field "url"`},
		{"scheme.json", `[{"urls": ["https://turn.example"]}]`, 0o600, "stun:HOST:PORT"},
	} {
		if _, err := LoadICEServers(write(tc.name, tc.body, tc.mode)); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: %v, want it to say %q", tc.name, err, tc.says)
		}
	}
}

// Connections to the relay (and to ICE) on the web port are bounded: the
// first maxPeerConns are answered, one more is closed at once, and the web
// app still answers beside them.
func TestRelayConnectionsAreBounded(t *testing.T) {
	h, err := Start(Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", NoMDNS: true, LoopbackICE: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	addr := h.ln.Addr().String()
	binding := func() (net.Conn, error) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		msg, err := stun.Build(stun.TransactionID, stun.BindingRequest)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(msg.Raw); err != nil {
			return c, err
		}
		if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 512)
		n, err := c.Read(buf)
		if err == nil && !stun.IsMessage(buf[:n]) {
			err = fmt.Errorf("not a STUN answer: %q", buf[:n])
		}
		return c, err
	}
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := range maxPeerConns {
		c, err := binding()
		if err != nil {
			t.Fatalf("connection %d of %d: %v", i+1, maxPeerConns, err)
		}
		held = append(held, c)
	}
	c, err := binding()
	if err == nil {
		t.Fatalf("connection %d was answered", maxPeerConns+1)
	}
	c.Close()
	// One closes: its place is free again (the box sees it close first).
	held[0].Close()
	for i := 0; ; i++ {
		c, err := binding()
		if err == nil {
			held[0] = c
			break
		}
		c.Close()
		if i == 100 {
			t.Fatal("a freed place was never given again")
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the web app beside them: %s", resp.Status)
	}
}
