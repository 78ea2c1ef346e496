package browser

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-rod/rod"
	"github.com/go-rod/rod/lib/launcher"
	"github.com/go-rod/rod/lib/launcher/flags"
	"github.com/go-rod/rod/lib/proto"

	"github.com/lowkeyhq/lowkey/devicectl"
	"github.com/lowkeyhq/lowkey/errcode"
)

// Config is how the browser is found and started.
type Config struct {
	// Bin is the Chromium to start ("" finds the system one).
	Bin string
	// ProfileDir is the persistent user data directory of a launched
	// browser.
	ProfileDir string
	// DownloadDir receives downloads.
	DownloadDir string
	// Headless runs a launched browser without a window.
	Headless bool
	// Display is the X display for a windowed browser.
	Display string
	// AttachDir, when set, attaches to the running Chrome whose user data
	// directory this is (its DevToolsActivePort file) instead of launching.
	AttachDir string
	// WindowWidth and WindowHeight size a launched browser (1280x800).
	WindowWidth, WindowHeight int
	Logger                    *slog.Logger
}

// Browser is one controlled browser, started on first use.
type Browser struct {
	cfg Config
	log *slog.Logger

	// turn serialises actions; waiting for it honours the caller's context.
	turn chan struct{}

	b        *rod.Browser
	l        *launcher.Launcher
	attached bool
	page     *rod.Page
	refs     map[string]refTarget
	// axEnabled are the tabs whose accessibility tree is kept.
	axEnabled map[proto.TargetTargetID]bool
	refPage   proto.TargetTargetID
	stopEv    context.CancelFunc
	evCtx     context.Context // ends with the browser: the tabs' event loops
	logs      map[proto.TargetTargetID]*tabLog

	mu        sync.Mutex // guards dialog and downloads (event goroutine)
	dialog    *proto.PageJavascriptDialogOpening
	dialogPg  proto.TargetSessionID
	downloads []*Download
}

// Download is one file the browser saved.
type Download struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	URL      string `json:"url"`
	State    string `json:"state"` // inProgress, completed, canceled
	Bytes    int64  `json:"bytes"`
	Started  string `json:"started"`
	path     string
	finished bool
}

// New prepares a browser; nothing starts until the first action.
func New(cfg Config) *Browser {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.WindowWidth == 0 {
		cfg.WindowWidth, cfg.WindowHeight = 1280, 800
	}
	return &Browser{cfg: cfg, log: cfg.Logger, turn: make(chan struct{}, 1)}
}

// Do runs one browser.* action.
func (b *Browser) Do(ctx context.Context, action string, args json.RawMessage) (*devicectl.Result, error) {
	select {
	case b.turn <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-b.turn }()
	if err := b.start(ctx); err != nil {
		return nil, err
	}
	name := strings.TrimPrefix(action, "browser.")
	fn, ok := actions[name]
	if !ok {
		return nil, errcode.New(errcode.UnknownAction, "this computer does not know the action %s", action)
	}
	if len(args) == 0 {
		args = json.RawMessage("{}")
	}
	// A dialog blocks the page: only the actions that deal with it run.
	if d := b.openDialog(); d != nil && name != "dialog" && name != "tabs" && name != "downloads" && name != "snapshot" && name != "screenshot" {
		return nil, errcode.New(errcode.DialogOpen, "a %s dialog is open on the page (%q): answer it with browser.dialog first", d.Type, d.Message)
	}
	res, err := fn(b, ctx, args)
	if err != nil {
		return nil, b.explain(ctx, err)
	}
	return res, nil
}

// explain turns rod and context errors into messages a person can use.
func (b *Browser) explain(ctx context.Context, err error) error {
	var ae *errcode.Error
	switch {
	case errors.As(err, &ae):
		return err
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, context.DeadlineExceeded):
		return errcode.Wrap(errcode.Timeout, err, "the browser did not finish in time")
	}
	return errcode.Wrap(errcode.BrowserError, err, "the browser said")
}

// start launches (or attaches to) the browser on first use, and again if
// it was closed.
func (b *Browser) start(ctx context.Context) error {
	if b.b != nil {
		if _, err := b.b.Context(ctx).Version(); err == nil {
			return nil
		}
		b.log.Warn("the browser went away; starting it again")
		b.shutdown()
	}
	var (
		u   string
		err error
	)
	if b.cfg.AttachDir != "" {
		u, err = AttachURL(b.cfg.AttachDir)
		if err != nil {
			return &errcode.Error{Code: errcode.BrowserUnavailable, Message: err.Error(), Err: err}
		}
		b.attached = true
	} else {
		bin := Find(b.cfg.Bin)
		if bin == "" {
			return errcode.New(errcode.BrowserUnavailable, "no Chromium or Chrome found on this computer: install chromium or pass --browser PATH")
		}
		if err := os.MkdirAll(b.cfg.ProfileDir, 0o700); err != nil {
			return errcode.Wrap(errcode.BrowserUnavailable, err, "browser profile")
		}
		l := launcher.New().Context(context.Background()).Bin(bin).
			UserDataDir(b.cfg.ProfileDir).
			Headless(b.cfg.Headless).
			NoSandbox(os.Geteuid() == 0).
			Leakless(true).
			Set("disable-gpu").Set("no-first-run").Set("no-default-browser-check").
			Set("disable-background-networking").Set("disable-component-update").Set("disable-sync").
			Set(flags.Flag("window-size"), fmt.Sprintf("%d,%d", b.cfg.WindowWidth, b.cfg.WindowHeight)).
			Delete("enable-automation")
		if b.cfg.Display != "" {
			l = l.Env(append(os.Environ(), "DISPLAY="+b.cfg.Display)...)
		}
		u, err = l.Launch()
		if err != nil {
			l.Kill()
			return errcode.Wrap(errcode.BrowserUnavailable, err, fmt.Sprintf("could not start %s", bin))
		}
		b.l = l
		b.log.Info("browser started", "bin", bin, "headless", b.cfg.Headless, "profile", b.cfg.ProfileDir)
	}
	rb := rod.New().ControlURL(u).NoDefaultDevice()
	if err := rb.Connect(); err != nil {
		b.shutdown()
		return errcode.Wrap(errcode.BrowserUnavailable, err, "could not connect to the browser")
	}
	b.b = rb
	if b.cfg.DownloadDir != "" {
		_ = os.MkdirAll(b.cfg.DownloadDir, 0o700)
		err := proto.BrowserSetDownloadBehavior{
			Behavior:      proto.BrowserSetDownloadBehaviorBehaviorAllowAndName,
			DownloadPath:  b.cfg.DownloadDir,
			EventsEnabled: true,
		}.Call(rb)
		if err != nil {
			b.log.Warn("downloads will not be tracked", "err", err)
		}
	}
	evCtx, stop := context.WithCancel(context.Background())
	b.stopEv, b.evCtx = stop, evCtx
	go rb.Context(evCtx).EachEvent(
		func(e *proto.PageJavascriptDialogOpening, id proto.TargetSessionID) {
			b.mu.Lock()
			b.dialog, b.dialogPg = e, id
			b.mu.Unlock()
		},
		func(e *proto.PageJavascriptDialogClosed) {
			b.mu.Lock()
			b.dialog = nil
			b.mu.Unlock()
		},
		func(e *proto.BrowserDownloadWillBegin) {
			b.mu.Lock()
			b.downloads = append(b.downloads, &Download{ID: e.GUID, Name: safeName(e.SuggestedFilename), URL: e.URL, State: "inProgress",
				Started: time.Now().UTC().Format(time.RFC3339), path: filepath.Join(b.cfg.DownloadDir, e.GUID)})
			b.mu.Unlock()
		},
		func(e *proto.BrowserDownloadProgress) {
			b.mu.Lock()
			for _, d := range b.downloads {
				if d.ID == e.GUID {
					d.State, d.Bytes = string(e.State), int64(e.ReceivedBytes)
				}
			}
			b.mu.Unlock()
		},
	)()
	return nil
}

// AttachURL reads the DevTools address of a running Chrome from the
// DevToolsActivePort file in its user data directory. Chrome writes it
// when started with --remote-debugging-port (0 picks a free one).
func AttachURL(userDataDir string) (string, error) {
	raw, err := os.ReadFile(filepath.Join(userDataDir, "DevToolsActivePort"))
	if err != nil {
		return "", fmt.Errorf("no running Chrome to attach to in %s (start it with --remote-debugging-port=0): %w", userDataDir, err)
	}
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	port, perr := strconv.Atoi(strings.TrimSpace(lines[0]))
	if len(lines) < 2 || perr != nil || port <= 0 || port > 65535 || !strings.HasPrefix(lines[1], "/devtools/browser/") {
		return "", fmt.Errorf("%s/DevToolsActivePort is not what Chrome writes", userDataDir)
	}
	return "ws://127.0.0.1:" + strconv.Itoa(port) + strings.TrimSpace(lines[1]), nil
}

func (b *Browser) openDialog() *proto.PageJavascriptDialogOpening {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dialog
}

// current returns the tab actions apply to, opening one if there is none.
func (b *Browser) current(ctx context.Context) (*rod.Page, error) {
	p, err := b.pick(ctx)
	if err != nil {
		return nil, err
	}
	b.watchTab(p)
	return p.Context(ctx), nil
}

// pick is the current tab, kept without the action's context; asking
// about it honours ctx.
func (b *Browser) pick(ctx context.Context) (*rod.Page, error) {
	if b.page != nil {
		if _, err := b.page.Context(ctx).Info(); err == nil {
			return b.page, nil
		}
		b.page = nil
	}
	pages, err := b.b.Pages()
	if err != nil {
		return nil, err
	}
	for _, p := range pages {
		if info, err := p.Context(ctx).Info(); err == nil && info.Type == proto.TargetTargetInfoTypePage {
			b.page = p
			return p, nil
		}
	}
	p, err := b.b.Page(proto.TargetCreateTarget{URL: "about:blank"})
	if err != nil {
		return nil, err
	}
	b.page = p
	return p, nil
}

// Close stops a launched browser (an attached one keeps running) and
// waits for it to exit.
func (b *Browser) Close() error {
	b.turn <- struct{}{}
	defer func() { <-b.turn }()
	b.shutdown()
	return nil
}

func (b *Browser) shutdown() {
	if b.stopEv != nil {
		b.stopEv()
		b.stopEv = nil
	}
	if b.b != nil && !b.attached {
		_ = b.b.Close()
	}
	b.b, b.page, b.refs, b.axEnabled = nil, nil, nil, nil
	b.mu.Lock()
	b.logs = nil
	b.mu.Unlock()
	if b.l != nil {
		b.l.Kill()
		pid := b.l.PID()
		waitGone(pid, 5*time.Second)
		b.l = nil
		b.log.Info("browser stopped")
	}
}

// Running reports whether a browser is started.
func (b *Browser) Running() bool {
	select {
	case b.turn <- struct{}{}:
		defer func() { <-b.turn }()
		return b.b != nil
	default:
		return true
	}
}

func safeName(s string) string {
	s = filepath.Base(strings.ReplaceAll(s, "\\", "/"))
	if s == "." || s == "/" || s == "" {
		return "download"
	}
	return s
}

// checkURL allows web addresses only: the browser is for the web, not
// for the computer's files or for running script.
func checkURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || raw == "" {
		return "", errcode.New(errcode.BadArgs, "not a URL: %q", raw)
	}
	switch u.Scheme {
	case "http", "https":
		if u.Host == "" {
			return "", errcode.New(errcode.BadArgs, "no host in %q", raw)
		}
		return u.String(), nil
	case "about":
		return u.String(), nil
	case "":
		return checkURL("https://" + raw)
	}
	return "", errcode.New(errcode.BadArgs, "only http and https addresses can be opened, not %s:", u.Scheme)
}
