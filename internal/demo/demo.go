package demo

import (
	"bytes"
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

	"github.com/lowkeyhq/lowkey/devicectl/browser"
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

	api := p.Client()
	var sess struct{ ID string }
	if err := api.Do("POST", "/api/v1/sessions", map[string]string{"title": "demo"}, &sess); err != nil {
		return err
	}
	var devs []hub.DeviceView
	if err := api.Do("GET", "/api/v1/devices", nil, &devs); err != nil {
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
	if err := api.Do("POST", "/api/v1/sessions/"+sess.ID+"/devices/"+dev+"/actions", map[string]any{"action": "sys.info"}, &info); err != nil {
		return err
	}
	var pretty bytes.Buffer
	_ = json.Indent(&pretty, info.Result, "  ", "  ")
	step("sys.info over the link in %.2f ms:\n  %s", info.DurationMS, pretty.String())
	var echo struct {
		DataBytes  int     `json:"data_bytes"`
		DurationMS float64 `json:"duration_ms"`
	}
	if err := api.Do("POST", "/api/v1/sessions/"+sess.ID+"/devices/"+dev+"/actions", map[string]any{"action": "sys.echo", "args": map[string]int{"bytes": 5 << 20}}, &echo); err != nil {
		return err
	}
	step("sys.echo of %d bytes (chunked, hash-checked) in %.1f ms", echo.DataBytes, echo.DurationMS)
	if err := driveBrowser(api, sess.ID, dev, step); err != nil {
		return err
	}
	if o.Once {
		return nil
	}
	if u := h.SetupURL(); u != "" {
		fmt.Fprintf(out, "\nThe web app: open %s to create the owner, then chat in a conversation\n(the built-in agent understands \"help\"), turn device access on, and watch the focus pane.\n", u)
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

const demoPage = `<!doctype html><title>Lowkey demo page</title>
<h1>Hello from the box</h1>
<p id="count">Clicked 0 times</p>
<button onclick="this.dataset.n=(+this.dataset.n||0)+1; document.getElementById('count').textContent='Clicked '+this.dataset.n+' times'">Click me</button>`

// driveBrowser shows the browser toggle at work: refused while off, then
// a headless Chromium on the computer driven through the link.
func driveBrowser(api local.Client, sess, dev string, step func(string, ...any)) error {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = io.WriteString(w, demoPage)
	}))
	defer srv.Close()
	act := func(action string, args any, out any) error {
		return api.Do("POST", "/api/v1/sessions/"+sess+"/devices/"+dev+"/actions", map[string]any{"action": action, "args": args}, out)
	}
	err := act("browser.navigate", map[string]string{"url": srv.URL}, nil)
	if err == nil {
		return fmt.Errorf("the browser was driven with its toggle off")
	}
	msg := err.Error()
	if i := strings.Index(msg, `"message":"`); i >= 0 {
		msg = strings.TrimSuffix(strings.TrimSpace(msg[i+11:]), `"}}`)
	}
	step("browser access is off by default, so browser.navigate was refused: %s", msg)
	if browser.Find("") == "" {
		step("no Chromium on this computer, so the browser part stops here: install chromium to see it")
		return nil
	}
	if err := api.Do("PUT", "/api/v1/sessions/"+sess+"/devices/"+dev+"/access", map[string]bool{"browser": true}, nil); err != nil {
		return err
	}
	time.Sleep(100 * time.Millisecond) // the grant travels to the computer
	step("browser access turned on for this conversation")
	var nav struct {
		Result     struct{ Title string } `json:"result"`
		DurationMS float64                `json:"duration_ms"`
	}
	if err := act("browser.navigate", map[string]string{"url": srv.URL}, &nav); err != nil {
		return err
	}
	step("headless Chromium on the computer opened %q in %.0f ms", nav.Result.Title, nav.DurationMS)
	var snap struct {
		Result struct{ Snapshot string } `json:"result"`
	}
	if err := act("browser.snapshot", nil, &snap); err != nil {
		return err
	}
	step("its accessibility snapshot, with element refs:\n    %s", strings.ReplaceAll(strings.TrimSpace(snap.Result.Snapshot), "\n", "\n    "))
	m := regexp.MustCompile(`button "Click me" \[ref=(e\d+)\]`).FindStringSubmatch(snap.Result.Snapshot)
	if m == nil {
		return fmt.Errorf("the demo page's button is not in the snapshot")
	}
	if err := act("browser.click", map[string]string{"ref": m[1]}, nil); err != nil {
		return err
	}
	if err := act("browser.snapshot", nil, &snap); err != nil {
		return err
	}
	if !strings.Contains(snap.Result.Snapshot, "Clicked 1 times") {
		return fmt.Errorf("the click did not change the page")
	}
	step("clicked %s: the page now says \"Clicked 1 times\"", m[1])
	var shot struct {
		Result struct {
			Width, Height int
			Scale         float64
		} `json:"result"`
		DataBytes int `json:"data_bytes"`
	}
	if err := act("browser.screenshot", map[string]any{"max_edge": 800, "format": "jpeg"}, &shot); err != nil {
		return err
	}
	step("screenshot: %dx%d at scale %.2f, %d bytes", shot.Result.Width, shot.Result.Height, shot.Result.Scale, shot.DataBytes)
	if err := api.Do("PUT", "/api/v1/sessions/"+sess+"/devices/"+dev+"/access", map[string]bool{"browser": false}, nil); err != nil {
		return err
	}
	var audit []json.RawMessage
	if err := api.Do("GET", "/api/v1/audit?session="+sess, nil, &audit); err != nil {
		return err
	}
	step("browser access off again; the audit log holds %d records for this conversation (GET /api/v1/audit)", len(audit))
	return nil
}
