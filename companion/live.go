package companion

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/draw"
	"image/png"
	"sync/atomic"
	"time"

	"github.com/lowkeyhq/lowkey/devicectl"
	"github.com/lowkeyhq/lowkey/devicectl/screen"
)

// liveOut is where a live stream's frames go: the live data channel.
type liveOut interface {
	// send sends one frame (in parts) of a stream in mode; false when it
	// could not.
	send(mode string, frame uint32, data []byte) bool
	// buffered is what the mode's channel has not yet sent.
	buffered(mode string) uint64
}

// liveStream captures and sends frames at a steady rate while its
// conversation holds the grant for the source. In the updates mode it
// sends what changed, and fits the path: a frame is skipped while the
// channel still holds the last ones, and quality drops while it does and
// climbs back once it drains.
type liveStream struct {
	c      *control
	req    devicectl.LiveRequest
	out    liveOut
	stop   context.CancelFunc
	done   chan struct{}
	frames atomic.Int64
	// skipped counts frames not captured because the path was behind.
	skipped atomic.Int64
	// key asks for a whole frame at the next capture.
	key atomic.Bool
}

// How the stream fits the path: with more unsent than the channel drains
// in skipAfter, a frame is skipped; with more than it drains in
// lowerAfter, quality steps down (to minQuality); below that, back up to
// what was asked. What the channel drains is measured as it goes (never
// counted below minDrain a second).
const (
	skipAfter  = 250 * time.Millisecond
	lowerAfter = 80 * time.Millisecond
	minDrain   = 256 << 10
	minQuality = 25
)

// drain measures how fast the channel sends what it is given.
type drain struct {
	rate     float64 // bytes a second, smoothed
	buffered uint64
	at       time.Time
}

// update takes what is unsent now and what was handed over since the
// last update.
func (d *drain) update(buffered uint64, added int) {
	now := time.Now()
	if !d.at.IsZero() {
		if el := now.Sub(d.at).Seconds(); el > 0 {
			sent := float64(d.buffered) + float64(added) - float64(buffered)
			// Only a channel that had something to send says how fast it goes.
			if d.buffered > 0 || buffered > 0 {
				d.rate = 0.8*d.rate + 0.2*max(sent, 0)/el
			}
		}
	}
	d.buffered, d.at = buffered, now
}

// holds says how long the unsent bytes will take.
func (d *drain) holds() time.Duration {
	return time.Duration(float64(d.buffered) / max(d.rate, minDrain) * float64(time.Second))
}

func (c *control) setLive(r devicectl.LiveRequest, out liveOut) {
	if r.On && r.Key {
		// A viewer needs a whole frame: the running stream sends one.
		c.mu.Lock()
		ls := c.live
		c.mu.Unlock()
		if ls != nil && ls.req.Conversation == r.Conversation && ls.req.Source == r.Source {
			ls.key.Store(true)
			return
		}
	}
	c.stopLive()
	if !r.On {
		return
	}
	if err := c.allowed(r.Conversation, r.Capability()); err != nil {
		c.log.Warn("refused the live screen", "conversation", r.Conversation, "why", err)
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	ls := &liveStream{c: c, req: r, out: out, stop: stop, done: make(chan struct{})}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		stop()
		return
	}
	c.live = ls
	c.mu.Unlock()
	c.log.Info("live screen on", "conversation", r.Conversation, "source", r.Source, "fps", r.FPS, "mode", r.Mode)
	go ls.run(ctx)
}

func (c *control) stopLive() {
	c.mu.Lock()
	ls := c.live
	c.live = nil
	c.mu.Unlock()
	if ls != nil {
		ls.stop()
		<-ls.done
		c.log.Info("live screen off", "frames", ls.frames.Load(), "skipped", ls.skipped.Load())
	}
}

// check ends the stream when its grant is gone.
func (ls *liveStream) check() {
	if ls.c.allowed(ls.req.Conversation, ls.req.Capability()) != nil {
		go ls.c.stopLive()
	}
}

func (ls *liveStream) run(ctx context.Context) {
	capability := ls.req.Capability()
	defer close(ls.done)
	// Watching is acting too: where the person here asked to be asked, the
	// stream waits for their answer.
	if err := ls.c.ask.check(ctx, ls.req.Conversation, capability, "live."+ls.req.Source); err != nil {
		ls.c.log.Warn("refused the live screen", "conversation", ls.req.Conversation, "why", err)
		return
	}
	interval := time.Second / time.Duration(ls.req.FPS)
	next := time.Now()
	var (
		frame   uint32
		delta   screen.Delta
		quality = ls.req.Quality
		path    drain
		added   int
	)
	for ctx.Err() == nil {
		if ls.c.allowed(ls.req.Conversation, capability) != nil {
			return
		}
		path.update(ls.out.buffered(ls.req.Mode), added)
		added = 0
		behind := false
		switch held := path.holds(); {
		case held > skipAfter:
			quality, behind = max(minQuality, quality-10), true
			ls.skipped.Add(1)
		case held > lowerAfter:
			quality = max(minQuality, quality-5)
		default:
			quality = min(ls.req.Quality, quality+5)
		}
		var (
			data []byte
			err  error
		)
		switch {
		case !behind:
			data, err = ls.frame(ctx, &delta, quality)
		case ls.req.Mode == devicectl.LiveUpdates:
			// Behind: this frame is skipped, but the pointer still moves
			// (a few bytes).
			if u := delta.PointerOnly(ls.pointer()); u != nil {
				data = u.Marshal()
			}
		}
		if err != nil {
			ls.c.log.Warn("live screen stopped", "err", err)
			return
		}
		if data != nil {
			frame++
			if ls.out.send(ls.req.Mode, frame, data) {
				added = len(data) + (len(data)/devicectl.LivePart+1)*8
			} else if ls.req.Mode == devicectl.LiveUpdates {
				// A lost update breaks the chain: start it again.
				ls.key.Store(true)
			}
			ls.frames.Add(1)
		}
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

// frame captures and encodes the next frame: a whole JPEG, or in the
// updates mode what changed (nil when nothing did).
func (ls *liveStream) frame(ctx context.Context, delta *screen.Delta, quality int) ([]byte, error) {
	if ls.req.Mode != devicectl.LiveUpdates {
		return ls.capture(ctx)
	}
	img, err := ls.picture(ctx)
	if err != nil {
		return nil, err
	}
	u, err := delta.Next(img, ls.pointer(), quality, ls.req.Quality, ls.key.Swap(false))
	if err != nil || u == nil {
		return nil, err
	}
	return u.Marshal(), nil
}

// pointer is where the mouse pointer is on the picture sent (nil for the
// browser's tab, or when the screen does not say).
func (ls *liveStream) pointer() *image.Point {
	if ls.req.Source == "browser" {
		return nil
	}
	s, err := ls.c.screenDriver()
	if err != nil {
		return nil
	}
	p, err := s.Pointer()
	if err != nil {
		return nil
	}
	if w, h := s.Size(); ls.req.MaxEdge > 0 && max(w, h) > ls.req.MaxEdge {
		scale := float64(ls.req.MaxEdge) / float64(max(w, h))
		p = image.Point{X: int(float64(p.X) * scale), Y: int(float64(p.Y) * scale)}
	}
	return &p
}

// picture captures the source as pixels, no larger than max_edge.
func (ls *liveStream) picture(ctx context.Context) (*image.RGBA, error) {
	var img image.Image
	if ls.req.Source == "browser" {
		// The tab comes as an image already: a lossless one, so a still
		// page is still.
		args, _ := json.Marshal(map[string]any{"format": "png", "max_edge": ls.req.MaxEdge})
		res, err := ls.c.browserDriver().Do(ctx, "browser.screenshot", args)
		if err != nil {
			return nil, err
		}
		if img, err = png.Decode(bytes.NewReader(res.Blob)); err != nil {
			return nil, err
		}
	} else {
		s, err := ls.c.screenDriver()
		if err != nil {
			return nil, err
		}
		if img, err = s.Capture(); err != nil {
			return nil, err
		}
	}
	if b := img.Bounds(); ls.req.MaxEdge > 0 && max(b.Dx(), b.Dy()) > ls.req.MaxEdge {
		img = screen.Scale(img, float64(ls.req.MaxEdge)/float64(max(b.Dx(), b.Dy())))
	}
	if rgba, ok := img.(*image.RGBA); ok {
		return rgba, nil
	}
	rgba := image.NewRGBA(image.Rect(0, 0, img.Bounds().Dx(), img.Bounds().Dy()))
	draw.Draw(rgba, rgba.Rect, img, img.Bounds().Min, draw.Src)
	return rgba, nil
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
