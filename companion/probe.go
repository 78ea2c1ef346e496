package companion

import (
	"fmt"
	"runtime"

	"github.com/lowkeyhq/lowkey/devicectl"
	"github.com/lowkeyhq/lowkey/devicectl/browser"
	"github.com/lowkeyhq/lowkey/devicectl/screen"
)

// probe finds what this computer can offer now, and why not.
func (c *control) probe() map[devicectl.Capability]devicectl.Availability {
	caps := map[devicectl.Capability]devicectl.Availability{}
	switch {
	case c.cfg.AttachChrome != "":
		if _, err := browser.AttachURL(c.cfg.AttachChrome); err != nil {
			caps[devicectl.CapBrowser] = devicectl.Availability{Reason: err.Error()}
		} else {
			caps[devicectl.CapBrowser] = devicectl.Availability{Available: true, Detail: "the running Chrome in " + c.cfg.AttachChrome}
		}
	default:
		if p := browser.Find(c.cfg.BrowserPath); p != "" {
			caps[devicectl.CapBrowser] = devicectl.Availability{Available: true, Detail: p}
		} else if c.cfg.BrowserPath != "" {
			caps[devicectl.CapBrowser] = devicectl.Availability{Reason: "the browser given with --browser was not found: " + c.cfg.BrowserPath}
		} else {
			caps[devicectl.CapBrowser] = devicectl.Availability{Reason: "no Chromium or Chrome found: install chromium or pass --browser PATH"}
		}
	}
	c.mu.Lock()
	open := c.screen
	c.mu.Unlock()
	switch {
	case open != nil:
		w, h := open.Size()
		caps[devicectl.CapDesktop] = devicectl.Availability{Available: true, Detail: fmt.Sprintf("display %s, %dx%d", c.cfg.Display, w, h)}
	case runtime.GOOS != "linux":
		caps[devicectl.CapDesktop] = devicectl.Availability{Reason: "desktop control is not supported on " + runtime.GOOS + " yet"}
	case c.cfg.Display == "":
		caps[devicectl.CapDesktop] = devicectl.Availability{Reason: "no X display: DISPLAY is not set (pass --display :N)"}
	default:
		s, err := screen.Open(c.cfg.Display)
		if err != nil {
			caps[devicectl.CapDesktop] = devicectl.Availability{Reason: err.Error()}
			break
		}
		w, h := s.Size()
		_ = s.Close()
		caps[devicectl.CapDesktop] = devicectl.Availability{Available: true, Detail: fmt.Sprintf("display %s, %dx%d", c.cfg.Display, w, h)}
	}
	return caps
}
