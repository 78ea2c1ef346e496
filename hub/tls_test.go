package hub_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lowkeyhq/lowkey/companion"
	"github.com/lowkeyhq/lowkey/hub"
	"github.com/lowkeyhq/lowkey/internal/admin"
)

// A certificate the computer cannot tie to the box (not the identity's,
// not from an authority it trusts) makes pairing fail: whoever holds it
// could be in the middle.
func TestPairingRefusesAnHTTPSCertificateItCannotCheck(t *testing.T) {
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "box"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	_ = os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	h, err := hub.Start(hub.Config{DataDir: filepath.Join(dir, "box"), Listen: "127.0.0.1:0", NoMDNS: true, Logger: quiet(), TLSCert: certFile, TLSKey: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if !strings.HasPrefix(h.URL(), "https://") || h.TLSFingerprint() == "" {
		t.Fatalf("url %s, fingerprint %q", h.URL(), h.TLSFingerprint())
	}
	var code struct{ Code string }
	if err := admin.New(hub.SocketPath(filepath.Join(dir, "box"))).Do("POST", "/admin/pair-code", nil, &code); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st := companion.State{Dir: t.TempDir()}
	_, err = companion.Pair(ctx, st, strings.TrimPrefix(h.URL(), "https://"), code.Code, "laptop")
	if err == nil || !strings.Contains(err.Error(), "not the one it paired with") {
		t.Fatalf("pairing over an unverifiable certificate: %v", err)
	}
	if _, err := st.Hub(); err == nil {
		t.Fatal("the computer pinned a box it could not check")
	}
}

func TestHubRefusesPagesOnItsOwnOrigin(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	_, err := hub.Start(hub.Config{DataDir: t.TempDir(), Listen: addr, NoMDNS: true, Logger: quiet(), PagesListen: "127.0.0.1:0", PagesOrigin: "http://" + addr})
	if err == nil || !strings.Contains(err.Error(), "is the hub's own") {
		t.Fatalf("pages on the hub's origin: %v", err)
	}
}
