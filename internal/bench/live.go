package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/lowkeyhq/lowkey/companion"
	"github.com/lowkeyhq/lowkey/devicectl"
	"github.com/lowkeyhq/lowkey/internal/local"
)

// LiveReport is "lowkey bench live --json".
type LiveReport struct {
	Width  int `json:"width"`
	Height int `json:"height"`
	Asked  int `json:"asked_fps"`
	// FPS is updates a second while the page scrolls (every one moves the
	// picture), in the updates mode.
	FPS float64 `json:"fps"`
	// What the viewer received, in Mbit/s, for each scene.
	StillMbit     float64 `json:"still_mbit_s"`
	TypingMbit    float64 `json:"typing_mbit_s"`
	ScrollingMbit float64 `json:"scrolling_mbit_s"`
	// The same scrolling scene as whole JPEG frames (?mode=jpeg), as every
	// frame was sent before updates.
	FullFrameMbit float64 `json:"full_frame_mbit_s"`
	FullFrameFPS  float64 `json:"full_frame_fps"`
	// Bytes of the first (whole) frame.
	KeyKiB float64 `json:"key_frame_kib"`
	// ScrollStep and TypeEvery are the scenes' pace.
	ScrollPx  int     `json:"scroll_px_per_frame"`
	TypedCPS  float64 `json:"typed_chars_per_s"`
	SceneSecs float64 `json:"scene_s"`
}

// Live watches the live screen of a display through the link and the
// box's relay, as a WebSocket viewer does, while the display shows a
// still page, a person typing, and the page scrolling; then the same
// scrolling as whole JPEG frames. Each scene lasts d.
func Live(ctx context.Context, display string, asked int, d time.Duration, progress io.Writer) (*LiveReport, error) {
	dir, err := os.MkdirTemp("", "lowkey-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	sc, err := paint(display)
	if err != nil {
		return nil, err
	}
	defer sc.close()
	p, err := local.Start(ctx, dir, local.Options{Logger: quiet, Companion: func(c *companion.Config) { c.Display = display }})
	if err != nil {
		return nil, err
	}
	defer p.Close()
	// The benchmark's own private computer: its person trusts the box.
	if err := p.State.SetRule(companion.Trust, devicectl.CapDesktop); err != nil {
		return nil, err
	}
	c := p.Client()
	sess, err := grantedSession(c, p.DeviceID, "desktop")
	if err != nil {
		return nil, err
	}
	rep := &LiveReport{Width: sc.w, Height: sc.h, Asked: asked, ScrollPx: 8, TypedCPS: 10, SceneSecs: d.Seconds()}
	base := "ws" + strings.TrimPrefix(p.URL(), "http") + fmt.Sprintf("/api/v1/sessions/%s/devices/%s/live?fps=%d&max_edge=4096", sess.ID, p.DeviceID, asked)

	v, err := watchLive(ctx, base, p.Hub.Token())
	if err != nil {
		return nil, err
	}
	first, err := v.first(ctx)
	if err != nil {
		v.close()
		return nil, err
	}
	rep.KeyKiB = float64(first) / 1024
	// scene runs step at pace for d and says what the viewer got.
	scene := func(v *liveWatch, name string, pace time.Duration, step func() error) (mbit, fps float64, err error) {
		fmt.Fprintf(progress, "live: %s for %s\n", name, d)
		b0, n0, t0 := v.bytes.Load(), v.msgs.Load(), time.Now()
		tick := time.NewTicker(pace)
		defer tick.Stop()
		for time.Since(t0) < d {
			select {
			case <-ctx.Done():
				return 0, 0, ctx.Err()
			case <-v.done:
				return 0, 0, v.err
			case <-tick.C:
			}
			if step != nil {
				if err := step(); err != nil {
					return 0, 0, err
				}
			}
		}
		el := time.Since(t0).Seconds()
		return float64(v.bytes.Load()-b0) * 8 / 1e6 / el, float64(v.msgs.Load()-n0) / el, nil
	}
	frame := time.Second / time.Duration(asked)
	scrollStep := func() error { return sc.scroll(sc.top + rep.ScrollPx) }
	if err == nil {
		// Let the first frame's refinement pass before the still scene.
		time.Sleep(time.Second)
		rep.StillMbit, _, err = scene(v, "a still page", frame, nil)
	}
	if err == nil {
		rep.TypingMbit, _, err = scene(v, "typing", time.Duration(float64(time.Second)/rep.TypedCPS), sc.typeNext)
	}
	if err == nil {
		rep.ScrollingMbit, rep.FPS, err = scene(v, "scrolling", frame, scrollStep)
	}
	v.close()
	if err != nil {
		return nil, err
	}
	// Whole JPEG frames, as before, on the same scrolling page.
	var full *liveWatch
	for range 50 { // the box lets go of the last viewer's stream first
		if full, err = watchLive(ctx, base+"&mode=jpeg", p.Hub.Token()); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return nil, err
	}
	defer full.close()
	if _, err := full.first(ctx); err != nil {
		return nil, err
	}
	if rep.FullFrameMbit, rep.FullFrameFPS, err = scene(full, "scrolling, as whole JPEG frames", frame, scrollStep); err != nil {
		return nil, err
	}
	return rep, nil
}

// liveWatch is a viewer counting what it receives.
type liveWatch struct {
	ws          *websocket.Conn
	bytes, msgs atomic.Int64
	firstSize   chan int
	done        chan struct{}
	err         error
}

func watchLive(ctx context.Context, url, token string) (*liveWatch, error) {
	ws, _, err := websocket.DefaultDialer.DialContext(ctx, url, http.Header{"Authorization": {"Bearer " + token}})
	if err != nil {
		return nil, fmt.Errorf("live stream: %w", err)
	}
	v := &liveWatch{ws: ws, firstSize: make(chan int, 1), done: make(chan struct{})}
	go func() {
		defer close(v.done)
		for {
			_, data, err := ws.ReadMessage()
			if err != nil {
				v.err = err
				return
			}
			if v.msgs.Add(1) == 1 {
				v.firstSize <- len(data)
			}
			v.bytes.Add(int64(len(data)))
		}
	}()
	return v, nil
}

// first waits for the first frame and says its size.
func (v *liveWatch) first(ctx context.Context) (int, error) {
	select {
	case n := <-v.firstSize:
		return n, nil
	case <-v.done:
		return 0, fmt.Errorf("live stream ended: %w", v.err)
	case <-time.After(15 * time.Second):
		return 0, fmt.Errorf("no live frame in 15 s")
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (v *liveWatch) close() {
	v.ws.Close()
	<-v.done
}
