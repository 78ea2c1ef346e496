package pairing

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/lowkeyhq/lowkey/errcode"
)

// NonceSize is the size of each side's challenge nonce.
const NonceSize = 32

// NewNonce returns a fresh challenge nonce.
func NewNonce() []byte {
	b := make([]byte, NonceSize)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b
}

// challengeText binds a signature to its role, both identities and both
// nonces, so it cannot be replayed on another connection or reflected.
func challengeText(role, hubID, deviceID string, companionNonce, hubNonce []byte) []byte {
	return fmt.Appendf(nil, "lowkey-link-v1\x00%s\x00%s\x00%s\x00%x\x00%x", role, hubID, deviceID, companionNonce, hubNonce)
}

// SignChallenge signs a link challenge as role ("hub" or "companion").
func SignChallenge(key ed25519.PrivateKey, role, hubID, deviceID string, companionNonce, hubNonce []byte) []byte {
	return ed25519.Sign(key, challengeText(role, hubID, deviceID, companionNonce, hubNonce))
}

// VerifyChallenge checks a link challenge signature against a pinned key.
func VerifyChallenge(pub ed25519.PublicKey, sig []byte, role, hubID, deviceID string, companionNonce, hubNonce []byte) bool {
	if len(pub) != ed25519.PublicKeySize || len(companionNonce) != NonceSize || len(hubNonce) != NonceSize {
		return false
	}
	return ed25519.Verify(pub, challengeText(role, hubID, deviceID, companionNonce, hubNonce), sig)
}

// LinkMessage is one message of the link's authentication, before signed
// signaling starts on the same socket.
type LinkMessage struct {
	// Type is "hello", "challenge", "auth", "welcome", "done" or "error".
	Type     string `json:"type"`
	DeviceID string `json:"device_id,omitempty"`
	HubID    string `json:"hub_id,omitempty"`
	Nonce    []byte `json:"nonce,omitempty"`
	Sig      []byte `json:"sig,omitempty"`
	// Intent is "link" (keep a link up) or "unpair" (forget me).
	Intent  string `json:"intent,omitempty"`
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

// DecodeLinkMessage parses an authentication message from the network.
func DecodeLinkMessage(b []byte) (*LinkMessage, error) {
	if len(b) > 4096 {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadMessage, len(b))
	}
	var m LinkMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadMessage, err)
	}
	switch m.Type {
	case "hello":
		if m.DeviceID == "" || len(m.DeviceID) > 64 || len(m.Nonce) != NonceSize || (m.Intent != "link" && m.Intent != "unpair") {
			return nil, fmt.Errorf("%w: hello", ErrBadMessage)
		}
	case "challenge":
		if len(m.Nonce) != NonceSize || len(m.Sig) != ed25519.SignatureSize {
			return nil, fmt.Errorf("%w: challenge", ErrBadMessage)
		}
	case "auth":
		if len(m.Sig) != ed25519.SignatureSize {
			return nil, fmt.Errorf("%w: auth", ErrBadMessage)
		}
	case "welcome", "done", "error":
	default:
		return nil, fmt.Errorf("%w: unknown type %q", ErrBadMessage, m.Type)
	}
	return &m, nil
}

// MsgConn moves whole messages; each call waits no longer than its ctx.
type MsgConn interface {
	Send(ctx context.Context, b []byte) error
	Recv(ctx context.Context) ([]byte, error)
}

// Unpaired says whether err is the box's word that this computer is no
// longer paired with it (revoked, or never known): trying again is futile.
func Unpaired(err error) bool {
	return errcode.Has(err, errcode.Revoked) || errcode.Has(err, errcode.UnknownDevice)
}

func sendLink(ctx context.Context, c MsgConn, m *LinkMessage) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return c.Send(ctx, b)
}

func recvLink(ctx context.Context, c MsgConn, want string) (*LinkMessage, error) {
	b, err := c.Recv(ctx)
	if err != nil {
		return nil, err
	}
	m, err := DecodeLinkMessage(b)
	if err != nil {
		return nil, err
	}
	if m.Type == "error" {
		return nil, &errcode.Error{Code: errcode.Code(m.Code), Message: m.Message}
	}
	if m.Type != want {
		return nil, fmt.Errorf("%w: got %q, want %q", ErrBadMessage, m.Type, want)
	}
	return m, nil
}

// Binding ties signaling to one authenticated connection.
func Binding(hubID, deviceID string, companionNonce, hubNonce []byte) []byte {
	return fmt.Appendf(nil, "%s\x00%s\x00%x\x00%x", hubID, deviceID, companionNonce, hubNonce)
}

// AuthenticateToHub runs the computer's side: it proves its identity and
// checks the box's against the pinned key. It returns the binding for
// signed signaling.
func AuthenticateToHub(ctx context.Context, c MsgConn, id *Identity, hubID string, hubKey ed25519.PublicKey, intent string) ([]byte, error) {
	nc := NewNonce()
	if err := sendLink(ctx, c, &LinkMessage{Type: "hello", DeviceID: id.ID(), Nonce: nc, Intent: intent}); err != nil {
		return nil, err
	}
	ch, err := recvLink(ctx, c, "challenge")
	if err != nil {
		return nil, err
	}
	if ch.HubID != hubID || !VerifyChallenge(hubKey, ch.Sig, "hub", hubID, id.ID(), nc, ch.Nonce) {
		return nil, errors.New("the box did not prove it holds the pinned key: this is not the box this computer paired with")
	}
	if err := sendLink(ctx, c, &LinkMessage{Type: "auth", Sig: SignChallenge(id.Key, "companion", hubID, id.ID(), nc, ch.Nonce)}); err != nil {
		return nil, err
	}
	if _, err := recvLink(ctx, c, "welcome"); err != nil {
		return nil, err
	}
	return Binding(hubID, id.ID(), nc, ch.Nonce), nil
}

// DeviceLookup finds a paired computer's pinned key; it returns a
// *errcode.Error for computers that are unknown or revoked.
type DeviceLookup func(deviceID string) (ed25519.PublicKey, error)

// AuthenticateDevice runs the box's side and returns the device ID, the
// intent and the binding.
func AuthenticateDevice(ctx context.Context, c MsgConn, id *Identity, lookup DeviceLookup) (deviceID, intent string, binding []byte, err error) {
	hello, err := recvLink(ctx, c, "hello")
	if err != nil {
		return "", "", nil, err
	}
	pub, err := lookup(hello.DeviceID)
	if err != nil {
		var le *errcode.Error
		if errors.As(err, &le) {
			_ = sendLink(ctx, c, &LinkMessage{Type: "error", Code: string(le.Code), Message: le.Message})
		}
		return "", "", nil, err
	}
	nh := NewNonce()
	if err := sendLink(ctx, c, &LinkMessage{Type: "challenge", HubID: id.ID(), Nonce: nh, Sig: SignChallenge(id.Key, "hub", id.ID(), hello.DeviceID, hello.Nonce, nh)}); err != nil {
		return "", "", nil, err
	}
	auth, err := recvLink(ctx, c, "auth")
	if err != nil {
		return "", "", nil, err
	}
	if !VerifyChallenge(pub, auth.Sig, "companion", id.ID(), hello.DeviceID, hello.Nonce, nh) {
		le := &errcode.Error{Code: errcode.BadSignature, Message: "the computer's signature does not match its pinned key"}
		_ = sendLink(ctx, c, &LinkMessage{Type: "error", Code: string(le.Code), Message: le.Message})
		return "", "", nil, le
	}
	if err := sendLink(ctx, c, &LinkMessage{Type: "welcome"}); err != nil {
		return "", "", nil, err
	}
	return hello.DeviceID, hello.Intent, Binding(id.ID(), hello.DeviceID, hello.Nonce, nh), nil
}
