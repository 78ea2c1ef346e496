package companion

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/lowkeyhq/lowkey/internal/wsconn"
	"github.com/lowkeyhq/lowkey/pairing"
)

// NormalizeAddr turns "host:port", "http://host:port" or "ws://host:port"
// into host:port.
func NormalizeAddr(s string) (string, error) {
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("hub address %q: give host:port, like 192.168.1.20:7780", s)
	}
	if u.Port() == "" {
		return u.Host + ":7780", nil
	}
	return u.Host, nil
}

// dialed is a WebSocket to the box, and the fingerprint of its HTTPS
// certificate when it speaks HTTPS.
type dialed struct {
	*wsconn.Conn
	tlsFingerprint string
	// caTrusted: the certificate is the owner's own, valid for the host
	// under this computer's trusted authorities.
	caTrusted bool
}

// dial reaches the box's WebSocket: over HTTPS first, whose certificate
// must be pin when one is given, then (unless mustTLS) over plain HTTP,
// which is how a box listening on loopback serves. Pairing and the link
// authenticate the box either way; HTTPS adds privacy on the LAN.
func dial(ctx context.Context, addr, path string, limit int64, pin string, mustTLS bool) (*dialed, error) {
	var (
		seen      string
		caTrusted bool
	)
	host, _, _ := net.SplitHostPort(addr)
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, TLSClientConfig: &tls.Config{
		// The certificate is self-made by the box: it is checked against
		// the pinned fingerprint, not against a CA.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the box sent no certificate")
			}
			seen = pairing.CertFingerprint(cs.PeerCertificates[0].Raw)
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, verr := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: host, Intermediates: inter})
			caTrusted = verr == nil
			if pin != "" && seen != pin && !caTrusted {
				return fmt.Errorf("the box's HTTPS certificate %s is neither the one paired (%s) nor one this computer trusts for %s", seen, pin, host)
			}
			return nil
		},
	}}
	ws, resp, err := d.DialContext(ctx, "wss://"+addr+path, http.Header{})
	if err == nil {
		return &dialed{Conn: wsconn.New(ws, limit), tlsFingerprint: seen, caTrusted: caTrusted}, nil
	}
	var rh tls.RecordHeaderError
	if mustTLS || !errors.As(err, &rh) {
		return nil, dialError(addr, resp, err)
	}
	ws, resp, err = d.DialContext(ctx, "ws://"+addr+path, http.Header{})
	if err != nil {
		return nil, dialError(addr, resp, err)
	}
	return &dialed{Conn: wsconn.New(ws, limit)}, nil
}

func dialError(addr string, resp *http.Response, err error) error {
	if resp != nil {
		return fmt.Errorf("connect to the box at %s: %s", addr, resp.Status)
	}
	return fmt.Errorf("connect to the box at %s: %w", addr, err)
}

// Pair runs the pairing exchange with the box at addr and pins it.
func Pair(ctx context.Context, st State, addr, code, name string) (*HubRecord, error) {
	if _, err := pairing.NormalizeCode(code); err != nil {
		return nil, err
	}
	id, err := st.Identity()
	if err != nil {
		return nil, err
	}
	c, err := dial(ctx, addr, "/api/v1/pair", pairing.MaxMessageSize, "", false)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	peer, err := pairing.Pair(ctx, wsconn.Pairing{C: c.Conn}, id, code, name, runtime.GOOS+"/"+runtime.GOARCH)
	if err != nil {
		return nil, err
	}
	// Over HTTPS, the certificate must be the one the exchange bound.
	if c.tlsFingerprint != "" && c.tlsFingerprint != peer.Fingerprint && !c.caTrusted {
		return nil, fmt.Errorf("the box's HTTPS certificate (%s) is not the one it paired with (%s): someone may be between this computer and the box", c.tlsFingerprint, peer.Fingerprint)
	}
	rec := &HubRecord{Peer: *peer, Addr: addr, PairedAt: time.Now().UTC(), TLS: c.tlsFingerprint != ""}
	if err := st.SaveHub(rec); err != nil {
		return nil, fmt.Errorf("paired, but could not save the box's keys: %w", err)
	}
	return rec, nil
}

// Unpair tells the box to forget this computer, then forgets the box. If
// the box cannot be reached, the local record is dropped anyway and the
// error says so.
func Unpair(ctx context.Context, st State) error {
	h, err := st.Hub()
	if err != nil {
		return err
	}
	id, err := st.Identity()
	if err != nil {
		return err
	}
	tellErr := func() error {
		c, err := dial(ctx, h.Addr, "/api/v1/link", 4096, h.Peer.Fingerprint, h.TLS)
		if err != nil {
			return err
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if _, err := pairing.AuthenticateToHub(ctx, c, id, h.Peer.ID, h.Peer.PublicKey, "unpair"); err != nil {
			return err
		}
		var m pairing.LinkMessage
		return c.ReadJSON(ctx, &m)
	}()
	if err := st.Forget(); err != nil {
		return err
	}
	if tellErr != nil {
		return fmt.Errorf("forgot the box here, but could not tell it (%v): revoke this computer there with \"lowkey devices revoke %s\"", tellErr, id.ID())
	}
	return nil
}
