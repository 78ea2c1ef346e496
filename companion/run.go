package companion

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lowkeyhq/lowkey/devicectl"
	"github.com/lowkeyhq/lowkey/errcode"
	"github.com/lowkeyhq/lowkey/pairing"
	"github.com/pion/webrtc/v4"
)

// Config is everything the companion's run loop needs; flags map onto it.
type Config struct {
	State State
	// BrowserPath chooses the Chromium binary (default: the system one).
	BrowserPath string
	// Headless runs a launched browser without a window.
	Headless bool
	// Display is the X display for the screen and a windowed browser.
	Display string
	// AttachChrome is the user data directory of a running Chrome to
	// drive instead of launching one (the person allows it by passing it).
	AttachChrome string
	// NoMDNS stops re-finding the box on the LAN when its address fails.
	NoMDNS bool
	// LoopbackICE keeps WebRTC on loopback (tests, the demo).
	LoopbackICE bool
	// RelayOnly links through a relay only, never to an address of the
	// box directly (benchmarks of the relayed path).
	RelayOnly bool
	// AskWait is how long a question waits for the person here before it
	// is a Deny (default DefaultAskWait).
	AskWait time.Duration
	Version string
	Logger  *slog.Logger
}

// Status is what "lowkey-companion status" shows.
type Status struct {
	PID   int    `json:"pid"`
	Hub   string `json:"hub"`
	HubID string `json:"hub_id"`
	Addr  string `json:"addr"`
	Link  string `json:"link"` // connecting, online, offline, unpaired, stopped
	// Path is how the link goes while online: direct, direct-tcp, relayed.
	Path      string    `json:"path,omitempty"`
	Since     time.Time `json:"since"`
	LastError string    `json:"last_error,omitempty"`
	Grants    []string  `json:"grants"`
	// Questions wait for the person here (see AnswerURL and
	// "lowkey-companion approve|deny").
	Questions []Question `json:"questions,omitempty"`
	// AnswerAddr is the answer page's loopback address; AnswerURL opens it
	// with its token.
	AnswerAddr string `json:"answer_addr,omitempty"`
	AnswerURL  string `json:"answer_url,omitempty"`
}

// Runner keeps the link to the pinned box up.
type Runner struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	status Status
	// linkUp is signalled each time a link comes up (tests).
	linkUp chan struct{}
	// link is the current link (nil between links): questions are told to
	// the box on it.
	link atomic.Pointer[devicectl.Link]
	ask  *asker
}

// NewRunner prepares a run loop.
func NewRunner(cfg Config) *Runner {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	return &Runner{cfg: cfg, log: cfg.Logger, linkUp: make(chan struct{}, 16)}
}

// LinkUp is signalled each time the link comes up.
func (r *Runner) LinkUp() <-chan struct{} { return r.linkUp }

// Status is the loop's current state.
func (r *Runner) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

func (r *Runner) setStatus(link string, err error) {
	r.mu.Lock()
	if r.status.Link != link {
		r.status.Since = time.Now().UTC()
	}
	r.status.Link = link
	if link != "online" {
		r.status.Path = ""
	}
	// The last failure stays on show while the next attempt is made.
	switch {
	case err != nil:
		r.status.LastError = err.Error()
	case link == "online":
		r.status.LastError = ""
	}
	r.status.PID = os.Getpid()
	if r.status.Grants == nil {
		r.status.Grants = []string{}
	}
	s := r.status
	r.mu.Unlock()
	b, _ := json.MarshalIndent(s, "", "  ")
	if err := pairing.WriteFileAtomic(r.cfg.State.path("status.json"), b); err != nil {
		r.log.Debug("could not write status", "err", err)
	}
}

// Running says whether the companion that wrote the status is still alive.
func (s *Status) Running() bool {
	if s.PID <= 0 || s.Link == "stopped" || s.Link == "unpaired" {
		return false
	}
	return processAlive(s.PID)
}

// ReadStatus reads what a running companion last reported.
func ReadStatus(st State) (*Status, error) {
	b, err := os.ReadFile(st.path("status.json"))
	if err != nil {
		return nil, err
	}
	var s Status
	return &s, json.Unmarshal(b, &s)
}

// Answer answers an open question of this runner (tests, and callers in
// the same process).
func (r *Runner) Answer(id, answer string) (*Question, error) {
	r.mu.Lock()
	a := r.ask
	r.mu.Unlock()
	if a == nil {
		return nil, errors.New("not running")
	}
	return a.answer(id, answer)
}

// Run keeps the link up until ctx ends (nil) or the box says this computer
// was unpaired (an error pairing.Unpaired recognises).
func (r *Runner) Run(ctx context.Context) error {
	id, err := r.cfg.State.Identity()
	if err != nil {
		return err
	}
	hub, err := r.cfg.State.Hub()
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.status = Status{Hub: hub.Peer.Name, HubID: hub.Peer.ID, Addr: hub.Addr}
	r.mu.Unlock()
	defer func() {
		if ctx.Err() != nil {
			r.setStatus("stopped", nil)
		}
	}()
	var (
		ctl  *control
		desk *desktop
	)
	// The desktop's own indicator and questions, where a session bus
	// offers them; its pause is the same kill switch as "pause".
	pause := func() {
		if err := r.cfg.State.SetPaused(true); err != nil {
			r.log.Error("could not pause", "err", err)
			return
		}
		r.log.Warn("paused from the desktop: every device action is refused here until \"lowkey-companion resume\"")
		desk.indicate(r.Status().Grants, true)
	}
	desk = openDesktop(r.log, func(id, answer string) {
		if _, err := ctl.ask.answer(id, answer); err != nil {
			r.log.Info("an answer from the desktop", "err", err)
		}
	}, pause)
	if desk != nil {
		desk.box = hub.Peer.Name
	}
	defer desk.close()
	ctl = newControl(r.cfg, r.log, func(active []string) {
		r.mu.Lock()
		r.status.Grants = active
		r.mu.Unlock()
		r.setStatus(r.Status().Link, nil)
		paused, _ := r.cfg.State.Paused()
		announce(r.log, r.cfg.Display, active, desk == nil)
		desk.indicate(active, paused)
	})
	defer ctl.close()
	ctl.ask.tell = func(n devicectl.ConsentNotice) {
		if l := r.link.Load(); l != nil {
			if err := l.Notify(n.Notice()); err != nil {
				r.log.Debug("the box did not hear about a question", "err", err)
			}
		}
	}
	shown := map[string]bool{} // the open questions already shown
	ctl.ask.changed = func(qs []Question) {
		r.mu.Lock()
		r.status.Questions = qs
		var fresh []Question
		open := map[string]bool{}
		for _, q := range qs {
			open[q.ID] = true
			if !shown[q.ID] {
				fresh = append(fresh, q)
			}
		}
		shown = open
		r.mu.Unlock()
		r.setStatus(r.Status().Link, nil)
		if desk != nil {
			desk.ask(qs, r.Status().AnswerURL)
		} else {
			showQuestions(r.log, r.cfg.Display, fresh, r.Status().AnswerURL)
		}
	}
	r.mu.Lock()
	r.ask = ctl.ask
	r.mu.Unlock()
	page, err := startAnswerServer(r.cfg.State, ctl.ask)
	if err != nil {
		return err
	}
	defer page.Close()
	r.mu.Lock()
	r.status.AnswerAddr, r.status.AnswerURL = page.ln.Addr().String(), page.URL()
	r.mu.Unlock()
	r.log.Info("questions from the box are answered here", "page", "http://"+page.ln.Addr().String()+"/ (the full address, with its token, is in lowkey-companion status)")
	failures := 0
	var (
		browsing sync.Mutex
		wg       sync.WaitGroup
	)
	defer wg.Wait()
	for {
		r.setStatus("connecting", nil)
		start := time.Now()
		err := r.linkOnce(ctx, id, hub, ctl)
		ctl.clear()
		if ctx.Err() != nil {
			return nil
		}
		if pairing.Unpaired(err) {
			r.setStatus("unpaired", err)
			r.log.Error("the box refused this computer", "err", err)
			return err
		}
		r.setStatus("offline", err)
		r.log.Warn("link down", "hub", r.addr(), "err", err)
		if time.Since(start) > 30*time.Second {
			failures = 0
		}
		failures++
		if failures%3 == 0 && !r.cfg.NoMDNS && browsing.TryLock() {
			// Look on the LAN while the loop keeps trying the last address.
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer browsing.Unlock()
				r.rediscover(ctx, hub)
			}()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff(failures)):
		}
	}
}

// backoff grows from 100 ms, jittered, and stays at most a second for the
// first attempts so a restarted box is found again within a few seconds.
func backoff(n int) time.Duration {
	d := 100 * time.Millisecond << min(n-1, 10)
	limit := time.Second
	if n > 30 {
		limit = 15 * time.Second
	}
	d = min(d, limit)
	return d/2 + rand.N(d/2+1)
}

// rediscover looks for the pinned box on the LAN, by its key fingerprint
// prefix, in case its address changed. The link itself authenticates it.
func (r *Runner) rediscover(ctx context.Context, hub *HubRecord) {
	found, err := pairing.Browse(ctx, 2*time.Second)
	if err != nil {
		r.log.Debug("mDNS browse failed", "err", err)
		return
	}
	want := pairing.KeyFingerprintPrefix(hub.Peer.PublicKey)
	old := r.addr()
	for _, f := range found {
		if f.KeyPrefix == want && f.Addr != old {
			r.log.Info("found the box at a new address", "old", old, "new", f.Addr)
			r.mu.Lock()
			r.status.Addr = f.Addr
			r.mu.Unlock()
			rec := *hub
			rec.Addr = f.Addr
			if err := r.cfg.State.SaveHub(&rec); err != nil {
				r.log.Warn("could not save the new address", "err", err)
			}
			return
		}
	}
}

// addr is the box's address to dial next.
func (r *Runner) addr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status.Addr
}

func (r *Runner) linkOnce(ctx context.Context, id *pairing.Identity, hub *HubRecord, ctl *control) error {
	addr := r.addr()
	c, err := dial(ctx, addr, "/api/v1/link", devicectl.MaxSignalSize, hub.Peer.Fingerprint, hub.TLS)
	if err != nil {
		return err
	}
	defer c.Close()
	auth, cancelAuth := context.WithTimeout(ctx, 10*time.Second)
	binding, err := pairing.AuthenticateToHub(auth, c.Conn, id, hub.Peer.ID, hub.Peer.PublicKey, "link")
	cancelAuth()
	if err != nil {
		return err
	}
	sig := &devicectl.SignedSignaler{T: c.Conn, Key: id.Key, PeerKey: hub.Peer.PublicKey, Role: "companion", PeerRole: "hub", Binding: binding}
	setup, cancel := context.WithTimeout(ctx, 15*time.Second)
	live := &liveChannel{}
	conn, err := devicectl.Answer(setup, devicectl.PeerConfig{
		Identity: id, PeerFingerprint: hub.Peer.Fingerprint, LoopbackOnly: r.cfg.LoopbackICE,
		BoxAddr: addr, RelayOnly: r.cfg.RelayOnly,
		Logger: r.log, Link: devicectl.LinkConfig{Handler: ctl.handle, OnNotice: func(n devicectl.Notice) { ctl.notice(n, live) }},
	}, sig)
	if conn != nil {
		live.jpeg.Store(conn.Live)
		live.updates.Store(conn.Updates)
	}
	cancel()
	if conn == nil {
		return err
	}
	defer func() {
		conn.Close()
		_ = c.Close()
		conn.Wait()
	}()
	if err != nil {
		return revokedOr(err)
	}
	r.link.Store(conn.Link)
	defer r.link.Store(nil)
	r.setPath(conn.Path())
	r.setStatus("online", nil)
	r.log.Info("link up", "hub", hub.Peer.Name, "addr", addr, "path", conn.Path())
	select {
	case r.linkUp <- struct{}{}:
	default:
	}
	// The path may change under the link (a restart, a move to direct).
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-conn.Done():
			return revokedOr(conn.Err())
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			if p := conn.Path(); p != "" && p != r.Status().Path {
				r.log.Info("the link's path changed", "path", p)
				r.setPath(p)
				r.setStatus("online", nil)
			}
		}
	}
}

func (r *Runner) setPath(p string) {
	r.mu.Lock()
	r.status.Path = p
	r.mu.Unlock()
}

// liveChannel sends live frames on the link's data channel for the mode:
// whole JPEGs on the one that drops what is late, updates on the one that
// loses nothing.
type liveChannel struct {
	jpeg, updates atomic.Pointer[webrtc.DataChannel]
}

func (l *liveChannel) channel(mode string) *webrtc.DataChannel {
	if mode == devicectl.LiveUpdates {
		return l.updates.Load()
	}
	return l.jpeg.Load()
}

func (l *liveChannel) send(mode string, frame uint32, data []byte) bool {
	dc := l.channel(mode)
	if dc == nil || dc.BufferedAmount() > 4<<20 {
		return false // far behind: drop this frame
	}
	for _, part := range devicectl.LiveParts(frame, data) {
		if dc.Send(part) != nil {
			return false
		}
	}
	return true
}

func (l *liveChannel) buffered(mode string) uint64 {
	if dc := l.channel(mode); dc != nil {
		return dc.BufferedAmount()
	}
	return 0
}

func revokedOr(err error) error {
	if errcode.Has(err, errcode.Revoked) {
		return err
	}
	if errors.Is(err, devicectl.ErrPeerEnded) {
		return fmt.Errorf("the box ended the link: %w", err)
	}
	return err
}
