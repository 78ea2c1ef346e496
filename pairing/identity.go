package pairing

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pion/webrtc/v4"
)

// certLifetime is long on purpose: the certificate is pinned at pairing, and
// an expired one would force a new pairing. pion's generated certificates
// expire after about a month, which is why we make our own.
const certLifetime = 20 * 365 * 24 * time.Hour

// Identity is one side's long-term keys: an Ed25519 key that signs
// challenges and a DTLS certificate that the peer pins.
type Identity struct {
	Key  ed25519.PrivateKey
	Cert webrtc.Certificate
	// CertDER is the certificate as sent on the wire.
	CertDER []byte
	certKey *ecdsa.PrivateKey
}

// identityFile is the on-disk form, kept 0600.
type identityFile struct {
	Ed25519Seed []byte `json:"ed25519_seed"`
	DTLSKey     []byte `json:"dtls_key"`
	DTLSCert    []byte `json:"dtls_cert"`
}

// NewIdentity makes fresh keys.
func NewIdentity() (*Identity, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	ck, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tpl := x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "lowkey " + IDFromPublicKey(key.Public().(ed25519.PublicKey))},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(certLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, &tpl, &tpl, &ck.PublicKey, ck)
	if err != nil {
		return nil, fmt.Errorf("make DTLS certificate: %w", err)
	}
	return identityFromParts(key.Seed(), ck, der)
}

func identityFromParts(seed []byte, ck *ecdsa.PrivateKey, der []byte) (*Identity, error) {
	if len(seed) != ed25519.SeedSize {
		return nil, errors.New("identity key has the wrong size")
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse DTLS certificate: %w", err)
	}
	return &Identity{
		Key:     ed25519.NewKeyFromSeed(seed),
		Cert:    webrtc.CertificateFromX509(ck, c),
		CertDER: der,
		certKey: ck,
	}, nil
}

// LoadOrCreateIdentity reads the identity at path, or creates it (0600) if
// there is none yet.
func LoadOrCreateIdentity(path string) (*Identity, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		id, err := NewIdentity()
		if err != nil {
			return nil, err
		}
		return id, id.Save(path)
	}
	if err != nil {
		return nil, fmt.Errorf("read identity: %w", err)
	}
	var f identityFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("identity file %s is damaged: %w", path, err)
	}
	ck, err := x509.ParseECPrivateKey(f.DTLSKey)
	if err != nil {
		return nil, fmt.Errorf("identity file %s: DTLS key: %w", path, err)
	}
	return identityFromParts(f.Ed25519Seed, ck, f.DTLSCert)
}

// Save writes the identity to path, owner-only.
func (id *Identity) Save(path string) error {
	kb, err := x509.MarshalECPrivateKey(id.certKey)
	if err != nil {
		return err
	}
	b, err := json.Marshal(identityFile{Ed25519Seed: id.Key.Seed(), DTLSKey: kb, DTLSCert: id.CertDER})
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, b)
}

// Public is the part of an identity the peer pins.
func (id *Identity) Public() ed25519.PublicKey { return id.Key.Public().(ed25519.PublicKey) }

// ID is the short stable name derived from the public key.
func (id *Identity) ID() string { return IDFromPublicKey(id.Public()) }

// Fingerprint is the SHA-256 fingerprint of the DTLS certificate, in the
// form SDP uses ("AB:CD:...").
func (id *Identity) Fingerprint() string { return CertFingerprint(id.CertDER) }

// IDFromPublicKey derives an ID: 16 base32 characters of the key's SHA-256.
func IDFromPublicKey(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:10]))
}

// KeyFingerprintPrefix is what the hub puts in its mDNS TXT record so a
// companion can tell its hub from others without trusting the record.
func KeyFingerprintPrefix(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:4])
}

// CertFingerprint formats the SHA-256 of a DER certificate as SDP does.
func CertFingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

// SameFingerprint compares two fingerprints, ignoring case.
func SameFingerprint(a, b string) bool {
	return a != "" && strings.EqualFold(a, b)
}

// WriteFileAtomic writes b to path with mode 0600 through a temporary file
// and a rename, so a crash leaves either the old or the new content.
func WriteFileAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// TLSCertificate is the identity's certificate for HTTPS: the same one
// its DTLS uses, so a companion that pinned the fingerprint at pairing
// can check the box's web server too.
func (id *Identity) TLSCertificate() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{id.CertDER}, PrivateKey: id.certKey}
}
