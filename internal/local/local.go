package local

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/lowkeyhq/lowkey/companion"
	"github.com/lowkeyhq/lowkey/hub"
	"github.com/lowkeyhq/lowkey/internal/admin"
)

// Pair is a running box with one linked companion.
type Pair struct {
	Hub       *hub.Hub
	HubDir    string
	HubConfig hub.Config
	State     companion.State
	Runner    *companion.Runner
	Record    *companion.HubRecord
	DeviceID  string
	Code      string

	stop      context.CancelFunc
	runDone   chan error
	closeOnce sync.Once
}

// Options shape the pair.
type Options struct {
	Listen  string
	Name    string
	Version string
	Logger  *slog.Logger
	// Hub and Companion adjust the two configurations before start.
	Hub       func(*hub.Config)
	Companion func(*companion.Config)
}

// Start makes a box in dir/box and a companion in dir/laptop, pairs them
// and waits for the link.
func Start(ctx context.Context, dir string, o Options) (*Pair, error) {
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	if o.Name == "" {
		o.Name = "laptop"
	}
	p := &Pair{HubDir: filepath.Join(dir, "box"), State: companion.State{Dir: filepath.Join(dir, "laptop")}}
	hc := hub.Config{DataDir: p.HubDir, Listen: o.Listen, NoMDNS: true, LoopbackICE: true, Name: "box", Version: o.Version, Logger: o.Logger}
	if o.Hub != nil {
		o.Hub(&hc)
	}
	p.HubConfig = hc
	h, err := hub.Start(hc)
	if err != nil {
		return nil, err
	}
	p.Hub = h
	var code struct {
		Code string `json:"code"`
	}
	if err := admin.New(hub.SocketPath(p.HubDir)).Do("POST", "/admin/pair-code", nil, &code); err != nil {
		h.Close()
		return nil, fmt.Errorf("pairing code: %w", err)
	}
	p.Code = code.Code
	if p.Record, err = companion.Pair(ctx, p.State, p.Addr(), code.Code, o.Name); err != nil {
		h.Close()
		return nil, fmt.Errorf("pairing: %w", err)
	}
	id, err := p.State.Identity()
	if err != nil {
		h.Close()
		return nil, err
	}
	p.DeviceID = id.ID()
	cc := companion.Config{State: p.State, LoopbackICE: true, NoMDNS: true, Headless: true, Version: o.Version, Logger: o.Logger}
	if o.Companion != nil {
		o.Companion(&cc)
	}
	p.Runner = companion.NewRunner(cc)
	rctx, stop := context.WithCancel(context.Background())
	p.stop, p.runDone = stop, make(chan error, 1)
	go func() { p.runDone <- p.Runner.Run(rctx) }()
	if err := p.WaitLink(ctx, 20*time.Second); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// Addr is the box's host:port.
func (p *Pair) Addr() string { return strings.TrimPrefix(p.Hub.URL(), "http://") }

// URL is the box's web address.
func (p *Pair) URL() string { return p.Hub.URL() }

// WaitLink waits for the companion's next link-up, and for the box to
// count the computer online (the companion can see the link open a moment
// before the box has taken it in).
func (p *Pair) WaitLink(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	select {
	case <-p.Runner.LinkUp():
		for {
			ds, err := p.Hub.Devices()
			if err != nil {
				return err
			}
			for _, d := range ds {
				if d.ID == p.DeviceID && d.Online {
					return nil
				}
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("the box did not count the computer online in %s", limit)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
		}
	case err := <-p.runDone:
		p.runDone <- err
		return fmt.Errorf("companion stopped: %w", err)
	case <-time.After(limit):
		return fmt.Errorf("the link did not come up in %s", limit)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops the companion, then the box. It may be called again.
func (p *Pair) Close() {
	p.closeOnce.Do(func() {
		if p.stop != nil {
			p.stop()
			<-p.runDone
		}
		if p.Hub != nil {
			p.Hub.Close()
		}
	})
}

// RunnerErr is what the companion ended with, if it ended on its own.
func (p *Pair) RunnerErr() error {
	select {
	case err := <-p.runDone:
		p.runDone <- err
		if err == nil {
			return errors.New("companion stopped")
		}
		return err
	default:
		return nil
	}
}

// Client calls the box's HTTP API with the owner's token.
type Client struct{ Base, Token string }

// Client is an API client for this pair's box.
func (p *Pair) Client() Client { return Client{Base: p.URL(), Token: p.Hub.Token()} }

// Do calls method path with body as JSON and decodes the answer into out
// (when out is not nil). A status of 300 or more is an error with the
// box's message.
func (c Client) Do(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.Base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}
