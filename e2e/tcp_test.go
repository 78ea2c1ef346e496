package e2e

import (
	"bytes"
	"os/exec"
	"regexp"
	"testing"
	"time"

	"github.com/lowkeyhq/lowkey/hub"
	"github.com/lowkeyhq/lowkey/internal/admin"
)

// nft applies an nftables ruleset inside a namespace.
func nft(t *testing.T, ns, rules string) {
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		t.Fatal("this test needs nft (nftables) to drop UDP in its namespace")
	}
	cmd := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = bytes.NewBufferString(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft in %s: %v\n%s", ns, err, out)
	}
}

// A network that drops every UDP packet (a hotel's, a café's): the
// computer that can reach the box's web address links over TCP to that
// same port, calls and a 5 MiB result work, and the box says how.
func TestLinkOverTCPWhenUDPIsDropped(t *testing.T) {
	l := newLAN(t)
	nft(t, l.laptop, `table inet nofw {
		chain out { type filter hook output priority 0; policy accept; meta l4proto udp drop; }
		chain in { type filter hook input priority 0; policy accept; meta l4proto udp drop; }
	}`)
	data := t.TempDir()
	b := startBox(t, l.box, data, boxIP+":7780", "--no-mdns")
	code := b.pairCode(t)
	state := t.TempDir()
	mustRun(t, l.laptop, "lowkey-companion", "pair", "--hub", boxIP+":7780", "--code", code, "--state", state, "--name", "hotel-laptop")
	ds := b.devices(t)
	if len(ds) != 1 {
		t.Fatalf("devices: %+v", ds)
	}
	id := ds[0].ID
	start(t, l.laptop, "lowkey-companion", "run", "--state", state, "--no-mdns", "--headless")
	b.waitOnline(t, id, 30*time.Second)
	out := mustRun(t, "", "lowkey", "devices", "--data", data)
	if !regexp.MustCompile(`hotel-laptop\s+yes\s+[\d.]+ ms\s+direct \(tcp\)`).MatchString(out) {
		t.Fatalf("devices does not say the link goes over TCP:\n%s", out)
	}
	adm := admin.New(hub.SocketPath(data))
	var sess struct{ ID string }
	if err := adm.Do("POST", "/api/v1/sessions", map[string]string{"title": "tcp"}, &sess); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{16, 5 << 20} {
		var res struct {
			DataBytes int `json:"data_bytes"`
		}
		if err := adm.Do("POST", "/api/v1/sessions/"+sess.ID+"/devices/"+id+"/actions", map[string]any{"action": "sys.echo", "args": map[string]int{"bytes": n}, "timeout_ms": 60000}, &res); err != nil || res.DataBytes != n {
			t.Fatalf("a %d-byte echo over TCP: %v (%d bytes)", n, err, res.DataBytes)
		}
	}
}
