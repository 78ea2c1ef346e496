package companion

import (
	"context"
	"fmt"
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

func dial(ctx context.Context, addr, path string, limit int64) (*wsconn.Conn, error) {
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	ws, resp, err := d.DialContext(ctx, "ws://"+addr+path, http.Header{})
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("connect to the box at %s: %s", addr, resp.Status)
		}
		return nil, fmt.Errorf("connect to the box at %s: %w", addr, err)
	}
	return wsconn.New(ws, limit), nil
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
	c, err := dial(ctx, addr, "/api/v1/pair", pairing.MaxMessageSize)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	peer, err := pairing.Pair(ctx, wsconn.Pairing{C: c}, id, code, name, runtime.GOOS+"/"+runtime.GOARCH)
	if err != nil {
		return nil, err
	}
	rec := &HubRecord{Peer: *peer, Addr: addr, PairedAt: time.Now().UTC()}
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
		c, err := dial(ctx, h.Addr, "/api/v1/link", 4096)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.WS.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := pairing.AuthenticateToHub(c, id, h.Peer.ID, h.Peer.PublicKey, "unpair"); err != nil {
			return err
		}
		var m pairing.LinkMessage
		return c.ReadJSON(&m, 10*time.Second)
	}()
	if err := st.Forget(); err != nil {
		return err
	}
	if tellErr != nil {
		return fmt.Errorf("forgot the box here, but could not tell it (%v): revoke this computer there with \"lowkey devices revoke %s\"", tellErr, id.ID())
	}
	return nil
}
