package devicectl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"

	"github.com/lowkeyhq/lowkey/errcode"
	"github.com/lowkeyhq/lowkey/pairing"
)

// ErrFingerprint means the peer's DTLS certificate is not the pinned one:
// someone is between the box and the computer, or the pairing is stale.
var ErrFingerprint = errors.New("the peer's DTLS certificate does not match the one pinned at pairing")

// PeerConfig sets up one side of a peer connection.
type PeerConfig struct {
	Identity *pairing.Identity
	// PeerFingerprint is the pinned DTLS fingerprint of the other side.
	PeerFingerprint string
	// LoopbackOnly keeps ICE on 127.0.0.1 (tests and benchmarks).
	LoopbackOnly bool
	// TCPMux, on the box, takes ICE over TCP on the box's web port (the
	// computer dials it from its side where UDP does not pass).
	TCPMux ice.TCPMux
	// ICEServers are STUN/TURN servers this side gathers candidates from;
	// the box also names them to the computer in its offers.
	ICEServers []ICEServer
	// Relay, on the box, is the credential for its own relay that its
	// offers give the computer (nil: no relay of its own).
	Relay *RelayCredential
	// BoxAddr, on the computer, is the host:port it reached the box at:
	// where the box's relay answers TURN over TCP.
	BoxAddr string
	// RelayOnly uses relayed candidates only (no address of either side is
	// tried directly).
	RelayOnly bool
	// UpgradeEvery, on the box, is how soon a link that is not direct UDP
	// tries again for a direct path (an ICE restart), doubling each time
	// up to maxUpgradeWait; 0 never tries.
	UpgradeEvery time.Duration
	Link         LinkConfig
	Logger       *slog.Logger
}

// maxUpgradeWait bounds the wait between tries for a direct path.
const maxUpgradeWait = 5 * time.Minute

// Conn is an established peer connection and the link on it. It lives as
// long as both the peer connection and its signaling do.
type Conn struct {
	Link *Link
	// Live carries live screen frames as whole JPEGs: unordered and never
	// retransmitted, a late frame is dropped. Updates carries the updates
	// mode's (each builds on the one before, so none may be lost): ordered
	// and reliable, and the computer keeps what waits in it short.
	Live, Updates *webrtc.DataChannel

	pc      *webrtc.PeerConnection
	sig     Signaler
	cfg     PeerConfig
	offerer bool
	log     *slog.Logger

	// ctx is the connection's own: every signaling wait uses it, and its
	// end (fail, Close) cancels them.
	ctx    context.Context
	cancel context.CancelFunc

	opened   chan struct{}
	done     chan struct{}
	once     sync.Once
	errMu    sync.Mutex
	err      error
	wg       sync.WaitGroup
	restarts int
	// descMu puts a description out before the candidates gathered for
	// it, and one offer out at a time.
	descMu sync.Mutex

	// Touched only by the signal reader.
	remoteSet bool
	pending   []webrtc.ICECandidateInit
}

func newAPI(cfg PeerConfig) *webrtc.API {
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	// UDP first (ICE prefers it); TCP where UDP does not pass: passive on
	// the box's port, active from the computer.
	types := []webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6, webrtc.NetworkTypeTCP4, webrtc.NetworkTypeTCP6}
	if cfg.RelayOnly {
		// ICE dials the other side's TCP candidates whatever the policy
		// says; a relayed-only side does not do TCP itself (the relay
		// still may be reached over TCP).
		types = types[:2]
	}
	se.SetNetworkTypes(types)
	if cfg.TCPMux != nil {
		se.SetICETCPMux(cfg.TCPMux)
	}
	// Notice a blip quickly (ICE restart), give up on a dead path soon after.
	se.SetICETimeouts(3*time.Second, 8*time.Second, time.Second)
	// A receive window well above what the link keeps in flight (HighWater):
	// pion sends no window update when the reader frees space, so a window
	// that fills stalls the sender for its 200 ms delayed-ack timer.
	se.SetSCTPMaxReceiveBufferSize(1 << 20)
	if n, err := NewNet(); err == nil {
		se.SetNet(n)
	}
	if cfg.LoopbackOnly {
		se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() && ip.To4() != nil })
	}
	return webrtc.NewAPI(webrtc.WithSettingEngine(se))
}

func newConn(ctx context.Context, cfg PeerConfig, sig Signaler, offerer bool) (*Conn, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Link.Logger == nil {
		cfg.Link.Logger = cfg.Logger
	}
	if err := CheckICEServers(cfg.ICEServers); err != nil {
		return nil, err
	}
	conf := webrtc.Configuration{Certificates: []webrtc.Certificate{cfg.Identity.Cert}, ICEServers: webrtcServers(cfg.ICEServers)}
	if cfg.RelayOnly {
		conf.ICETransportPolicy = webrtc.ICETransportPolicyRelay
	}
	pc, err := newAPI(cfg).NewPeerConnection(conf)
	if err != nil {
		return nil, fmt.Errorf("peer connection: %w", err)
	}
	c := &Conn{pc: pc, sig: sig, cfg: cfg, offerer: offerer, log: cfg.Logger,
		opened: make(chan struct{}), done: make(chan struct{})}
	// The connection outlives the set-up's deadline; its end (fail,
	// Close) cancels every signaling wait.
	c.ctx, c.cancel = context.WithCancel(context.WithoutCancel(ctx))
	unordered, ordered := false, true
	id0, id1 := uint16(0), uint16(1)
	neg := true
	ctl, err := pc.CreateDataChannel("ctl", &webrtc.DataChannelInit{Negotiated: &neg, ID: &id0, Ordered: &unordered})
	if err == nil {
		var bulk *webrtc.DataChannel
		bulk, err = pc.CreateDataChannel("bulk", &webrtc.DataChannelInit{Negotiated: &neg, ID: &id1, Ordered: &ordered})
		if err == nil {
			// The live screen: unordered and never retransmitted, so a late
			// frame is dropped rather than holding up the next one.
			id2, none := uint16(2), uint16(0)
			c.Live, err = pc.CreateDataChannel("live", &webrtc.DataChannelInit{Negotiated: &neg, ID: &id2, Ordered: &unordered, MaxRetransmits: &none})
		}
		if err == nil {
			id3 := uint16(3)
			c.Updates, err = pc.CreateDataChannel("updates", &webrtc.DataChannelInit{Negotiated: &neg, ID: &id3, Ordered: &ordered})
		}
		if err == nil {
			c.Link = NewLink(c.ctx, ctl, bulk, cfg.Link)
			var openMu sync.Mutex
			openCount := 0
			onOpen := func() {
				openMu.Lock()
				defer openMu.Unlock()
				openCount++
				if openCount == 2 {
					c.verifyAndOpen()
				}
			}
			ctl.OnOpen(onOpen)
			bulk.OnOpen(onOpen)
		}
	}
	if err != nil {
		c.cancel()
		_ = pc.Close()
		return nil, fmt.Errorf("data channels: %w", err)
	}
	pc.OnICECandidate(func(cand *webrtc.ICECandidate) {
		if cand == nil {
			return
		}
		init := cand.ToJSON()
		c.descMu.Lock()
		err := c.sig.Send(c.ctx, Signal{Type: "candidate", Candidate: &init})
		c.descMu.Unlock()
		if err != nil {
			c.fail(fmt.Errorf("send candidate: %w", err))
		}
	})
	pc.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) {
		c.log.Debug("ICE state", "state", s.String())
		if s == webrtc.ICEConnectionStateDisconnected && c.offerer {
			go c.restartICE()
		}
	})
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		switch s {
		case webrtc.PeerConnectionStateFailed:
			c.fail(errors.New("the peer connection failed"))
		case webrtc.PeerConnectionStateClosed:
			c.fail(errors.New("the peer connection closed"))
		}
	})
	go func() {
		<-c.Link.Done()
		c.fail(ErrLinkClosed)
	}()
	return c, nil
}

// verifyAndOpen runs once both channels are open: the DTLS certificate the
// peer presented must be the pinned one, whatever the SDP said.
func (c *Conn) verifyAndOpen() {
	remote := c.pc.SCTP().Transport().GetRemoteCertificate()
	if !pairing.SameFingerprint(pairing.CertFingerprint(remote), c.cfg.PeerFingerprint) {
		c.fail(ErrFingerprint)
		return
	}
	select {
	case <-c.opened:
	default:
		close(c.opened)
	}
}

// checkSDP refuses a description whose fingerprints are not the pinned one.
func (c *Conn) checkSDP(sdp string) error {
	n := 0
	for _, line := range strings.Split(sdp, "\n") {
		line = strings.TrimSpace(line)
		v, ok := strings.CutPrefix(line, "a=fingerprint:")
		if !ok {
			continue
		}
		alg, fp, _ := strings.Cut(v, " ")
		if !strings.EqualFold(alg, "sha-256") || !pairing.SameFingerprint(fp, c.cfg.PeerFingerprint) {
			return ErrFingerprint
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("%w: the description carries none", ErrFingerprint)
	}
	return nil
}

// Offer is the box's side: it makes the offer and returns once the link is
// up and the peer's certificate matched the pinned one.
func Offer(ctx context.Context, cfg PeerConfig, sig Signaler) (*Conn, error) {
	c, err := newConn(ctx, cfg, sig, true)
	if err != nil {
		return nil, err
	}
	c.wg.Add(1)
	go c.readSignals()
	if err := c.sendOffer(false); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.waitOpen(ctx); err != nil {
		return c, err
	}
	if cfg.UpgradeEvery > 0 {
		c.wg.Add(1)
		go c.upgrade()
	}
	return c, nil
}

// upgrade tries again for a direct path while the link is relayed or over
// TCP: an ICE restart gathers afresh and ICE picks the best pair that
// works. Calls wait out the restart on the same association.
func (c *Conn) upgrade() {
	defer c.wg.Done()
	wait := c.cfg.UpgradeEvery
	for {
		select {
		case <-c.done:
			return
		case <-time.After(wait):
		}
		path := c.Path()
		if path == PathDirect || path == "" || c.pc.SignalingState() != webrtc.SignalingStateStable {
			wait = c.cfg.UpgradeEvery
			continue
		}
		c.log.Info("trying for a direct path", "path", path)
		if err := c.sendOffer(true); err != nil {
			c.fail(fmt.Errorf("ICE restart: %w", err))
			return
		}
		wait = min(2*wait, maxUpgradeWait)
	}
}

// Answer is the computer's side: it answers the box's offer.
func Answer(ctx context.Context, cfg PeerConfig, sig Signaler) (*Conn, error) {
	c, err := newConn(ctx, cfg, sig, false)
	if err != nil {
		return nil, err
	}
	c.wg.Add(1)
	go c.readSignals()
	return c, c.waitOpen(ctx)
}

func (c *Conn) waitOpen(ctx context.Context) error {
	select {
	case <-c.opened:
		return nil
	case <-c.done:
		return c.Err()
	case <-ctx.Done():
		c.fail(fmt.Errorf("link set-up: %w", ctx.Err()))
		c.Close()
		return c.Err()
	}
}

func (c *Conn) sendOffer(restart bool) error {
	// One offer at a time: a restart after a disconnect and a try for a
	// direct path may come together.
	c.descMu.Lock()
	defer c.descMu.Unlock()
	offer, err := c.pc.CreateOffer(&webrtc.OfferOptions{ICERestart: restart})
	if err != nil {
		return fmt.Errorf("offer: %w", err)
	}
	if err := c.pc.SetLocalDescription(offer); err != nil {
		return fmt.Errorf("offer: %w", err)
	}
	return c.sig.Send(c.ctx, Signal{Type: "offer", SDP: offer.SDP, Relay: c.cfg.Relay, ICEServers: c.cfg.ICEServers})
}

// useRelays, on the computer, takes the relays the box's offer names
// before ICE gathers for the answer.
func (c *Conn) useRelays(s Signal) error {
	servers := append([]ICEServer(nil), s.ICEServers...)
	if s.Relay != nil && c.cfg.BoxAddr != "" {
		servers = append(servers, ICEServer{URLs: []string{"turn:" + c.cfg.BoxAddr + "?transport=tcp"},
			Username: s.Relay.Username, Credential: s.Relay.Credential})
	}
	servers = append(servers, c.cfg.ICEServers...)
	if err := CheckICEServers(servers); err != nil {
		return fmt.Errorf("%w: %w", ErrBadSignal, err)
	}
	conf := c.pc.GetConfiguration()
	conf.ICEServers = webrtcServers(servers)
	if err := c.pc.SetConfiguration(conf); err != nil {
		return fmt.Errorf("%w: relays: %w", ErrBadSignal, err)
	}
	return nil
}

func (c *Conn) restartICE() {
	select {
	case <-c.done:
		return
	default:
	}
	c.errMu.Lock()
	c.restarts++
	c.errMu.Unlock()
	c.log.Info("link disconnected; restarting ICE")
	if err := c.sendOffer(true); err != nil {
		c.fail(fmt.Errorf("ICE restart: %w", err))
	}
}

// Restarts counts ICE restarts after a disconnect on this connection.
func (c *Conn) Restarts() int {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return c.restarts
}

func (c *Conn) readSignals() {
	defer c.wg.Done()
	for {
		s, err := c.sig.Recv(c.ctx)
		if err != nil {
			c.fail(fmt.Errorf("signaling: %w", err))
			return
		}
		if err := c.handle(s); err != nil {
			c.fail(err)
			return
		}
	}
}

// ErrPeerEnded is the cause of the error a link ends with when the other
// side said goodbye; that error's code is the reason it gave.
var ErrPeerEnded = errors.New("the peer ended the link")

// byeError is the error of a goodbye with its reason and words.
func byeError(reason errcode.Code, message string) *errcode.Error {
	if message == "" {
		message = ErrPeerEnded.Error() + ": " + string(reason)
	}
	return &errcode.Error{Code: reason, Message: message, Err: ErrPeerEnded}
}

func (c *Conn) handle(s Signal) error {
	switch s.Type {
	case "offer":
		if c.offerer {
			return fmt.Errorf("%w: unexpected offer", ErrBadSignal)
		}
		if err := c.checkSDP(s.SDP); err != nil {
			return err
		}
		if err := c.useRelays(s); err != nil {
			return err
		}
		if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: s.SDP}); err != nil {
			return fmt.Errorf("%w: offer: %w", ErrBadSignal, err)
		}
		if err := c.remoteReady(); err != nil {
			return err
		}
		ans, err := c.pc.CreateAnswer(nil)
		if err != nil {
			return fmt.Errorf("answer: %w", err)
		}
		c.descMu.Lock()
		defer c.descMu.Unlock()
		if err := c.pc.SetLocalDescription(ans); err != nil {
			return fmt.Errorf("answer: %w", err)
		}
		return c.sig.Send(c.ctx, Signal{Type: "answer", SDP: ans.SDP})
	case "answer":
		if !c.offerer {
			return fmt.Errorf("%w: unexpected answer", ErrBadSignal)
		}
		if err := c.checkSDP(s.SDP); err != nil {
			return err
		}
		if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: s.SDP}); err != nil {
			return fmt.Errorf("%w: answer: %w", ErrBadSignal, err)
		}
		return c.remoteReady()
	case "candidate":
		if s.Candidate == nil {
			return nil
		}
		if !c.remoteSet {
			if len(c.pending) < 64 {
				c.pending = append(c.pending, *s.Candidate)
			}
			return nil
		}
		if err := c.pc.AddICECandidate(*s.Candidate); err != nil {
			c.log.Debug("ignored a remote candidate", "err", err)
		}
		return nil
	case "bye":
		return byeError(errcode.Code(s.Reason), s.Message)
	}
	return fmt.Errorf("%w: %q during a link", ErrBadSignal, s.Type)
}

func (c *Conn) remoteReady() error {
	c.remoteSet = true
	for _, cand := range c.pending {
		if err := c.pc.AddICECandidate(cand); err != nil {
			c.log.Debug("ignored a remote candidate", "err", err)
		}
	}
	c.pending = nil
	return nil
}

func (c *Conn) fail(err error) {
	c.once.Do(func() {
		c.errMu.Lock()
		c.err = err
		c.errMu.Unlock()
		close(c.done)
		c.cancel()
	})
}

// Done is closed when the connection ends.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err says why the connection ended.
func (c *Conn) Err() error {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return c.err
}

// byeTime bounds the goodbye: the link is ending whether it arrives or not.
const byeTime = 2 * time.Second

// Bye tells the peer why the link ends, then closes it.
func (c *Conn) Bye(reason errcode.Code, message string) {
	ctx, cancel := context.WithTimeout(c.ctx, byeTime)
	defer cancel()
	if err := c.sig.Send(ctx, Signal{Type: "bye", Reason: string(reason), Message: message}); err != nil {
		c.log.Debug("the goodbye did not go out", "err", err)
	}
	c.fail(byeError(reason, message))
	c.Close()
}

// Close tears the connection down. The caller must also close the
// signaling transport so the signal reader returns; Close waits for it.
func (c *Conn) Close() {
	c.fail(errors.New("closed"))
	c.Link.Close()
	_ = c.pc.Close()
}

// Wait waits for the signal reader after the transport is closed.
func (c *Conn) Wait() { c.wg.Wait() }

// Link paths, as people read them.
const (
	PathDirect    = "direct"     // UDP between the two sides (LAN or server-reflexive)
	PathDirectTCP = "direct-tcp" // ICE over TCP to the box
	PathRelayed   = "relayed"    // through a TURN relay
)

// PathLabel is how a path reads to a person: "direct (tcp)" for
// PathDirectTCP, the others as they are.
func PathLabel(path string) string {
	if path == PathDirectTCP {
		return "direct (tcp)"
	}
	return path
}

// Path says how the link's packets go now: PathDirect, PathDirectTCP or
// PathRelayed; "" before ICE has chosen a pair.
func (c *Conn) Path() string {
	sctp := c.pc.SCTP()
	if sctp == nil {
		return ""
	}
	pair, err := sctp.Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil || pair.Local == nil || pair.Remote == nil {
		return ""
	}
	switch {
	case pair.Local.Typ == webrtc.ICECandidateTypeRelay || pair.Remote.Typ == webrtc.ICECandidateTypeRelay:
		return PathRelayed
	case pair.Local.Protocol == webrtc.ICEProtocolTCP:
		return PathDirectTCP
	}
	return PathDirect
}
