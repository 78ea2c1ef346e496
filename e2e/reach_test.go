package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lowkeyhq/lowkey/hub"
	"github.com/lowkeyhq/lowkey/internal/admin"
)

// nft applies an nftables ruleset inside a namespace.
func nft(t *testing.T, ns, rules string) {
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		t.Fatal("this test needs nft (nftables) for the NAT and the drops in its namespaces")
	}
	cmd := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = bytes.NewBufferString(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft in %s: %v\n%s", ns, err, out)
	}
}

// The addresses of the NAT tests: the box on its own network behind a
// router, the laptop on another behind the same router, which masquerades
// the laptop and forwards the box's web port on its outside address.
const (
	natBoxIP     = "10.214.1.2"
	natInsideIP  = "10.214.1.1" // the router on the box's side (and coturn)
	natOutsideIP = "10.214.2.1" // the router on the laptop's side: the box's public address
	natLaptopIP  = "10.214.2.2"
)

type natNet struct{ box, router, laptop string }

// newNAT makes three namespaces: box — router — laptop. The box has no
// route to the laptop's network: everything from the laptop reaches it
// masqueraded as the router.
func newNAT(t *testing.T) *natNet {
	t.Helper()
	needNamespaces(t)
	id := os.Getpid() % 100000
	n := &natNet{box: fmt.Sprintf("lk-nbox-%d", id), router: fmt.Sprintf("lk-nrt-%d", id), laptop: fmt.Sprintf("lk-nlap-%d", id)}
	for _, ns := range []string{n.box, n.router, n.laptop} {
		ip(t, "netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
		if out, err := exec.Command("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1").CombinedOutput(); err != nil {
			t.Fatalf("disable IPv6: %v %s", err, out)
		}
		ip(t, "-n", ns, "link", "set", "lo", "up")
	}
	link := func(a, aIf, aIP, b, bIf, bIP string) {
		ip(t, "link", "add", aIf, "type", "veth", "peer", "name", bIf)
		ip(t, "link", "set", aIf, "netns", a)
		ip(t, "link", "set", bIf, "netns", b)
		ip(t, "-n", a, "addr", "add", aIP+"/24", "dev", aIf)
		ip(t, "-n", b, "addr", "add", bIP+"/24", "dev", bIf)
		ip(t, "-n", a, "link", "set", aIf, "up")
		ip(t, "-n", b, "link", "set", bIf, "up")
	}
	link(n.box, fmt.Sprintf("lknb%d", id), natBoxIP, n.router, "rbox", natInsideIP)
	link(n.laptop, fmt.Sprintf("lknl%d", id), natLaptopIP, n.router, "rlap", natOutsideIP)
	ip(t, "-n", n.laptop, "route", "add", "default", "via", natOutsideIP)
	// The laptop knows the box by a name (ip netns exec puts this file
	// over /etc/hosts for the laptop's commands).
	etc := filepath.Join("/etc/netns", n.laptop)
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(etc) })
	if err := os.WriteFile(filepath.Join(etc, "hosts"), []byte("127.0.0.1 localhost\n"+natOutsideIP+" box.example\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ip", "netns", "exec", n.router, "sysctl", "-qw", "net.ipv4.ip_forward=1").CombinedOutput(); err != nil {
		t.Fatalf("forwarding: %v %s", err, out)
	}
	return n
}

// What the router lets through from the laptop, besides the forwarded port.
const (
	passAll      = "accept"                        // a NAT that passes UDP: a direct path exists
	passTCP      = "meta l4proto udp drop; accept" // a network that drops UDP
	passNoneMore = "drop"                          // only the forwarded web port reaches the box
	routerRules  = `flush ruleset
table ip nat {
	chain pre { type nat hook prerouting priority -100; iifname "rlap" ip daddr %[1]s tcp dport 7780 dnat to %[2]s:7780; }
	chain post { type nat hook postrouting priority 100; oifname "rbox" masquerade; }
}
table inet fw {
	chain forward { type filter hook forward priority 0; policy accept;
		iifname "rbox" ct state established,related accept;
		iifname "rlap" ct status dnat accept;
		iifname "rlap" %[3]s;
	}
}`
)

func (n *natNet) pass(t *testing.T, what string) {
	t.Helper()
	// Packets dropped here never make a flow, so a flow that passed before
	// is one the new rules also pass.
	nft(t, n.router, fmt.Sprintf(routerRules, natOutsideIP, natBoxIP, what))
}

// path is what "lowkey devices" says of the computer's link.
func (b *box) path(t *testing.T, name string) string {
	t.Helper()
	out := mustRun(t, "", "lowkey", "devices", "--data", b.data)
	m := regexp.MustCompile(regexp.QuoteMeta(name) + `\s+yes\s+[\d.]+ ms\s+(direct \(tcp\)|direct|relayed)\s`).FindStringSubmatch(out)
	if m == nil {
		return ""
	}
	return m[1]
}

// waitPath waits for the link to go by want.
func (b *box) waitPath(t *testing.T, name, want string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for b.path(t, name) != want {
		if time.Now().After(deadline) {
			t.Fatalf("the link did not go %s within %s:\n%s", want, limit, mustRun(t, "", "lowkey", "devices", "--data", b.data))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// echo asks the computer for n bytes through the box's admin API.
func (b *box) echo(t *testing.T, sess, dev string, n int) error {
	var res struct {
		DataBytes int `json:"data_bytes"`
	}
	err := admin.New(hub.SocketPath(b.data)).Do("POST", "/api/v1/sessions/"+sess+"/devices/"+dev+"/actions", map[string]any{"action": "sys.echo", "args": map[string]int{"bytes": n}, "timeout_ms": 60000}, &res)
	if err == nil && res.DataBytes != n {
		err = fmt.Errorf("%d bytes back, want %d", res.DataBytes, n)
	}
	return err
}

func (b *box) session(t *testing.T) string {
	t.Helper()
	var sess struct{ ID string }
	if err := admin.New(hub.SocketPath(b.data)).Do("POST", "/api/v1/sessions", map[string]string{"title": "reach"}, &sess); err != nil {
		t.Fatal(err)
	}
	return sess.ID
}

// A laptop behind a NAT reaching the box by name at its public address (a
// forwarded port): the link comes up direct where UDP passes, over TCP
// where UDP is dropped, through the box's own relay where only the
// forwarded web port reaches the box, and moves from relayed to direct
// when a direct path appears, with no call failing on the way.
func TestLinkThroughANAT(t *testing.T) {
	n := newNAT(t)
	n.pass(t, passAll)
	data := t.TempDir()
	b := startBox(t, n.box, data, natBoxIP+":7780", "--no-mdns")
	state := t.TempDir()
	// By the box's name and HTTPS address, as a person gives it.
	mustRun(t, n.laptop, "lowkey-companion", "pair", "--hub", "https://box.example:7780", "--code", b.pairCode(t), "--state", state, "--name", "cafe-laptop")
	ds := b.devices(t)
	if len(ds) != 1 {
		t.Fatalf("devices: %+v", ds)
	}
	id := ds[0].ID
	sess := b.session(t)
	companion := func() *proc {
		c := start(t, n.laptop, "lowkey-companion", "run", "--state", state, "--no-mdns", "--headless")
		b.waitOnline(t, id, 30*time.Second)
		return c
	}

	for _, step := range []struct {
		rules string
		paths []string // what the link may come up as, the best first
	}{
		// UDP passes: direct (a busy machine may first settle on a
		// slower path; the box then moves it to direct).
		{passAll, []string{"direct", "direct (tcp)", "relayed"}},
		// UDP dropped: over TCP to the box, directly or through its relay
		// (both TCP to the same port; ICE takes whichever answered first).
		{passTCP, []string{"direct (tcp)", "relayed"}},
		// Only the forwarded web port: the box's relay on it.
		{passNoneMore, []string{"relayed"}},
	} {
		n.pass(t, step.rules)
		c := companion()
		got := b.path(t, "cafe-laptop")
		if !slices.Contains(step.paths, got) {
			t.Fatalf("router passing %q: the link goes %q, want one of %q\n%s", step.rules, got, step.paths, mustRun(t, "", "lowkey", "devices", "--data", data))
		}
		if step.paths[0] == "direct" && got != "direct" {
			t.Logf("UDP passes and the link came up %s; waiting for it to move to direct", got)
			b.waitPath(t, "cafe-laptop", "direct", 2*time.Minute)
			got = "direct"
		}
		for _, size := range []int{16, 5 << 20} {
			if err := b.echo(t, sess, id, size); err != nil {
				t.Fatalf("a %d-byte echo, %s: %v", size, got, err)
			}
		}
		// The computer says the same.
		waitStatus(t, n.laptop, state, "online, "+got)
		if step.rules == passNoneMore {
			// A direct path appears mid-link: the box tries for one, the
			// link moves to it, and calls all along get their answers.
			n.pass(t, passAll)
			var (
				wg     sync.WaitGroup
				failed []error
				calls  int
				stop   = make(chan struct{})
			)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 50000; i++ { // bounded; stopped once the link is direct
					select {
					case <-stop:
						return
					default:
					}
					calls++
					if err := b.echo(t, sess, id, 64<<10); err != nil {
						failed = append(failed, err)
					}
				}
			}()
			b.waitPath(t, "cafe-laptop", "direct", 2*time.Minute)
			close(stop)
			wg.Wait()
			if len(failed) > 0 || calls == 0 {
				t.Fatalf("%d of %d calls failed while the link moved to direct: %v", len(failed), calls, failed)
			}
			t.Logf("moved from relayed to direct with %d calls, none failed", calls)
			waitStatus(t, n.laptop, state, "online, direct since")
			b.waitFor(`trying for a direct path`, time.Second)
		}
		c.stop()
		b.waitOffline(t, id, 30*time.Second)
	}
}

// waitStatus waits for "lowkey-companion status" to say want.
func waitStatus(t *testing.T, ns, state, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out := mustRun(t, ns, "lowkey-companion", "status", "--state", state)
		if strings.Contains(out, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the computer's status does not say %q:\n%s", want, out)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// waitOffline waits until the box has seen the computer go.
func (b *box) waitOffline(t *testing.T, id string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		for _, d := range b.devices(t) {
			if d.ID == id && d.Online == "no" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("device %s still online after %s", id, limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// coturn runs Debian's TURN server in ns on addr for user:pass.
func coturn(t *testing.T, ns, addr, user, pass string) *proc {
	t.Helper()
	bin, err := exec.LookPath("turnserver")
	if err != nil {
		t.Fatal("this test needs coturn's turnserver (apt-get install coturn)")
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "turnserver.conf")
	if err := os.WriteFile(conf, []byte(strings.Join([]string{
		"listening-ip=" + addr, "relay-ip=" + addr, "listening-port=3478", "lt-cred-mech", "realm=lowkey.test",
		"user=" + user + ":" + pass, "no-tls", "no-dtls", "no-cli", "log-file=stdout", "simple-log", "verbose",
		"pidfile=" + filepath.Join(dir, "turn.pid"), "userdb=" + filepath.Join(dir, "turn.db"),
	}, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startCmd(t, "turnserver", exec.Command("ip", "netns", "exec", ns, bin, "-c", conf))
	p.waitFor(`(?i)listener opened on|IPv4\. TCP listener`, 20*time.Second)
	return p
}

// The box's own relay off and only the owner's coturn as a path (the
// laptop reaches the box's forwarded web port and the TURN server, nothing
// else): the link comes up relayed through coturn. With a wrong
// credential for it there is no link at all.
func TestLinkThroughTheOwnersCoturn(t *testing.T) {
	n := newNAT(t)
	n.pass(t, passNoneMore)
	turn := coturn(t, n.router, natInsideIP, "lowkey", "right-horse-battery")
	data := t.TempDir()
	servers := func(pass string) string {
		f := filepath.Join(t.TempDir(), "ice.json")
		if err := os.WriteFile(f, fmt.Appendf(nil, `[{"urls": ["turn:%s:3478?transport=udp", "turn:%s:3478?transport=tcp"], "username": "lowkey", "credential": %q}]`, natInsideIP, natInsideIP, pass), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	b := startBox(t, n.box, data, natBoxIP+":7780", "--no-mdns", "--no-relay", "--ice-servers", servers("right-horse-battery"))
	state := t.TempDir()
	mustRun(t, n.laptop, "lowkey-companion", "pair", "--hub", natOutsideIP+":7780", "--code", b.pairCode(t), "--state", state, "--name", "hotel-laptop")
	id := b.devices(t)[0].ID
	c := start(t, n.laptop, "lowkey-companion", "run", "--state", state, "--no-mdns", "--headless")
	b.waitOnline(t, id, 30*time.Second)
	if got := b.path(t, "hotel-laptop"); got != "relayed" {
		t.Fatalf("the link goes %q, want relayed through coturn", got)
	}
	sess := b.session(t)
	for _, size := range []int{16, 5 << 20} {
		if err := b.echo(t, sess, id, size); err != nil {
			t.Fatalf("a %d-byte echo through coturn: %v", size, err)
		}
	}
	turn.waitFor(`(?i)ALLOCATE processed, success`, 5*time.Second)
	c.stop()
	b.stop()

	// The same, with a credential coturn does not know: no link.
	b = startBox(t, n.box, data, natBoxIP+":7780", "--no-mdns", "--no-relay", "--ice-servers", servers("wrong-horse"))
	start(t, n.laptop, "lowkey-companion", "run", "--state", state, "--no-mdns", "--headless")
	// Until the box has given up on a set-up, the computer never shows online.
	failed := regexp.MustCompile(`link set-up failed`)
	deadline := time.Now().Add(90 * time.Second)
	for !failed.MatchString(b.out.String()) {
		if d := b.devices(t); d[0].Online == "yes" {
			t.Fatalf("a link came up with a wrong TURN credential: %+v", d)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the box never gave up on the link set-up:\n%s", b.out)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if d := b.devices(t); d[0].Online == "yes" {
		t.Fatalf("a link came up with a wrong TURN credential: %+v", d)
	}
}
