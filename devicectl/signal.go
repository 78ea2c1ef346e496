package devicectl

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/pion/stun/v4"
	"github.com/pion/webrtc/v4"
)

// Signal is one signaling message between the box and a computer.
type Signal struct {
	// Type is "offer", "answer", "candidate", or "bye" (Reason says why:
	// "revoked", "unpaired", "shutdown").
	Type      string                   `json:"type"`
	SDP       string                   `json:"sdp,omitempty"`
	Candidate *webrtc.ICECandidateInit `json:"candidate,omitempty"`
	Reason    string                   `json:"reason,omitempty"`
	Message   string                   `json:"message,omitempty"`
	// An offer also says which relays the computer may use: the box's own
	// (Relay: credentials for TURN on the address the computer reached
	// the box at) and the STUN/TURN servers its owner set up.
	Relay      *RelayCredential `json:"relay,omitempty"`
	ICEServers []ICEServer      `json:"ice_servers,omitempty"`
}

// RelayCredential is a TURN username and password, minted for one link.
type RelayCredential struct {
	Username   string `json:"username"`
	Credential string `json:"credential"`
}

// ICEServer is a STUN or TURN server, as WebRTC configures one.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// Bounds on the relays an offer may name.
const (
	maxICEServers = 8
	maxICEURLs    = 4
	maxICEField   = 512
)

// CheckICEServers says what is wrong with a list of STUN/TURN servers:
// too many, a URL that is not stun:, stun(s): or turn(s):, a TURN
// server without credentials, a field too long.
func CheckICEServers(servers []ICEServer) error {
	if len(servers) > maxICEServers {
		return fmt.Errorf("%d ICE servers; at most %d", len(servers), maxICEServers)
	}
	for _, srv := range servers {
		if len(srv.URLs) == 0 || len(srv.URLs) > maxICEURLs {
			return fmt.Errorf("an ICE server has %d URLs; give 1 to %d", len(srv.URLs), maxICEURLs)
		}
		if len(srv.Username) > maxICEField || len(srv.Credential) > maxICEField {
			return errors.New("an ICE server's username or credential is too long")
		}
		for _, u := range srv.URLs {
			if len(u) > maxICEField {
				return errors.New("an ICE server URL is too long")
			}
			uri, err := stun.ParseURI(u)
			if err != nil {
				return fmt.Errorf("ICE server %q: %w (give stun:HOST:PORT or turn:HOST:PORT?transport=udp|tcp)", u, err)
			}
			if (uri.Scheme == stun.SchemeTypeTURN || uri.Scheme == stun.SchemeTypeTURNS) && (srv.Username == "" || srv.Credential == "") {
				return fmt.Errorf("TURN server %q needs a username and a credential", u)
			}
		}
	}
	return nil
}

// webrtcServers turns the servers into pion's configuration.
func webrtcServers(servers []ICEServer) []webrtc.ICEServer {
	out := make([]webrtc.ICEServer, 0, len(servers))
	for _, s := range servers {
		w := webrtc.ICEServer{URLs: s.URLs, Username: s.Username}
		if s.Credential != "" {
			w.Credential = s.Credential
		}
		out = append(out, w)
	}
	return out
}

// Signaler carries signals to the peer.
type Signaler interface {
	Send(ctx context.Context, s Signal) error
	Recv(ctx context.Context) (Signal, error)
}

// Transport moves whole messages; a WebSocket is one.
type Transport interface {
	Send(ctx context.Context, b []byte) error
	Recv(ctx context.Context) ([]byte, error)
}

// MaxSignalSize bounds one signaling message.
const MaxSignalSize = 64 << 10

// ErrBadSignal is a signaling message that is malformed, out of order or
// not signed by the pinned key.
var ErrBadSignal = errors.New("signaling message rejected")

// envelope is a signed signal: the signature covers both link nonces, the
// sender's role and a sequence number, so a recorded message replays
// neither on this connection nor on another.
type envelope struct {
	Seq  uint64          `json:"seq"`
	Body json.RawMessage `json:"body"`
	Sig  []byte          `json:"sig"`
}

// DecodeEnvelope parses a signed signaling message without checking its
// signature.
func DecodeEnvelope(b []byte) (seq uint64, body []byte, sig []byte, err error) {
	if len(b) > MaxSignalSize {
		return 0, nil, nil, fmt.Errorf("%w: %d bytes", ErrBadSignal, len(b))
	}
	var e envelope
	if err := json.Unmarshal(b, &e); err != nil {
		return 0, nil, nil, fmt.Errorf("%w: %w", ErrBadSignal, err)
	}
	if len(e.Sig) != ed25519.SignatureSize || len(e.Body) == 0 {
		return 0, nil, nil, fmt.Errorf("%w: unsigned", ErrBadSignal)
	}
	return e.Seq, e.Body, e.Sig, nil
}

// DecodeSignal parses a signal body.
func DecodeSignal(b []byte) (Signal, error) {
	var s Signal
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("%w: %w", ErrBadSignal, err)
	}
	switch s.Type {
	case "offer", "answer":
		if s.SDP == "" {
			return s, fmt.Errorf("%w: %s without SDP", ErrBadSignal, s.Type)
		}
		if err := CheckICEServers(s.ICEServers); err != nil {
			return s, fmt.Errorf("%w: %w", ErrBadSignal, err)
		}
		if r := s.Relay; r != nil && (r.Username == "" || len(r.Username) > maxICEField || r.Credential == "" || len(r.Credential) > maxICEField) {
			return s, fmt.Errorf("%w: a malformed relay credential", ErrBadSignal)
		}
	case "candidate", "bye", "unpair":
	default:
		return s, fmt.Errorf("%w: unknown type %q", ErrBadSignal, s.Type)
	}
	return s, nil
}

// SignedSignaler signs what it sends with its own key and accepts only what
// the pinned peer key signed, in order.
type SignedSignaler struct {
	T        Transport
	Key      ed25519.PrivateKey
	PeerKey  ed25519.PublicKey
	Role     string // "hub" or "companion"
	PeerRole string
	// Binding is both link nonces and both IDs, fixed at authentication.
	Binding []byte

	mu      sync.Mutex
	sendSeq uint64
	recvSeq uint64
}

func (s *SignedSignaler) signed(role string, seq uint64, body []byte) []byte {
	m := fmt.Appendf(nil, "lowkey-signal-v1\x00%s\x00%x\x00%d\x00", role, s.Binding, seq)
	return append(m, body...)
}

// Send signs and sends one signal.
func (s *SignedSignaler) Send(ctx context.Context, sig Signal) error {
	body, err := json.Marshal(sig)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.sendSeq++
	seq := s.sendSeq
	b, err := json.Marshal(envelope{Seq: seq, Body: body, Sig: ed25519.Sign(s.Key, s.signed(s.Role, seq, body))})
	if err == nil {
		// Under the lock, so sequence numbers go out in order.
		err = s.T.Send(ctx, b)
	}
	s.mu.Unlock()
	return err
}

// Recv returns the next signal that verifies. Anything else ends the
// conversation: a tampered message is not skipped over.
func (s *SignedSignaler) Recv(ctx context.Context) (Signal, error) {
	b, err := s.T.Recv(ctx)
	if err != nil {
		return Signal{}, err
	}
	seq, body, sig, err := DecodeEnvelope(b)
	if err != nil {
		return Signal{}, err
	}
	if seq != s.recvSeq+1 {
		return Signal{}, fmt.Errorf("%w: sequence %d after %d", ErrBadSignal, seq, s.recvSeq)
	}
	if !ed25519.Verify(s.PeerKey, s.signed(s.PeerRole, seq, body), sig) {
		return Signal{}, fmt.Errorf("%w: signature does not match the pinned key", ErrBadSignal)
	}
	s.recvSeq = seq
	return DecodeSignal(body)
}
