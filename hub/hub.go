package hub

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/gofrs/flock"
	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"

	"github.com/lowkeyhq/lowkey/devicectl"
	"github.com/lowkeyhq/lowkey/pages"
	"github.com/lowkeyhq/lowkey/pairing"
	"github.com/lowkeyhq/lowkey/sessions"
	"github.com/lowkeyhq/lowkey/sessions/cgroup"
	"github.com/lowkeyhq/lowkey/sessions/sandbox"
)

// Config is everything the hub needs; flags map onto it one to one.
type Config struct {
	// DataDir holds the store, the identity and hub.sock. It is the hub's
	// own (0700); no worker ever sees it.
	DataDir string
	// WorkDir holds the sessions' working directories, outside DataDir
	// (default: /var/lib/lowkey-work when the hub is root, DataDir+"-work"
	// otherwise). It is the hub's own; each session's directory in it is
	// the agent account's.
	WorkDir string
	// AgentUser is the account turns and jobs run as when the hub is
	// root (default lowkey-agent, made when missing).
	AgentUser string
	// AgentPath is the PATH of turns and jobs, where agent CLIs such as
	// claude are found (default: the system's directories).
	AgentPath string
	// AgentBins are explicit paths of presets' CLIs, by preset name.
	AgentBins map[string]string
	// Listen is the web app and API address (default 127.0.0.1:7780).
	Listen string
	// PagesListen is where published pages are served, on their own
	// origin ("" serves none; the command's default is 127.0.0.1:7781).
	PagesListen string
	// PagesOrigin is the URL people reach the pages at, when it is not
	// PagesListen itself (another host name behind a proxy). It must not
	// be the hub's own origin.
	PagesOrigin string
	// Name is how the box shows itself on the LAN and to companions.
	Name string
	// NoMDNS turns off the LAN advertisement.
	NoMDNS bool
	// SessionMemory is the default memory budget of a session, in bytes.
	SessionMemory int64
	// LoopbackICE keeps WebRTC on loopback (tests, the demo).
	LoopbackICE bool
	// Policy overrides the device action policy (DATA/policy.json too).
	Policy map[string]devicectl.Decision
	// ConfirmTimeout is how long a confirmation waits before it is a No
	// (default 2 minutes).
	ConfirmTimeout time.Duration
	// TLSCert and TLSKey are the owner's own HTTPS certificate. Without
	// them, a hub listening beyond loopback serves HTTPS with the box's
	// identity certificate (its fingerprint is printed at start).
	TLSCert, TLSKey string
	// WorkerBin runs the built-in agents (default: this program, which
	// must answer "agent builtin|openai").
	WorkerBin string
	// BodyTimeout is how long a client has to send a request body
	// (default 30 s; a page upload has 5 minutes).
	BodyTimeout time.Duration
	// StallAfter marks a turn stalled after this long without output
	// (default 1 minute).
	StallAfter time.Duration
	// UnsafeSkipGrantCheck turns off the box's own grant check, leaving
	// only the computer's. Tests use it to show that the computer enforces
	// grants by itself; nothing else should.
	UnsafeSkipGrantCheck bool
	// ICEServers are STUN/TURN servers the owner runs or rents: both the
	// box and its computers use them to find a path.
	ICEServers []devicectl.ICEServer
	// NoRelay turns off the box's own TURN relay on its web port.
	NoRelay bool
	// RelayOnly keeps the box's side of every link to relayed candidates
	// (benchmarks of the relayed path).
	RelayOnly bool
	// UpgradeEvery is how soon a link that is not direct UDP tries for a
	// direct path (default 15 s, doubling to 5 minutes; negative: never).
	UpgradeEvery time.Duration
	// BackupEvery is how often the box backs itself up into BackupDir
	// (0: never), keeping the newest BackupKeep archives.
	BackupEvery time.Duration
	// BackupDir is where timed backups go (default DataDir/backups).
	BackupDir string
	// BackupKeep is how many timed backups are kept (default 7).
	BackupKeep int
	// Version is reported in mDNS and the API.
	Version string
	Logger  *slog.Logger
}

func (c *Config) fill() {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:7780"
	}
	if c.Name == "" {
		c.Name, _ = os.Hostname()
		if c.Name == "" {
			c.Name = "lowkey"
		}
	}
	if c.BodyTimeout <= 0 {
		c.BodyTimeout = bodyTime
	}
	if c.SessionMemory == 0 {
		c.SessionMemory = 512 << 20
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	if c.UpgradeEvery == 0 {
		c.UpgradeEvery = 15 * time.Second
	}
	if c.BackupDir == "" && c.DataDir != "" {
		c.BackupDir = filepath.Join(c.DataDir, "backups")
	}
	if c.BackupKeep <= 0 {
		c.BackupKeep = 7
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Hub is a running box.
type Hub struct {
	cfg     Config
	backups backups
	log     *slog.Logger
	store   *Store
	id      *pairing.Identity
	tokenMu sync.Mutex
	token   string
	window  *pairing.Window

	ln, adminLn, mcpLn, pagesLn  net.Listener
	srv, admin, mcpSrv, pagesSrv *http.Server
	pages                        *pages.Pages
	pagesOrigin                  string
	tlsFP                        string
	advert                       *pairing.Advert

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	gate     *devicectl.Gate
	confirms *sessions.Confirmations
	runtime  *sessions.Runtime
	logins   loginLimiter
	// checking holds a place for each password being checked.
	checking chan struct{}
	// echoing holds a place for each large sys.echo running.
	echoing chan struct{}
	// inFlight counts each conversation's device actions.
	inFlight sessionCalls
	metrics  *metrics

	setupToken string
	groups     *cgroup.Manager
	boundary   *sandbox.Boundary
	mask       *sessions.Masker

	mu    sync.Mutex
	links map[string]*live
	// port splits the web port between the web app and ICE over TCP.
	port   *portMux
	iceTCP ice.TCPMux
	// relay is the box's own TURN relay on that port (nil with NoRelay).
	relay *relay
	// box is the stream of changes every open page holds.
	box boxEvents
	// devMu orders read-modify-writes of device records and grants: a
	// late "last seen" must not write a revoked device back as paired,
	// nor a toggle land on a computer being revoked.
	devMu sync.Mutex
	lives map[string]*liveRelay

	// lock is the data directory's, held from Start to the end of Close.
	lock *flock.Flock
}

// SocketPath is where the admin socket of a data dir lives.
func SocketPath(dataDir string) string { return filepath.Join(dataDir, "hub.sock") }

// Start opens the store, listens, and serves until Close.
func Start(cfg Config) (*Hub, error) {
	cfg.fill()
	if cfg.DataDir == "" {
		return nil, errors.New("no data directory given")
	}
	if err := devicectl.CheckICEServers(cfg.ICEServers); err != nil {
		return nil, err
	}
	if err := ownDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	lock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	h := &Hub{lock: lock, cfg: cfg, log: cfg.Logger, links: map[string]*live{}, lives: map[string]*liveRelay{}, confirms: sessions.NewConfirmations(), mask: &sessions.Masker{},
		checking: make(chan struct{}, passwordChecks), echoing: make(chan struct{}, bigEchoes)}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	h.metrics = newMetrics(h)
	ok := false
	defer func() {
		if !ok {
			h.Close()
		}
	}()
	if h.store, err = OpenStore(filepath.Join(cfg.DataDir, "store"), h.log); err != nil {
		return nil, err
	}
	if h.id, err = pairing.LoadOrCreateIdentity(filepath.Join(cfg.DataDir, "identity.json")); err != nil {
		return nil, err
	}
	if err := h.store.migrate(h.log, func(from int) (string, error) {
		return preMigrationBackup(cfg.DataDir, h.store, from)
	}); err != nil {
		return nil, err
	}
	if h.token, err = h.loadToken(); err != nil {
		return nil, err
	}
	if err := h.loadMask(); err != nil {
		return nil, err
	}
	if err := h.prepareSetup(); err != nil {
		return nil, err
	}
	policy, err := loadPolicy(cfg.DataDir, cfg.Policy)
	if err != nil {
		return nil, err
	}
	h.gate = &devicectl.Gate{Grant: h.grant, Policy: policy, Confirm: h.confirm, Audit: h.audit, Call: h.Call,
		ConfirmTimeout: cfg.ConfirmTimeout, SkipGrantCheck: cfg.UnsafeSkipGrantCheck}
	if cfg.UnsafeSkipGrantCheck {
		h.log.Warn("the box's own grant check is OFF: only the computers enforce the toggles")
	}
	var fails pairingFailures
	_ = h.store.Get("meta/pairing_failures", &fails)
	h.window = pairing.NewWindow(fails.Total, func(total int, locked bool) {
		if err := h.store.Put("meta/pairing_failures", pairingFailures{Total: total, Locked: locked}); err != nil {
			h.log.Error("could not save the pairing failure count", "err", err)
		}
	})
	raw, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	// One port for the web app and ICE over TCP: a computer that reaches
	// the box's web address can link where UDP cannot pass.
	h.port = newPortMux(raw)
	h.ln = h.port.web
	h.iceTCP = webrtc.NewICETCPMux(nil, h.port.ice, 32)
	if !cfg.NoRelay {
		if h.relay, err = startRelay(h.port.turn); err != nil {
			return nil, err
		}
	} else {
		_ = h.port.turn.Close()
	}
	if cfg.TLSCert != "" || !h.ln.Addr().(*net.TCPAddr).IP.IsLoopback() {
		cert := h.id.TLSCertificate()
		if cfg.TLSCert != "" {
			if cert, err = tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey); err != nil {
				return nil, fmt.Errorf("HTTPS certificate: %w", err)
			}
		}
		h.tlsFP = pairing.CertFingerprint(cert.Certificate[0])
		h.ln = tls.NewListener(h.ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	if h.pages, err = pages.New(filepath.Join(cfg.DataDir, "pages"), h.store); err != nil {
		return nil, fmt.Errorf("pages: %w", err)
	}
	if cfg.PagesListen != "" {
		if err := h.listenPages(); err != nil {
			return nil, err
		}
	}
	// Agents reach the MCP server on loopback only.
	if h.mcpLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("MCP listener: %w", err)
	}
	sock := SocketPath(cfg.DataDir)
	if h.adminLn, err = listenAdmin(sock); err != nil {
		return nil, err
	}
	if cfg.WorkerBin == "" {
		if cfg.WorkerBin, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("finding this program to run agents: %w", err)
		}
		h.cfg.WorkerBin = cfg.WorkerBin
	}
	h.groups = cgroup.Detect("lowkey")
	if reason := h.groups.Unavailable(); reason != "" {
		h.log.Warn("no memory budget for sessions: "+reason, "fix", "run the hub as root, or from the lowkey package's unit (lowkey.service)")
	} else {
		h.log.Info("memory budgets for sessions", "cgroup", h.groups.Mode(), "default", cfg.SessionMemory)
	}
	if err := h.prepareBoundary(); err != nil {
		return nil, err
	}
	h.runtime = sessions.NewRuntime(sessions.Config{
		Store: h.store, Groups: h.groups, WorkerBin: cfg.WorkerBin, MCPURL: "http://" + h.mcpLn.Addr().String() + "/mcp",
		WorkDir: h.cfg.WorkDir, BoxID: h.id.ID() + ":" + h.dataDirAbs(), Boundary: h.boundary, Mask: h.mask, Secrets: h.secretsFor,
		Devices: agentDevices{h}, Pages: agentPages{h},
		Confirms: h.confirms, StallAfter: cfg.StallAfter, ConfirmTimeout: cfg.ConfirmTimeout, Metrics: h.metrics.runtime, Logger: h.log,
		AgentPath: cfg.AgentPath, AgentBins: cfg.AgentBins, Instructions: h.instructions,
	})
	h.confirms.OnChange = h.runtime.ConfirmOpened
	h.srv = newServer(h.routes(false))
	h.srv.ErrorLog = slog.NewLogLogger(h.log.Handler(), slog.LevelDebug)
	h.admin = newServer(h.peerChecked(h.routes(true)))
	h.admin.ConnContext = peerContext
	h.mcpSrv = newServer(h.limitBody(h.runtime.MCPHandler()))
	if h.pagesLn != nil {
		h.pagesSrv = newServer(h.pages.Handler())
		h.wg.Add(1)
		go func() { defer h.wg.Done(); _ = h.pagesSrv.Serve(h.pagesLn) }()
	}
	h.wg.Add(3)
	go func() { defer h.wg.Done(); _ = h.mcpSrv.Serve(h.mcpLn) }()
	go func() { defer h.wg.Done(); _ = h.srv.Serve(h.ln) }()
	go func() { defer h.wg.Done(); _ = h.admin.Serve(h.adminLn) }()
	if !cfg.NoMDNS {
		h.startMDNS()
	}
	if cfg.BackupEvery > 0 {
		if err := h.startBackups(); err != nil {
			return nil, err
		}
	}
	ok = true
	h.log.Info("hub ready", "url", h.URL(), "id", h.id.ID(), "data", cfg.DataDir)
	if h.SetupURL() != "" {
		// The link itself is printed to the terminal, never logged.
		h.log.Info("no owner yet: open the one-time setup link printed at start")
	}
	return h, nil
}

type pairingFailures struct {
	Total  int  `json:"total"`
	Locked bool `json:"locked"`
}

func (h *Hub) startMDNS() {
	tcp := h.ln.Addr().(*net.TCPAddr)
	if tcp.IP.IsLoopback() {
		h.log.Info("not advertised on the LAN: the hub listens on loopback only (use --listen 0.0.0.0:7780 to be found)")
		return
	}
	a, err := pairing.Advertise(h.cfg.Name, tcp.IP, tcp.Port, h.cfg.Version, pairing.KeyFingerprintPrefix(h.id.Public()))
	if err != nil {
		h.log.Warn("mDNS advertisement failed; companions can still use --hub", "err", err)
		return
	}
	h.advert = a
	h.log.Info("advertised on the LAN", "service", pairing.ServiceType, "name", h.cfg.Name)
}

func (h *Hub) loadToken() (string, error) {
	var tok string
	err := h.store.Get("meta/token", &tok)
	if err == nil && tok != "" {
		return tok, nil
	}
	if err != nil && !errors.Is(err, ErrNotFound) {
		return "", err
	}
	tok = rand.Text() + rand.Text() // 260 bits
	return tok, h.store.Put("meta/token", tok)
}

// URL is the web app's address.
func (h *Hub) URL() string {
	a := h.ln.Addr().(*net.TCPAddr)
	host := a.IP.String()
	if a.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	scheme := "http://"
	if h.tlsFP != "" {
		scheme = "https://"
	}
	return scheme + net.JoinHostPort(host, strconv.Itoa(a.Port))
}

// TLSFingerprint is the SHA-256 fingerprint of the HTTPS certificate, ""
// when the hub serves plain HTTP (on loopback).
func (h *Hub) TLSFingerprint() string { return h.tlsFP }

func (h *Hub) dataDirAbs() string {
	if abs, err := filepath.Abs(h.cfg.DataDir); err == nil {
		return abs
	}
	return h.cfg.DataDir
}

// DataDir is where the box keeps its state.
func (h *Hub) DataDir() string { return h.cfg.DataDir }

// Identity is the box's identity.
func (h *Hub) Identity() *pairing.Identity { return h.id }

// Token is the owner's bearer token.
func (h *Hub) Token() string {
	h.tokenMu.Lock()
	defer h.tokenMu.Unlock()
	return h.token
}

// RotateToken replaces the owner's bearer token: the old one stops
// working at once.
func (h *Hub) RotateToken() (string, error) {
	tok := rand.Text() + rand.Text()
	h.tokenMu.Lock()
	defer h.tokenMu.Unlock()
	if err := h.store.Put("meta/token", tok); err != nil {
		return "", fmt.Errorf("storing the new token: %w", err)
	}
	h.token = tok
	return tok, nil
}

// Close stops serving, ends every link and closes the store.
func (h *Hub) Close() error {
	h.cancel()
	h.advert.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if h.srv != nil {
		_ = h.srv.Shutdown(ctx)
	}
	if h.admin != nil {
		_ = h.admin.Shutdown(ctx)
	}
	if h.mcpSrv != nil {
		_ = h.mcpSrv.Shutdown(ctx)
	}
	if h.pagesSrv != nil {
		_ = h.pagesSrv.Shutdown(ctx)
	}
	if h.pagesLn != nil {
		_ = h.pagesLn.Close()
	}
	if h.mcpLn != nil {
		_ = h.mcpLn.Close()
	}
	if h.iceTCP != nil {
		_ = h.iceTCP.Close()
	}
	if h.relay != nil {
		_ = h.relay.close()
	}
	if h.ln != nil {
		_ = h.ln.Close()
	}
	if h.adminLn != nil {
		_ = h.adminLn.Close()
	}
	if h.runtime != nil {
		h.runtime.Close()
	}
	if h.boundary != nil {
		h.boundary.Close()
	}
	h.mu.Lock()
	for _, l := range h.links {
		l.end()
	}
	h.mu.Unlock()
	h.wg.Wait()
	var err error
	if h.pages != nil {
		err = h.pages.Close()
	}
	if h.store != nil {
		if serr := h.store.Close(); err == nil {
			err = serr
		}
	}
	// The directory is free for another hub only once the store is shut.
	if uerr := h.lock.Unlock(); err == nil {
		err = uerr
	}
	return err
}
