package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/lowkeyhq/lowkey/companion"
	"github.com/lowkeyhq/lowkey/devicectl/browser"
	"github.com/lowkeyhq/lowkey/hub"
	"github.com/lowkeyhq/lowkey/internal/admin"
	"github.com/lowkeyhq/lowkey/internal/local"
)

// SoakSample is one line of a soak: what was done so far and what the
// process holds.
type SoakSample struct {
	Elapsed    string  `json:"elapsed"`
	Rounds     int     `json:"rounds"`
	Errors     int     `json:"errors"`
	HeapMiB    float64 `json:"heap_mib"`
	Goroutines int     `json:"goroutines"`
	LastError  string  `json:"last_error,omitempty"`
}

// Soak repeats the box's whole life for a while: pairing and revoking a
// computer, driving a browser under a toggle, running and cancelling
// turns, killing sessions. It reports every interval and returns the
// samples. Bounded by time and by rounds.
func Soak(ctx context.Context, d, every time.Duration, maxRounds int, out func(SoakSample)) ([]SoakSample, error) {
	dir, err := os.MkdirTemp("", "lowkey-soak-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := local.Start(ctx, filepath.Join(dir, "pair"), local.Options{Logger: quiet})
	if err != nil {
		return nil, err
	}
	defer p.Close()
	c := p.Client()
	browserOK := browser.Find("") != ""
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `<!doctype html><title>Soak</title><button>Press</button>`)
	}))
	defer page.Close()

	var samples []SoakSample
	s := SoakSample{}
	start, next := time.Now(), time.Now().Add(every)
	fail := func(err error) {
		s.Errors++
		s.LastError = err.Error()
	}
	sample := func() {
		s.Elapsed, s.HeapMiB, s.Goroutines = time.Since(start).Round(time.Second).String(), heapMiB(), runtime.NumGoroutine()
		samples = append(samples, s)
		if out != nil {
			out(s)
		}
	}
	for s.Rounds < maxRounds && time.Since(start) < d && ctx.Err() == nil {
		if err := soakRound(ctx, p, c, page.URL, browserOK, s.Rounds, filepath.Join(dir, fmt.Sprintf("extra-%d", s.Rounds))); err != nil {
			fail(err)
		}
		s.Rounds++
		if time.Now().After(next) {
			sample()
			next = time.Now().Add(every)
		}
	}
	sample()
	return samples, nil
}

func soakRound(ctx context.Context, p *local.Pair, c local.Client, page string, browserOK bool, round int, extraDir string) error {
	var sess struct{ ID string }
	if err := c.Do("POST", "/api/v1/sessions", map[string]string{"title": "soak"}, &sess); err != nil {
		return err
	}
	base := "/api/v1/sessions/" + sess.ID
	act := func(action string, args any) error {
		return c.Do("POST", base+"/devices/"+p.DeviceID+"/actions", map[string]any{"action": action, "args": args}, nil)
	}
	if browserOK {
		if err := c.Do("PUT", base+"/devices/"+p.DeviceID+"/access", map[string]bool{"browser": true}, nil); err != nil {
			return err
		}
		time.Sleep(50 * time.Millisecond)
		if err := act("browser.navigate", map[string]string{"url": page}); err != nil {
			return fmt.Errorf("navigate: %w", err)
		}
		if err := act("browser.snapshot", nil); err != nil {
			return fmt.Errorf("snapshot: %w", err)
		}
	}
	if err := act("sys.echo", map[string]int{"bytes": 256 << 10}); err != nil {
		return fmt.Errorf("echo: %w", err)
	}
	// A turn that finishes, one that is cancelled, then the session killed
	// with a job running.
	var t struct {
		TurnID string `json:"turn_id"`
	}
	if err := c.Do("POST", base+"/messages", map[string]string{"text": "run echo soak"}, &t); err != nil {
		return err
	}
	if err := waitTurn(c, sess.ID, t.TurnID, "done"); err != nil {
		return err
	}
	if err := c.Do("POST", base+"/messages", map[string]string{"text": "think 30"}, &t); err != nil {
		return err
	}
	time.Sleep(100 * time.Millisecond)
	if err := c.Do("POST", base+"/turns/"+t.TurnID+"/cancel", nil, nil); err != nil {
		return fmt.Errorf("cancel: %w", err)
	}
	if err := c.Do("POST", base+"/messages", map[string]string{"text": "start sleep 60"}, &t); err != nil {
		return err
	}
	if err := waitTurn(c, sess.ID, t.TurnID, "done"); err != nil {
		return err
	}
	if err := c.Do("POST", base+"/kill", nil, nil); err != nil {
		return fmt.Errorf("kill: %w", err)
	}
	// Every fifth round a second computer pairs, links and is revoked.
	if round%5 == 0 {
		return pairAndRevoke(ctx, p, extraDir)
	}
	return nil
}

func waitTurn(c local.Client, sid, turn, want string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var s struct {
			Turns []struct{ ID, State, Detail string }
		}
		if err := c.Do("GET", "/api/v1/sessions/"+sid, nil, &s); err != nil {
			return err
		}
		for _, tr := range s.Turns {
			if tr.ID == turn && tr.State != "running" && tr.State != "stalled" {
				if tr.State != want {
					return fmt.Errorf("turn ended %s (%s), want %s", tr.State, tr.Detail, want)
				}
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("turn %s did not end", turn)
}

func pairAndRevoke(ctx context.Context, p *local.Pair, dir string) error {
	var code struct{ Code string }
	if err := admin.New(hub.SocketPath(p.HubDir)).Do("POST", "/admin/pair-code", nil, &code); err != nil {
		return err
	}
	st := companion.State{Dir: dir}
	if _, err := companion.Pair(ctx, st, strings.TrimPrefix(p.URL(), "http://"), code.Code, "extra"); err != nil {
		return fmt.Errorf("pair: %w", err)
	}
	r := companion.NewRunner(companion.Config{State: st, LoopbackICE: true, NoMDNS: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	defer func() { stop(); <-done }()
	select {
	case <-r.LinkUp():
	case <-time.After(20 * time.Second):
		return fmt.Errorf("the extra computer did not link")
	}
	id, _ := st.Identity()
	return p.Client().Do("DELETE", "/api/v1/devices/"+id.ID(), nil, nil)
}
