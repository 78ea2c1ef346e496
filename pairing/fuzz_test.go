package pairing

import (
	"encoding/json"
	"testing"
)

func FuzzDecodeMessage(f *testing.F) {
	for _, m := range []Message{
		{Type: "hello", ID: "abc", Fingerprint: "AA:BB"},
		{Type: "start", Data: make([]byte, 48)},
		{Type: "reply", Data: make([]byte, 32), MAC: make([]byte, 32)},
		{Type: "confirm", MAC: make([]byte, 32), Sealed: []byte{1}},
		{Type: "error", Code: "wrong_code"},
	} {
		b, _ := json.Marshal(m)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMessage(b)
		if err == nil && m == nil {
			t.Fatal("nil message without error")
		}
	})
}

func FuzzDecodeLinkMessage(f *testing.F) {
	for _, m := range []LinkMessage{
		{Type: "hello", DeviceID: "d", Nonce: make([]byte, NonceSize), Intent: "link"},
		{Type: "challenge", Nonce: make([]byte, NonceSize), Sig: make([]byte, 64)},
		{Type: "auth", Sig: make([]byte, 64)},
		{Type: "error", Code: "revoked"},
	} {
		b, _ := json.Marshal(m)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeLinkMessage(b)
		if err == nil && m == nil {
			t.Fatal("nil message without error")
		}
	})
}

// FuzzOpenSealed feeds arbitrary sealed payloads to the key opener.
func FuzzOpenSealed(f *testing.F) {
	f.Add([]byte{}, []byte("transcript"))
	f.Add(make([]byte, 40), []byte{})
	key := make([]byte, 32)
	f.Fuzz(func(t *testing.T, sealed, transcript []byte) {
		if p, err := openPeer(key, sealed, transcript, "hub", "x", "y"); err == nil || p != nil {
			t.Fatal("random bytes opened as keys")
		}
	})
}
