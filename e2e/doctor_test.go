package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lowkeyhq/lowkey/internal/testenv"
)

type doctorCheck struct{ Name, Status, Detail, Fix string }

// doctor runs "lowkey doctor --json" (with a shell prefix when given) and
// reads its checks by name.
func doctor(t *testing.T, prefix []string, data string) (map[string]doctorCheck, int) {
	t.Helper()
	argv := append(prefix, filepath.Join(bin, "lowkey"), "doctor", "--json", "--data", data)
	cmd := exec.Command(argv[0], argv[1:]...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		OK     bool
		Checks []doctorCheck
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("doctor --json: %v\n%s\n%s", err, out, stderr.String())
	}
	checks := map[string]doctorCheck{}
	for _, c := range rep.Checks {
		checks[c.Name] = c
	}
	if rep.OK != (code == 0) {
		t.Fatalf("doctor says ok=%v and exits %d", rep.OK, code)
	}
	return checks, code
}

func wantCheck(t *testing.T, checks map[string]doctorCheck, name, status, says string) {
	t.Helper()
	c, found := checks[name]
	if !found || c.Status != status || !strings.Contains(c.Detail+" "+c.Fix, says) {
		t.Errorf("doctor's %q: %+v, want %s saying %q", name, c, status, says)
	}
	if status != "ok" && c.Fix == "" && name != "mdns" {
		t.Errorf("doctor's %q is %s and says nothing to do: %+v", name, status, c)
	}
}

// expiredCert writes a certificate for box.example that expired an hour ago.
func expiredCert(t *testing.T, dir string) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "box.example"}, DNSNames: []string{"box.example"},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, keyFile
}

// lowkey doctor on boxes each missing something names what is missing
// and what to do; on a box that has it, says ok.
func TestDoctorNamesWhatIsMissing(t *testing.T) {
	needRoot(t, "to run boxes as root and as an ordinary user, and to hide Chromium")

	t.Run("no hub running", func(t *testing.T) {
		checks, code := doctor(t, nil, filepath.Join(t.TempDir(), "none"))
		if code != 1 {
			t.Fatalf("doctor with no hub exits %d", code)
		}
		wantCheck(t, checks, "hub", "fail", "no hub runs")
		wantCheck(t, checks, "memory budgets", "ok", "cgroup")
	})

	t.Run("a box without budgets, on loopback, with no display, mDNS or backups", func(t *testing.T) {
		b := startOrdinaryBox(t, ordinaryUser(t), "--no-mdns", "--backup-every", "0")
		checks, code := doctor(t, nil, b.data)
		if code != 1 {
			t.Fatalf("doctor exits %d", code)
		}
		wantCheck(t, checks, "hub", "ok", "runs on "+b.data)
		wantCheck(t, checks, "memory budgets", "fail", "no memory budget")
		wantCheck(t, checks, "agent separation", "ok", "namespaces of their own")
		wantCheck(t, checks, "display", "warn", "no display")
		wantCheck(t, checks, "listening", "warn", "only this machine reaches the box")
		wantCheck(t, checks, "reachability", "warn", "only on loopback")
		wantCheck(t, checks, "mdns", "warn", "--no-mdns")
		wantCheck(t, checks, "backups", "warn", "no timed backups")
		wantCheck(t, checks, "disk", "ok", "free")
	})

	t.Run("a box with an expired certificate, and a display", func(t *testing.T) {
		display := testenv.Xvfb(t, 640, 480)
		dir := t.TempDir()
		cert, key := expiredCert(t, dir)
		data := filepath.Join(dir, "box")
		cmd := command("", "lowkey", "hub", "--data", data, "--listen", "127.0.0.1:0", "--pages-listen=", "--no-mdns", "--tls-cert", cert, "--tls-key", key)
		cmd.Env = append(os.Environ(), "DISPLAY="+display)
		p := startCmd(t, "lowkey", cmd)
		p.waitFor(`Lowkey hub is ready: https?://(\S+)`, 20*time.Second)
		// Its first backup is made at once, but not before it is ready.
		p.waitFor(`msg="backed up"`, 30*time.Second)
		checks, code := doctor(t, nil, data)
		if code != 1 {
			t.Fatalf("doctor exits %d", code)
		}
		wantCheck(t, checks, "certificate", "fail", "expired on")
		wantCheck(t, checks, "memory budgets", "ok", "cgroup")
		wantCheck(t, checks, "agent separation", "ok", "lowkey-agent")
		wantCheck(t, checks, "display", "ok", display)
		wantCheck(t, checks, "backups", "ok", filepath.Join(data, "backups"))
	})

	t.Run("no Chromium, and a full disk", func(t *testing.T) {
		data := t.TempDir()
		if err := os.Chmod(data, 0o700); err != nil {
			t.Fatal(err)
		}
		// A mount namespace of the doctor's own: a small tmpfs for the data
		// (less free than the store writes in), and each Chromium it finds
		// covered by /dev/null until it finds none.
		script := "mount --make-rprivate / && mount -t tmpfs -o size=64m tmpfs " + data
		var found []string
		for range 6 {
			checks, _ := doctor(t, []string{"unshare", "-m", "sh", "-c", script + ` && exec "$0" "$@"`}, data)
			c := checks["chromium"]
			if c.Status != "ok" {
				wantCheck(t, checks, "chromium", "warn", "no Chromium")
				wantCheck(t, checks, "disk", "fail", "the store stops writing below")
				wantCheck(t, checks, "hub", "fail", "no hub runs")
				if len(found) == 0 {
					t.Fatal("no Chromium was there to hide")
				}
				return
			}
			path := strings.TrimPrefix(c.Detail, "found ")
			found = append(found, path)
			script += " && mount --bind /dev/null " + path
		}
		t.Fatalf("Chromium still found after hiding %v", found)
	})

	t.Run("mDNS seen on a LAN, and not when multicast is dropped", func(t *testing.T) {
		l := newLAN(t)
		b := startBox(t, l.box, filepath.Join(t.TempDir(), "box"), boxIP+":7780")
		checks, _ := doctor(t, nil, b.data)
		wantCheck(t, checks, "mdns", "ok", "seen on the LAN")
		wantCheck(t, checks, "reachability", "ok", boxIP+":7780")
		wantCheck(t, checks, "listening", "ok", boxIP+":7780")
		nft := "table inet lkdoctor { chain outgoing { type filter hook output priority 0; udp dport 5353 drop; }; chain incoming { type filter hook input priority 0; udp dport 5353 drop; }; }"
		if out, err := exec.Command("ip", "netns", "exec", l.box, "nft", nft).CombinedOutput(); err != nil {
			t.Fatalf("nft: %v %s", err, out)
		}
		checks, code := doctor(t, nil, b.data)
		if code != 1 {
			t.Fatalf("doctor exits %d with mDNS dropped", code)
		}
		wantCheck(t, checks, "mdns", "fail", "not seen on the LAN")
	})
}
