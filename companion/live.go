package companion

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"time"

	"github.com/lowkeyhq/lowkey/devicectl"
	"github.com/lowkeyhq/lowkey/devicectl/screen"
)

// liveStream captures and sends frames at a steady rate while its
// conversation holds the grant for the source.
type liveStream struct {
	c      *control
	req    devicectl.LiveRequest
	send   func(frame uint32, data []byte)
	stop   context.CancelFunc
	done   chan struct{}
	frames atomic.Int64
}

func (c *control) setLive(r devicectl.LiveRequest, send func(uint32, []byte)) {
	c.stopLive()
	if !r.On {
		return
	}
	capability := devicectl.CapDesktop
	if r.Source == "browser" {
		capability = devicectl.CapBrowser
	}
	if err := c.allowed(r.Conversation, capability); err != nil {
		c.log.Warn("refused the live screen", "conversation", r.Conversation, "why", err)
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	ls := &liveStream{c: c, req: r, send: send, stop: stop, done: make(chan struct{})}
	c.mu.Lock()
	c.live = ls
	c.mu.Unlock()
	c.log.Info("live screen on", "conversation", r.Conversation, "source", r.Source, "fps", r.FPS)
	go ls.run(ctx, capability)
}

func (c *control) stopLive() {
	c.mu.Lock()
	ls := c.live
	c.live = nil
	c.mu.Unlock()
	if ls != nil {
		ls.stop()
		<-ls.done
		c.log.Info("live screen off", "frames", ls.frames.Load())
	}
}

// check ends the stream when its grant is gone.
func (ls *liveStream) check() {
	capability := devicectl.CapDesktop
	if ls.req.Source == "browser" {
		capability = devicectl.CapBrowser
	}
	if ls.c.allowed(ls.req.Conversation, capability) != nil {
		go ls.c.stopLive()
	}
}

func (ls *liveStream) run(ctx context.Context, capability devicectl.Capability) {
	defer close(ls.done)
	interval := time.Second / time.Duration(ls.req.FPS)
	next := time.Now()
	var frame uint32
	for ctx.Err() == nil {
		if ls.c.allowed(ls.req.Conversation, capability) != nil {
			return
		}
		data, err := ls.capture(ctx)
		if err != nil {
			ls.c.log.Warn("live screen stopped", "err", err)
			return
		}
		frame++
		ls.send(frame, data)
		ls.frames.Add(1)
		next = next.Add(interval)
		if d := time.Until(next); d > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
		} else {
			next = time.Now() // behind: do not try to catch up
		}
	}
}

func (ls *liveStream) capture(ctx context.Context) ([]byte, error) {
	r := ls.req
	if r.Source == "browser" {
		args, _ := json.Marshal(map[string]any{"format": "jpeg", "max_edge": r.MaxEdge, "quality": r.Quality})
		res, err := ls.c.browserDriver().Do(ctx, "browser.screenshot", args)
		if err != nil {
			return nil, err
		}
		return res.Blob, nil
	}
	s, err := ls.c.screenDriver()
	if err != nil {
		return nil, err
	}
	img, err := s.Capture()
	if err != nil {
		return nil, err
	}
	data, _, _, err := screen.Encode(img, r.MaxEdge, r.Quality, "jpeg")
	return data, err
}
