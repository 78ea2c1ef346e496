package pairing

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"filippo.io/cpace"
	"github.com/lowkeyhq/lowkey/errcode"
	"golang.org/x/crypto/hkdf"
)

// The exchange, companion (A) to box (B):
//
//	A → B  hello   {id, fingerprint}                 identities as hashes
//	B → A  hello   {id, fingerprint} | error         window checked here
//	A → B  start   {data: CPace msgA}
//	B → A  reply   {data: CPace msgB, mac: MAC_B}    B's key confirmation
//	A → B  confirm {mac: MAC_A, sealed: A's keys}    or error if MAC_B is wrong
//	B → A  keys    {sealed: B's keys} | error
//
// Both IDs and both DTLS fingerprints are bound into CPace's context and the
// confirmation transcript, so a relay that swaps either breaks the exchange.
// The long-term public key and certificate travel only sealed under the
// derived key, and each side signs the transcript with its long-term key.
// A passive observer learns nothing to test codes against offline; an
// active one gets one guess per exchange, which the window counts.

// MaxMessageSize bounds a pairing message on the wire.
const MaxMessageSize = 16 << 10

// Message is one pairing message.
type Message struct {
	Type        string `json:"type"`
	ID          string `json:"id,omitempty"`
	Fingerprint string `json:"fingerprint,omitempty"`
	Data        []byte `json:"data,omitempty"`
	MAC         []byte `json:"mac,omitempty"`
	Sealed      []byte `json:"sealed,omitempty"`
	Code        string `json:"code,omitempty"`
	Message     string `json:"message,omitempty"`
}

// DecodeMessage parses and checks a pairing message from the network.
func DecodeMessage(b []byte) (*Message, error) {
	if len(b) > MaxMessageSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadMessage, len(b))
	}
	var m Message
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadMessage, err)
	}
	switch m.Type {
	case "hello":
		if len(m.ID) == 0 || len(m.ID) > 64 || len(m.Fingerprint) > 128 || m.Fingerprint == "" {
			return nil, fmt.Errorf("%w: hello without identity", ErrBadMessage)
		}
	case "start":
		if len(m.Data) != 48 {
			return nil, fmt.Errorf("%w: start", ErrBadMessage)
		}
	case "reply":
		if len(m.Data) != 32 || len(m.MAC) != sha256.Size {
			return nil, fmt.Errorf("%w: reply", ErrBadMessage)
		}
	case "confirm":
		if len(m.MAC) != sha256.Size || len(m.Sealed) == 0 {
			return nil, fmt.Errorf("%w: confirm", ErrBadMessage)
		}
	case "keys":
		if len(m.Sealed) == 0 {
			return nil, fmt.Errorf("%w: keys", ErrBadMessage)
		}
	case "error":
	default:
		return nil, fmt.Errorf("%w: unknown type %q", ErrBadMessage, m.Type)
	}
	return &m, nil
}

// Conn carries pairing messages; the hub uses a WebSocket.
type Conn interface {
	Send(ctx context.Context, m *Message) error
	Recv(ctx context.Context) (*Message, error)
}

// Peer is what one side learned about the other and pins from now on.
type Peer struct {
	ID          string            `json:"id"`
	PublicKey   ed25519.PublicKey `json:"public_key"`
	CertDER     []byte            `json:"cert"`
	Fingerprint string            `json:"fingerprint"`
	Name        string            `json:"name"`
	Platform    string            `json:"platform,omitempty"`
}

// sealedKeys is the payload of confirm and keys.
type sealedKeys struct {
	PublicKey ed25519.PublicKey `json:"public_key"`
	CertDER   []byte            `json:"cert"`
	Name      string            `json:"name"`
	Platform  string            `json:"platform,omitempty"`
	Signature []byte            `json:"signature"`
}

// errorMessage is the pairing refusal the other side is told: the code
// and words of one of this package's errors, else only that it failed.
func errorMessage(err error) *Message {
	for _, known := range []error{ErrNoWindow, ErrExpired, ErrBusy, ErrClosed, ErrLocked, ErrWrongCode} {
		if errors.Is(err, known) {
			_, e := errcode.Of(known)
			return &Message{Type: "error", Code: string(e.Code), Message: e.Message}
		}
	}
	return &Message{Type: "error", Code: string(errcode.Failed), Message: "pairing failed on the box"}
}

type keys struct {
	macA, macB, sealA, sealB []byte
	transcript               []byte
}

func contextFor(aID, aFP, bID, bFP string) *cpace.ContextInfo {
	ad := sha256.Sum256([]byte("lowkey-pair-v1\x00" + aFP + "\x00" + bFP))
	return cpace.NewContextInfo("companion:"+aID, "hub:"+bID, ad[:])
}

func deriveKeys(secret []byte, aID, aFP, bID, bFP string, msgA, msgB []byte) *keys {
	th := sha256.New()
	for _, p := range [][]byte{[]byte("lowkey-pair-v1"), []byte(aID), []byte(aFP), []byte(bID), []byte(bFP), msgA, msgB} {
		fmt.Fprintf(th, "%d:", len(p))
		th.Write(p)
	}
	k := &keys{transcript: th.Sum(nil)}
	for _, out := range []struct {
		dst   *[]byte
		label string
	}{{&k.macA, "mac companion"}, {&k.macB, "mac hub"}, {&k.sealA, "seal companion"}, {&k.sealB, "seal hub"}} {
		*out.dst = make([]byte, 32)
		if _, err := io.ReadFull(hkdf.Expand(sha256.New, secret, []byte("lowkey-pair-v1 "+out.label)), *out.dst); err != nil {
			panic(err)
		}
	}
	return k
}

func mac(key, transcript []byte, role string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(role))
	h.Write(transcript)
	return h.Sum(nil)
}

func seal(key []byte, v any) ([]byte, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	block, _ := aes.NewCipher(key)
	g, _ := cipher.NewGCM(block)
	nonce := make([]byte, g.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return g.Seal(nonce, nonce, plain, nil), nil
}

func open(key, sealed []byte, v any) error {
	block, _ := aes.NewCipher(key)
	g, _ := cipher.NewGCM(block)
	if len(sealed) < g.NonceSize() {
		return ErrBadMessage
	}
	plain, err := g.Open(nil, sealed[:g.NonceSize()], sealed[g.NonceSize():], nil)
	if err != nil {
		return fmt.Errorf("%w: sealed keys do not open", ErrBadMessage)
	}
	return json.Unmarshal(plain, v)
}

func (id *Identity) sealKeys(key, transcript []byte, role, name, platform string) ([]byte, error) {
	return seal(key, sealedKeys{
		PublicKey: id.Public(), CertDER: id.CertDER, Name: name, Platform: platform,
		Signature: ed25519.Sign(id.Key, append([]byte("lowkey-pair-v1 "+role), transcript...)),
	})
}

// openPeer checks that the sealed keys are the ones named in hello and that
// their owner signed this exchange.
func openPeer(key, sealed, transcript []byte, role, wantID, wantFP string) (*Peer, error) {
	var sk sealedKeys
	if err := open(key, sealed, &sk); err != nil {
		return nil, err
	}
	if len(sk.PublicKey) != ed25519.PublicKeySize || IDFromPublicKey(sk.PublicKey) != wantID {
		return nil, fmt.Errorf("%w: identity does not match hello", ErrBadMessage)
	}
	if !SameFingerprint(CertFingerprint(sk.CertDER), wantFP) {
		return nil, fmt.Errorf("%w: certificate does not match hello", ErrBadMessage)
	}
	if _, err := x509.ParseCertificate(sk.CertDER); err != nil {
		return nil, fmt.Errorf("%w: certificate: %w", ErrBadMessage, err)
	}
	if !ed25519.Verify(sk.PublicKey, append([]byte("lowkey-pair-v1 "+role), transcript...), sk.Signature) {
		return nil, fmt.Errorf("%w: transcript signature", ErrBadMessage)
	}
	if len(sk.Name) > 128 || len(sk.Platform) > 64 {
		return nil, fmt.Errorf("%w: name too long", ErrBadMessage)
	}
	return &Peer{ID: wantID, PublicKey: sk.PublicKey, CertDER: sk.CertDER, Fingerprint: CertFingerprint(sk.CertDER), Name: sk.Name, Platform: sk.Platform}, nil
}

func recvType(ctx context.Context, c Conn, want string) (*Message, error) {
	m, err := c.Recv(ctx)
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

// Pair runs the companion's side with the code the person typed.
func Pair(ctx context.Context, c Conn, id *Identity, code, name, platform string) (*Peer, error) {
	code, err := NormalizeCode(code)
	if err != nil {
		return nil, err
	}
	aID, aFP := id.ID(), id.Fingerprint()
	if err := c.Send(ctx, &Message{Type: "hello", ID: aID, Fingerprint: aFP}); err != nil {
		return nil, err
	}
	hello, err := recvType(ctx, c, "hello")
	if err != nil {
		return nil, err
	}
	bID, bFP := hello.ID, hello.Fingerprint
	msgA, st, err := cpace.Start(code, contextFor(aID, aFP, bID, bFP))
	if err != nil {
		return nil, err
	}
	if err := c.Send(ctx, &Message{Type: "start", Data: msgA}); err != nil {
		return nil, err
	}
	reply, err := recvType(ctx, c, "reply")
	if err != nil {
		return nil, err
	}
	secret, err := st.Finish(reply.Data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadMessage, err)
	}
	k := deriveKeys(secret, aID, aFP, bID, bFP, msgA, reply.Data)
	if !hmac.Equal(reply.MAC, mac(k.macB, k.transcript, "hub")) {
		_ = c.Send(ctx, errorMessage(ErrWrongCode))
		return nil, ErrWrongCode
	}
	sealed, err := id.sealKeys(k.sealA, k.transcript, "companion", name, platform)
	if err != nil {
		return nil, err
	}
	if err := c.Send(ctx, &Message{Type: "confirm", MAC: mac(k.macA, k.transcript, "companion"), Sealed: sealed}); err != nil {
		return nil, err
	}
	km, err := recvType(ctx, c, "keys")
	if err != nil {
		return nil, err
	}
	return openPeer(k.sealB, km.Sealed, k.transcript, "hub", bID, bFP)
}

// Responder is the box's side of the exchange.
type Responder struct {
	Identity *Identity
	Name     string
	Window   *Window
	// Pin, when set, stores the proven peer before the box's keys are
	// sent: a computer that has its keys is already pinned, so it can
	// link at once.
	Pin func(*Peer) error
}

// Serve runs one exchange on c. On success the window's code is used up and
// the new peer is returned for the caller to pin.
// StartWait is how long a pairing peer has between its hello and the
// exchange's first message.
const StartWait = 5 * time.Second

// ErrStalled: the peer stopped answering in the middle of an exchange.
var ErrStalled = errors.New("pairing stalled")

func (r *Responder) Serve(ctx context.Context, c Conn) (*Peer, error) {
	hello, err := recvType(ctx, c, "hello")
	if err != nil {
		return nil, err
	}
	att, err := r.Window.Begin()
	if err != nil {
		_ = c.Send(ctx, errorMessage(err))
		return nil, err
	}
	guessed := false
	defer func() {
		if guessed {
			att.Fail()
		} else {
			att.Abandon()
		}
	}()
	aID, aFP := hello.ID, hello.Fingerprint
	bID, bFP := r.Identity.ID(), r.Identity.Fingerprint()
	if err := c.Send(ctx, &Message{Type: "hello", ID: bID, Fingerprint: bFP}); err != nil {
		return nil, err
	}
	// The window is held for this exchange from here: a peer that says
	// hello and then waits holds it only briefly, and that counts as a
	// failed attempt.
	sctx, scancel := context.WithTimeout(ctx, StartWait)
	start, err := recvType(sctx, c, "start")
	// The read gives up at the deadline, a moment before the context may
	// say so: the clock decides.
	dl, _ := sctx.Deadline()
	stalled := ctx.Err() == nil && !time.Now().Before(dl)
	scancel()
	if err != nil {
		if stalled {
			guessed = true
			return nil, fmt.Errorf("%w: the computer sent nothing within %s of its hello", ErrStalled, StartWait)
		}
		return nil, err
	}
	msgB, secret, err := cpace.Exchange(att.Code(), contextFor(aID, aFP, bID, bFP), start.Data)
	if err != nil {
		_ = c.Send(ctx, errorMessage(ErrBadMessage))
		return nil, fmt.Errorf("%w: %w", ErrBadMessage, err)
	}
	k := deriveKeys(secret, aID, aFP, bID, bFP, start.Data, msgB)
	// From here the peer can test one code against our confirmation.
	guessed = true
	if err := c.Send(ctx, &Message{Type: "reply", Data: msgB, MAC: mac(k.macB, k.transcript, "hub")}); err != nil {
		return nil, err
	}
	conf, err := recvType(ctx, c, "confirm")
	if err != nil {
		var pe *errcode.Error
		if errors.As(err, &pe) {
			return nil, ErrWrongCode
		}
		return nil, err
	}
	if !hmac.Equal(conf.MAC, mac(k.macA, k.transcript, "companion")) {
		_ = c.Send(ctx, errorMessage(ErrWrongCode))
		return nil, ErrWrongCode
	}
	peer, err := openPeer(k.sealA, conf.Sealed, k.transcript, "companion", aID, aFP)
	if err != nil {
		_ = c.Send(ctx, errorMessage(err))
		return nil, err
	}
	sealed, err := r.Identity.sealKeys(k.sealB, k.transcript, "hub", r.Name, "")
	if err != nil {
		return nil, err
	}
	if r.Pin != nil {
		if err := r.Pin(peer); err != nil {
			_ = c.Send(ctx, errorMessage(err))
			return nil, err
		}
	}
	if err := c.Send(ctx, &Message{Type: "keys", Sealed: sealed}); err != nil {
		return nil, err
	}
	guessed = false
	att.Succeed()
	return peer, nil
}

// Equal reports whether two peers are the same pinned keys.
func (p *Peer) Equal(q *Peer) bool {
	return p.ID == q.ID && bytes.Equal(p.PublicKey, q.PublicKey) && bytes.Equal(p.CertDER, q.CertDER)
}
