package companion

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/lowkeyhq/lowkey/devicectl"
	"github.com/lowkeyhq/lowkey/devicectl/browser"
	"github.com/lowkeyhq/lowkey/devicectl/screen"
	"github.com/lowkeyhq/lowkey/errcode"
)

// control is this computer's own gate: its copy of the grants the box
// sent, the local kill switch, and the drivers. It refuses whatever the
// grants do not cover, even when the box asks.
type control struct {
	cfg Config
	log *slog.Logger
	// onChange is told when control becomes active or inactive.
	onChange func(active []string)

	mu      sync.Mutex
	grants  map[string]devicectl.Grant // by conversation
	version int64
	browser *browser.Browser
	screen  *screen.Screen
	live    *liveStream
	// closed: the drivers are going; nothing starts on them.
	closed bool
	// ask asks the person here where the consent rule says so.
	ask *asker
}

func newControl(cfg Config, log *slog.Logger, onChange func([]string)) *control {
	return &control{cfg: cfg, log: log, onChange: onChange, grants: map[string]devicectl.Grant{}, ask: newAsker(cfg.State, log, cfg.AskWait)}
}

// handle serves one request from the box.
func (c *control) handle(ctx context.Context, req *devicectl.Request) (*devicectl.Result, error) {
	capability, ok := devicectl.Lookup(req.Action)
	if !ok {
		return nil, &errcode.Error{Code: errcode.UnknownAction, Message: "this computer does not know the action " + req.Action}
	}
	if capability == devicectl.CapSys {
		return devicectl.SysHandler(c.cfg.Version, c.probe)(ctx, req)
	}
	if err := c.allowed(req.Conversation, capability); err != nil {
		c.log.Warn("refused an action", "action", req.Action, "conversation", req.Conversation, "why", err)
		return nil, err
	}
	// The person here has the last word: where they chose to be asked,
	// the action waits for them; and the grant must still hold after.
	if err := c.ask.check(ctx, req.Conversation, capability, req.Action); err != nil {
		c.log.Warn("refused an action", "action", req.Action, "conversation", req.Conversation, "why", err)
		return nil, err
	}
	if err := c.allowed(req.Conversation, capability); err != nil {
		return nil, err
	}
	switch capability {
	case devicectl.CapBrowser:
		return c.browserDriver().Do(ctx, req.Action, req.Args)
	case devicectl.CapDesktop:
		s, err := c.screenDriver()
		if err != nil {
			return nil, err
		}
		return s.Do(ctx, req.Action, req.Args)
	}
	return nil, &errcode.Error{Code: errcode.UnknownAction, Message: "no driver for " + req.Action}
}

// allowed checks the kill switch and this computer's copy of the grant.
func (c *control) allowed(conversation string, capability devicectl.Capability) error {
	if paused, err := c.cfg.State.Paused(); paused || err != nil {
		return &errcode.Error{Code: errcode.Paused, Message: "control of this computer is paused there (\"lowkey-companion resume\" allows it again)"}
	}
	c.mu.Lock()
	g, ok := c.grants[conversation]
	c.mu.Unlock()
	if !ok || !g.Allows(capability) {
		what := "browser"
		if capability == devicectl.CapDesktop {
			what = "desktop"
		}
		return &errcode.Error{Code: errcode.NoGrant, Message: fmt.Sprintf("this computer holds no %s grant for that conversation: turn its %s access on first", what, what)}
	}
	return nil
}

func (c *control) browserDriver() *browser.Browser {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.browser == nil {
		c.browser = browser.New(browser.Config{
			Bin:         c.cfg.BrowserPath,
			ProfileDir:  c.cfg.State.path("browser-profile"),
			DownloadDir: c.cfg.State.path("downloads"),
			Headless:    c.cfg.Headless || c.cfg.Display == "",
			Display:     c.cfg.Display,
			AttachDir:   c.cfg.AttachChrome,
			Logger:      c.log,
		})
	}
	return c.browser
}

func (c *control) screenDriver() (*screen.Screen, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.screen != nil {
		return c.screen, nil
	}
	s, err := screen.Open(c.cfg.Display)
	if err != nil {
		return nil, &errcode.Error{Code: errcode.DesktopUnavailable, Message: err.Error()}
	}
	c.screen = s
	return s, nil
}

// notice applies a message from the box.
func (c *control) notice(n devicectl.Notice, out liveOut) {
	switch n.Type {
	case "grants":
		var gn struct {
			devicectl.GrantNotice
			Version int64 `json:"version"`
		}
		if err := json.Unmarshal(n.Body, &gn); err != nil {
			c.log.Warn("ignored a malformed grant notice", "err", err)
			return
		}
		c.setGrants(gn.Grants, gn.Version)
	case "live":
		r, err := devicectl.DecodeLiveRequest(n.Body)
		if err != nil {
			c.log.Warn("ignored a malformed live request", "err", err)
			return
		}
		c.setLive(r, out)
	}
}

// setGrants replaces the grants with the box's current set. Notices
// travel unordered: an older one never undoes a newer one.
func (c *control) setGrants(gs []devicectl.Grant, version int64) {
	c.mu.Lock()
	if version != 0 && version < c.version {
		c.mu.Unlock()
		return
	}
	c.version = version
	before := activeList(c.grants)
	c.grants = map[string]devicectl.Grant{}
	for _, g := range gs {
		if g.Any() {
			c.grants[g.Conversation] = g
		}
	}
	after := activeList(c.grants)
	live := c.live
	c.mu.Unlock()
	if live != nil {
		live.check()
	}
	if strings.Join(before, ",") != strings.Join(after, ",") {
		c.onChange(after)
	}
}

// clear drops every grant (the link went down: the box re-sends them).
func (c *control) clear() {
	c.setGrants(nil, 0)
	c.mu.Lock()
	c.version = 0
	c.mu.Unlock()
	c.stopLive()
}

func activeList(gs map[string]devicectl.Grant) []string {
	out := []string{}
	for conv, g := range gs {
		var what []string
		if g.Browser {
			what = append(what, "browser")
		}
		if g.Desktop {
			what = append(what, "desktop")
		}
		out = append(out, conv+" ("+strings.Join(what, ", ")+")")
	}
	sort.Strings(out)
	return out
}

// close stops the drivers: a launched browser is closed, never left behind.
func (c *control) close() {
	c.mu.Lock()
	c.closed = true // no live stream starts after this
	c.mu.Unlock()
	c.stopLive()
	c.mu.Lock()
	b, s := c.browser, c.screen
	c.browser, c.screen = nil, nil
	c.mu.Unlock()
	if b != nil {
		_ = b.Close()
	}
	if s != nil {
		_ = s.Close()
	}
}

// announce shows a change of control on the computer: always a log line,
// and a desktop notification where the system has notify-send.
func announce(log *slog.Logger, display string, active []string, notifySend bool) {
	title, body := "Lowkey: control ended", "No conversation controls this computer now."
	if len(active) > 0 {
		title, body = "Lowkey: this computer is being controlled", "Active for "+strings.Join(active, "; ")+". Stop it with \"lowkey-companion pause\"."
		log.Warn("device control ACTIVE", "conversations", strings.Join(active, "; "))
	} else {
		log.Warn("device control inactive")
	}
	if notifySend {
		notify(display, title, body)
	}
}

// showQuestions tells the person here what waits for their answer.
func showQuestions(log *slog.Logger, display string, qs []Question, page string) {
	for _, q := range qs {
		notify(display, "Lowkey: the box asks to use this computer",
			fmt.Sprintf("Conversation %s wants %s access (first action: %s). Answer on %s or with \"lowkey-companion approve %s\" / \"deny %s\"; no answer is a no.",
				q.Conversation, q.Capability, q.Action, page, q.ID, q.ID))
	}
}

// notify shows a desktop notification where notify-send and a display are
// there; it never waits long for one.
func notify(display, title, body string) {
	bin, err := exec.LookPath("notify-send")
	if err != nil || display == "" {
		return
	}
	cmd := exec.Command(bin, "--app-name=Lowkey", "--urgency=normal", title, body)
	cmd.Env = append(cmd.Environ(), "DISPLAY="+display)
	if err := cmd.Start(); err == nil {
		go func() {
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
		}()
	}
}
