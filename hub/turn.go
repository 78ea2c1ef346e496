package hub

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"github.com/pion/turn/v5"

	"github.com/lowkeyhq/lowkey/devicectl"
)

// The box's own relay: TURN over TCP on its web port, for a computer that
// reaches the box's web address but none of the box's own addresses (a
// forwarded port, a tunnel, a proxy). Its relayed addresses are on the
// box's loopback, and it relays only to the box itself, so a paired
// computer cannot use it to reach anything else. Credentials are minted
// per link for one paired computer and end with the link; what passes is
// the link's DTLS, which only the two pinned ends can read.

// turnRealm is the relay's TURN realm.
const turnRealm = "lowkey"

// maxRelayAllocations bounds one link's relayed addresses (ICE asks for
// one per local address family and restart).
const maxRelayAllocations = 8

// relay is the box's TURN server and the credentials it honours.
type relay struct {
	srv *turn.Server

	mu     sync.Mutex
	creds  map[string]relayCred // by username
	allocs map[string]int       // live allocations by username
}

type relayCred struct {
	device string
	key    []byte
}

func startRelay(ln net.Listener) (*relay, error) {
	r := &relay{creds: map[string]relayCred{}, allocs: map[string]int{}}
	srv, err := turn.NewServer(turn.ServerConfig{
		Realm: turnRealm,
		AuthHandler: func(ra *turn.RequestAttributes) (string, []byte, bool) {
			r.mu.Lock()
			defer r.mu.Unlock()
			c, ok := r.creds[ra.Username]
			return ra.Username, c.key, ok
		},
		QuotaHandler: func(username, _ string, _ net.Addr) bool {
			r.mu.Lock()
			defer r.mu.Unlock()
			return r.allocs[username] < maxRelayAllocations
		},
		EventHandler: turn.EventHandler{
			OnAllocationCreated: func(_, _ net.Addr, _, user, _ string, _ net.Addr, _ int) {
				r.mu.Lock()
				r.allocs[user]++
				r.mu.Unlock()
			},
			OnAllocationDeleted: func(_, _ net.Addr, _, user, _ string) {
				r.mu.Lock()
				if r.allocs[user]--; r.allocs[user] <= 0 {
					delete(r.allocs, user)
				}
				r.mu.Unlock()
			},
		},
		ListenerConfigs: []turn.ListenerConfig{{
			Listener: ln,
			RelayAddressGenerator: &turn.RelayAddressGeneratorStatic{
				RelayAddress: net.IPv4(127, 0, 0, 1), Address: "127.0.0.1",
			},
			// Only the box itself is reachable through its relay.
			PermissionHandler: func(_ net.Addr, peer net.IP) bool { return peer.IsLoopback() },
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("the box's relay: %w", err)
	}
	r.srv = srv
	return r, nil
}

// mint makes a credential for one link of device; end forgets it.
func (r *relay) mint(device string) (cred *devicectl.RelayCredential, end func(), err error) {
	b := make([]byte, 36)
	if _, err := rand.Read(b); err != nil {
		return nil, nil, err
	}
	user := "lk-" + base64.RawURLEncoding.EncodeToString(b[:12])
	pass := base64.RawURLEncoding.EncodeToString(b[12:])
	r.mu.Lock()
	r.creds[user] = relayCred{device: device, key: turn.GenerateAuthKey(user, turnRealm, pass)}
	r.mu.Unlock()
	return &devicectl.RelayCredential{Username: user, Credential: pass}, func() {
		r.mu.Lock()
		delete(r.creds, user)
		r.mu.Unlock()
	}, nil
}

// forget drops every credential of device (it was revoked).
func (r *relay) forget(device string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for u, c := range r.creds {
		if c.device == device {
			delete(r.creds, u)
		}
	}
}

func (r *relay) close() error { return r.srv.Close() }

// LoadICEServers reads STUN/TURN servers with their credentials from a
// file only its owner may read, in WebRTC's own shape:
// [{"urls": ["turn:HOST:3478?transport=tcp"], "username": "…", "credential": "…"}].
func LoadICEServers(path string) ([]devicectl.ICEServer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s holds credentials and others may read it (mode %04o): chmod 600 %s", path, st.Mode().Perm(), path)
	}
	var servers []devicectl.ICEServer
	dec := json.NewDecoder(io.LimitReader(f, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&servers); err != nil {
		return nil, fmt.Errorf("%s: %w (want [{\"urls\": [\"turn:HOST:PORT?transport=tcp\"], \"username\": \"…\", \"credential\": \"…\"}])", path, err)
	}
	if err := devicectl.CheckICEServers(servers); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return servers, nil
}
