// Package demo is "lowkey demo": a hub on a temporary data dir, a companion
// on this machine paired through the real flow, and a first action over
// the link, all driven the way a person would drive them.
package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lowkeyhq/lowkey/hub"
	"github.com/lowkeyhq/lowkey/internal/local"
)

// Options shape one demo run.
type Options struct {
	// Once stops after showing the result instead of waiting for Ctrl-C.
	Once    bool
	Listen  string
	Version string
	Out     io.Writer
	Logger  *slog.Logger
}

// Run runs the demo until ctx ends (or at once, with Once).
func Run(ctx context.Context, o Options) error {
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	out := o.Out
	dir, err := os.MkdirTemp("", "lowkey-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	step := func(f string, a ...any) { fmt.Fprintf(out, "• "+f+"\n", a...) }

	step("starting a hub in %s and pairing a companion with it…", dir)
	p, err := local.Start(ctx, dir, local.Options{Listen: o.Listen, Name: "demo-laptop", Version: o.Version, Logger: o.Logger})
	if err != nil {
		return err
	}
	defer p.Close()
	h := p.Hub
	step("hub running at %s", h.URL())
	step("pairing code %s from the admin socket (what \"lowkey pair-code\" prints)", p.Code)
	step("companion paired: CPace with key confirmation, box %s pinned (DTLS %s…)", p.Record.Peer.ID, p.Record.Peer.Fingerprint[:23])
	step("link up: signed challenge, WebRTC data channels, DTLS certificate matches the pinned one")

	api := client{base: h.URL(), token: h.Token()}
	var sess struct{ ID string }
	if err := api.do("POST", "/api/v1/sessions", map[string]string{"title": "demo"}, &sess); err != nil {
		return err
	}
	var devs []hub.DeviceView
	if err := api.do("GET", "/api/v1/devices", nil, &devs); err != nil {
		return err
	}
	if len(devs) != 1 {
		return fmt.Errorf("expected one device, the box lists %d", len(devs))
	}
	dev := devs[0].ID
	var info struct {
		Result     json.RawMessage `json:"result"`
		DurationMS float64         `json:"duration_ms"`
	}
	if err := api.do("POST", "/api/v1/sessions/"+sess.ID+"/devices/"+dev+"/actions", map[string]any{"action": "sys.info"}, &info); err != nil {
		return err
	}
	var pretty bytes.Buffer
	_ = json.Indent(&pretty, info.Result, "  ", "  ")
	step("sys.info over the link in %.2f ms:\n  %s", info.DurationMS, pretty.String())
	var echo struct {
		DataBytes  int     `json:"data_bytes"`
		DurationMS float64 `json:"duration_ms"`
	}
	if err := api.do("POST", "/api/v1/sessions/"+sess.ID+"/devices/"+dev+"/actions", map[string]any{"action": "sys.echo", "args": map[string]int{"bytes": 5 << 20}}, &echo); err != nil {
		return err
	}
	step("sys.echo of %d bytes (chunked, hash-checked) in %.1f ms", echo.DataBytes, echo.DurationMS)
	if o.Once {
		return nil
	}
	fmt.Fprintf(out, `
Try, while this runs (Ctrl-C stops it and removes the temporary data):
  curl -s -H 'Authorization: Bearer %[1]s' %[2]s/api/v1/devices
  curl -s -H 'Authorization: Bearer %[1]s' -d '{"action":"sys.echo","args":{"bytes":100}}' %[2]s/api/v1/sessions/%[3]s/devices/%[4]s/actions
  lowkey devices --data %[5]s
`, h.Token(), h.URL(), sess.ID, dev, filepath.Join(dir, "box"))
	<-ctx.Done()
	return nil
}

type client struct{ base, token string }

func (c client) do(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := (&http.Client{Timeout: time.Minute, Transport: &http.Transport{DialContext: (&net.Dialer{}).DialContext}}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))
	}
	return json.Unmarshal(b, out)
}
