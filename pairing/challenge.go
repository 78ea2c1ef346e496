package pairing

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
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
