package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/lowkeyhq/lowkey/companion"
	"github.com/lowkeyhq/lowkey/devicectl"
	"github.com/lowkeyhq/lowkey/devicectl/browser"
	"github.com/lowkeyhq/lowkey/internal/local"
)

// BrowserReport is "lowkey bench browser --json": medians in ms.
type BrowserReport struct {
	DirectNavigateSnapshotMS float64 `json:"direct_navigate_snapshot_ms"`
	LinkNavigateSnapshotMS   float64 `json:"link_navigate_snapshot_ms"`
	DirectClickMS            float64 `json:"direct_click_ms"`
	LinkClickMS              float64 `json:"link_click_ms"`
	DirectScreenshotMS       float64 `json:"direct_screenshot_ms"`
	LinkScreenshotMS         float64 `json:"link_screenshot_ms"`
	ScreenshotBytes          int     `json:"screenshot_bytes"`
	Rounds                   int     `json:"rounds"`
	// playwright-core driving the same Chromium on the same page in the
	// same run, and the link's time over it (1.0 is as fast); absent where
	// Node or playwright-core is not installed (Playwright says why).
	PlaywrightNavigateSnapshotMS float64 `json:"playwright_navigate_snapshot_ms,omitempty"`
	PlaywrightClickMS            float64 `json:"playwright_click_ms,omitempty"`
	PlaywrightScreenshotMS       float64 `json:"playwright_screenshot_ms,omitempty"`
	NavigateSnapshotRatio        float64 `json:"link_over_playwright_navigate_snapshot,omitempty"`
	ClickRatio                   float64 `json:"link_over_playwright_click,omitempty"`
	ScreenshotRatio              float64 `json:"link_over_playwright_screenshot,omitempty"`
	Playwright                   string  `json:"playwright,omitempty"`
}

const benchPage = `<!doctype html><title>Bench</title><h1>Bench page</h1>
<p id="n">0</p><button onclick="const n=document.getElementById('n'); n.textContent=+n.textContent+1">Add one</button>
<ul>` + "%s" + `</ul>`

func benchServer() *httptest.Server {
	var items strings.Builder
	for i := range 200 {
		fmt.Fprintf(&items, "<li><a href='#%d'>Item %d</a></li>", i, i)
	}
	page := fmt.Sprintf(benchPage, items.String())
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = io.WriteString(w, page)
	}))
}

type doer func(ctx context.Context, action string, args any) (*devicectl.Result, error)

// browserRounds runs the measured actions through do.
func browserRounds(ctx context.Context, do doer, url string, rounds int) (nav, click, shot []time.Duration, shotBytes int, err error) {
	refRe := regexp.MustCompile(`button "Add one" \[ref=(e\d+)\]`)
	for range rounds {
		t := time.Now()
		if _, err = do(ctx, "browser.navigate", map[string]string{"url": url}); err != nil {
			return
		}
		var res *devicectl.Result
		if res, err = do(ctx, "browser.snapshot", nil); err != nil {
			return
		}
		nav = append(nav, time.Since(t))
		var snap struct{ Snapshot string }
		_ = json.Unmarshal(res.JSON, &snap)
		m := refRe.FindStringSubmatch(snap.Snapshot)
		if m == nil {
			err = fmt.Errorf("the bench page's button is not in the snapshot")
			return
		}
		t = time.Now()
		if _, err = do(ctx, "browser.click", map[string]string{"ref": m[1]}); err != nil {
			return
		}
		click = append(click, time.Since(t))
		t = time.Now()
		if res, err = do(ctx, "browser.screenshot", map[string]any{"format": "png"}); err != nil {
			return
		}
		shot = append(shot, time.Since(t))
		shotBytes = len(res.Blob)
	}
	return
}

// DefaultBrowserRounds is Browser's rounds per side when none are given.
const DefaultBrowserRounds = 30

// Browser measures the same actions through rod directly and through
// box → link → companion → rod, in one run.
func Browser(ctx context.Context, rounds int, progress io.Writer) (*BrowserReport, error) {
	if rounds <= 0 {
		rounds = DefaultBrowserRounds
	}
	if browser.Find("") == "" {
		return nil, fmt.Errorf("no Chromium on this machine: install chromium")
	}
	srv := benchServer()
	defer srv.Close()
	dir, err := os.MkdirTemp("", "lowkey-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	rep := &BrowserReport{Rounds: rounds}

	fmt.Fprintln(progress, "direct: rod in this process; link: box → link → companion → rod")
	b := browser.New(browser.Config{ProfileDir: filepath.Join(dir, "direct"), Headless: true, Logger: quiet})
	defer b.Close()
	direct := func(ctx context.Context, action string, args any) (*devicectl.Result, error) {
		raw, _ := json.Marshal(args)
		return b.Do(ctx, action, raw)
	}
	p, err := local.Start(ctx, filepath.Join(dir, "pair"), local.Options{Logger: quiet, Companion: func(c *companion.Config) { c.Headless = true }})
	if err != nil {
		return nil, err
	}
	defer p.Close()
	c := p.Client()
	sess, err := grantedSession(c, p.DeviceID, "browser")
	if err != nil {
		return nil, err
	}
	linked := func(ctx context.Context, action string, args any) (*devicectl.Result, error) {
		raw, _ := json.Marshal(args)
		return p.Hub.Call(ctx, p.DeviceID, action, sess.ID, raw)
	}
	// One warm-up round each, not counted: the first launch dominates it.
	for _, do := range []doer{direct, linked} {
		if _, _, _, _, err := browserRounds(ctx, do, srv.URL, 1); err != nil {
			return nil, err
		}
	}
	// Rounds alternate, so a busy moment on the machine weighs on both.
	fmt.Fprintln(progress, "rounds, alternating")
	var dNav, dClick, dShot, lNav, lClick, lShot []time.Duration
	for range rounds {
		nav, click, shot, _, err := browserRounds(ctx, direct, srv.URL, 1)
		if err != nil {
			return nil, err
		}
		dNav, dClick, dShot = append(dNav, nav...), append(dClick, click...), append(dShot, shot...)
		nav, click, shot, rep.ScreenshotBytes, err = browserRounds(ctx, linked, srv.URL, 1)
		if err != nil {
			return nil, err
		}
		lNav, lClick, lShot = append(lNav, nav...), append(lClick, click...), append(lShot, shot...)
	}
	rep.DirectNavigateSnapshotMS, rep.DirectClickMS, rep.DirectScreenshotMS = ms(percentile(dNav, .5)), ms(percentile(dClick, .5)), ms(percentile(dShot, .5))
	rep.LinkNavigateSnapshotMS, rep.LinkClickMS, rep.LinkScreenshotMS = ms(percentile(lNav, .5)), ms(percentile(lClick, .5)), ms(percentile(lShot, .5))
	fmt.Fprintln(progress, "playwright-core on the same Chromium and page")
	pw, err := playwright(ctx, browser.Find(""), srv.URL, rounds)
	if err != nil {
		rep.Playwright = "not measured: " + err.Error()
		fmt.Fprintln(progress, rep.Playwright)
		return rep, nil
	}
	rep.Playwright = "playwright-core"
	rep.PlaywrightNavigateSnapshotMS, rep.PlaywrightClickMS, rep.PlaywrightScreenshotMS = pw.NavigateSnapshotMS, pw.ClickMS, pw.ScreenshotMS
	rep.NavigateSnapshotRatio = rep.LinkNavigateSnapshotMS / pw.NavigateSnapshotMS
	rep.ClickRatio = rep.LinkClickMS / pw.ClickMS
	rep.ScreenshotRatio = rep.LinkScreenshotMS / pw.ScreenshotMS
	return rep, nil
}

// grantedSession makes a conversation with one toggle on for a computer.
func grantedSession(c local.Client, device, toggle string) (struct{ ID string }, error) {
	var sess struct{ ID string }
	if err := c.Do("POST", "/api/v1/sessions", map[string]string{"title": "bench"}, &sess); err != nil {
		return sess, err
	}
	if err := c.Do("PUT", "/api/v1/sessions/"+sess.ID+"/devices/"+device+"/access", map[string]bool{toggle: true}, nil); err != nil {
		return sess, err
	}
	time.Sleep(100 * time.Millisecond) // the grant travels to the computer
	return sess, nil
}
