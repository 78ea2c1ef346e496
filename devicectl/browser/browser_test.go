package browser_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg"
	_ "image/png"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/lowkeyhq/lowkey/devicectl"
	"github.com/lowkeyhq/lowkey/devicectl/browser"
	"github.com/lowkeyhq/lowkey/errcode"
	"github.com/lowkeyhq/lowkey/internal/testenv"
)

const testPage = `<!doctype html>
<html><head><title>Test page</title></head>
<body style="height:3000px">
<h1>Lowkey test page</h1>
<p id="status">idle</p>
<button onclick="document.getElementById('status').textContent='clicked'">Press me</button>
<label>Name <input id="name" oninput="document.getElementById('echo').textContent=this.value"></label>
<span id="echo"></span>
<label>Secret <input type="password" id="pw"></label>
<label>Colour <select id="colour" onchange="document.getElementById('status').textContent='colour '+this.value">
  <option value="r">Red</option><option value="g">Green</option><option value="b">Blue</option></select></label>
<button onclick="const a = confirm('Really?'); document.getElementById('status').textContent='confirm '+a">Ask me</button>
<button onclick="setTimeout(()=>{document.getElementById('late').textContent='arrived late'}, 300)">Later</button>
<p id="late"></p>
<a href="/file.txt" download>Get the file</a>
<label>Attach <input type="file" id="up" onchange="document.getElementById('status').textContent='file '+this.files[0].name+' '+this.files[0].size"></label>
<a href="/second">Second page</a>
</body></html>`

func testServer(t *testing.T) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, testPage)
	})
	mux.HandleFunc("/second", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, `<!doctype html><title>Second</title><h1>The second page</h1>`)
	})
	mux.HandleFunc("/file.txt", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Disposition", `attachment; filename="report.txt"`)
		io.WriteString(w, "the report body\n")
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func requireBrowser(t *testing.T) { testenv.RequireBrowser(t) }

func quiet() *slog.Logger {
	if os.Getenv("LOWKEY_TEST_LOG") != "" {
		return slog.Default()
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newBrowser(t *testing.T) *browser.Browser {
	t.Helper()
	requireBrowser(t)
	dir := t.TempDir()
	b := browser.New(browser.Config{ProfileDir: filepath.Join(dir, "profile"), DownloadDir: filepath.Join(dir, "downloads"), Headless: true, Logger: quiet()})
	t.Cleanup(func() { b.Close() })
	return b
}

type call struct {
	t *testing.T
	b *browser.Browser
}

func (c call) do(action string, args any) (map[string]any, []byte) {
	c.t.Helper()
	res, err := c.try(action, args)
	if err != nil {
		c.t.Fatalf("%s: %v", action, err)
	}
	var m map[string]any
	if err := json.Unmarshal(res.JSON, &m); err != nil {
		c.t.Fatalf("%s: %v in %s", action, err, res.JSON)
	}
	return m, res.Blob
}

func (c call) try(action string, args any) (*devicectl.Result, error) {
	raw, _ := json.Marshal(args)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.b.Do(ctx, action, raw)
}

// refOf finds the ref of the first snapshot line matching re.
func refOf(t *testing.T, snap, re string) string {
	t.Helper()
	for _, line := range strings.Split(snap, "\n") {
		if regexp.MustCompile(re).MatchString(line) {
			if m := regexp.MustCompile(`\[ref=(e\d+)\]`).FindStringSubmatch(line); m != nil {
				return m[1]
			}
		}
	}
	t.Fatalf("no line matching %q in snapshot:\n%s", re, snap)
	return ""
}

func pageText(c call) string {
	m, _ := c.do("browser.eval", map[string]string{"js": "document.getElementById('status').textContent"})
	return fmt.Sprint(m["value"])
}

func TestBrowserActionsOnATestPage(t *testing.T) {
	srv := testServer(t)
	c := call{t, newBrowser(t)}

	m, _ := c.do("browser.navigate", map[string]string{"url": srv.URL})
	if m["title"] != "Test page" {
		t.Fatalf("navigate: %v", m)
	}
	m, _ = c.do("browser.snapshot", nil)
	snap := m["snapshot"].(string)
	for _, want := range []string{`heading "Lowkey test page" [level=1]`, `button "Press me"`, `combobox "Colour"`, `link "Get the file"`} {
		if !strings.Contains(snap, want) {
			t.Fatalf("snapshot lacks %q:\n%s", want, snap)
		}
	}

	// Click by ref changes the page.
	c.do("browser.click", map[string]string{"ref": refOf(t, snap, `button "Press me"`)})
	if got := pageText(c); got != "clicked" {
		t.Fatalf("after click: %q", got)
	}

	// Typing into a field reaches the page; the password field says so.
	m, _ = c.do("browser.type", map[string]string{"ref": refOf(t, snap, `textbox "Name"`), "text": "Ada Lovelace"})
	if m["password_field"] != false || m["typed_chars"].(float64) != 12 {
		t.Fatalf("type: %v", m)
	}
	v, _ := c.do("browser.eval", map[string]string{"js": "document.getElementById('echo').textContent"})
	if v["value"] != "Ada Lovelace" {
		t.Fatalf("typed text: %v", v)
	}
	m, _ = c.do("browser.type", map[string]string{"ref": refOf(t, snap, `textbox "Secret"`), "text": "hunter2"})
	if m["password_field"] != true {
		t.Fatalf("password field not recognised: %v", m)
	}
	m, _ = c.do("browser.snapshot", nil)
	if strings.Contains(m["snapshot"].(string), "hunter2") {
		t.Fatal("the snapshot shows a password")
	}

	// Select by label or value.
	c.do("browser.select", map[string]any{"ref": refOf(t, snap, `combobox "Colour"`), "values": []string{"Green"}})
	if got := pageText(c); got != "colour g" {
		t.Fatalf("after select: %q", got)
	}
	if _, err := c.try("browser.select", map[string]any{"ref": refOf(t, snap, `combobox "Colour"`), "values": []string{"Purple"}}); err == nil || !strings.Contains(err.Error(), "no option matches") {
		t.Fatalf("select of a missing option: %v", err)
	}

	// Scroll moves the page.
	m, _ = c.do("browser.scroll", map[string]float64{"dy": 600})
	if m["scroll_y"].(float64) < 500 {
		t.Fatalf("scroll: %v", m)
	}

	// Wait for text that appears later.
	c.do("browser.click", map[string]string{"ref": refOf(t, snap, `button "Later"`)})
	m, _ = c.do("browser.wait_for", map[string]any{"text": "arrived late", "timeout_ms": 5000})
	if _, err := c.try("browser.wait_for", map[string]any{"text": "never there", "timeout_ms": 300}); err == nil || !strings.Contains(err.Error(), "did not appear") {
		t.Fatalf("wait_for of missing text: %v", err)
	}

	// A dialog is reported, blocks other actions, and is answered.
	m, _ = c.do("browser.click", map[string]string{"ref": refOf(t, snap, `button "Ask me"`)})
	if d, ok := m["dialog"].(map[string]any); !ok || d["message"] != "Really?" {
		t.Fatalf("click that opens a dialog: %v", m)
	}
	if _, err := c.try("browser.navigate", map[string]string{"url": srv.URL}); err == nil || !strings.Contains(err.Error(), "dialog") {
		t.Fatalf("navigate with a dialog open: %v", err)
	}
	m, _ = c.do("browser.dialog", map[string]any{"accept": true})
	if m["accepted"] != true {
		t.Fatalf("dialog: %v", m)
	}
	if got := pageText(c); got != "confirm true" {
		t.Fatalf("after the dialog: %q", got)
	}

	// Upload a file sent from the box.
	c.do("browser.upload", map[string]any{"ref": refOf(t, snap, `Attach`), "file": map[string]string{"name": "notes.txt", "data_base64": base64.StdEncoding.EncodeToString([]byte("twelve bytes"))}})
	if got := pageText(c); got != "file notes.txt 12" {
		t.Fatalf("after upload: %q", got)
	}

	// A download comes back.
	c.do("browser.click", map[string]string{"ref": refOf(t, snap, `link "Get the file"`)})
	var id string
	for deadline := time.Now().Add(10 * time.Second); id == "" && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		m, _ = c.do("browser.downloads", nil)
		for _, d := range m["downloads"].([]any) {
			d := d.(map[string]any)
			if d["name"] == "report.txt" && d["state"] == "completed" {
				id = d["id"].(string)
			}
		}
	}
	if id == "" {
		t.Fatalf("no completed download: %v", m)
	}
	_, blob := c.do("browser.downloads", map[string]string{"fetch": id})
	if string(blob) != "the report body\n" {
		t.Fatalf("fetched %q", blob)
	}

	// Screenshots decode at the asked size and say the scale.
	for _, format := range []string{"png", "jpeg"} {
		m, blob = c.do("browser.screenshot", map[string]any{"max_edge": 640, "format": format})
		img, kind, err := image.Decode(bytes.NewReader(blob))
		if err != nil || kind != format {
			t.Fatalf("screenshot %s: %v %s", format, err, kind)
		}
		w, h := img.Bounds().Dx(), img.Bounds().Dy()
		if max(w, h) != 640 || m["width"].(float64) != float64(w) || m["height"].(float64) != float64(h) || m["scale"].(float64) >= 1 {
			t.Fatalf("screenshot %s is %dx%d, says %v", format, w, h, m)
		}
	}

	// Navigate on, then back.
	m, _ = c.do("browser.click", map[string]string{"ref": refOf(t, snap, `link "Second page"`)})
	c.do("browser.wait_for", map[string]any{"text": "The second page"})
	m, _ = c.do("browser.back", nil)
	if m["title"] != "Test page" {
		t.Fatalf("back: %v", m)
	}
	// Refs from an old page are refused, not guessed at.
	if _, err := c.try("browser.click", map[string]string{"ref": "e1"}); err == nil || !strings.Contains(err.Error(), "snapshot") {
		t.Fatalf("stale ref: %v", err)
	}
	m, _ = c.do("browser.press", map[string]string{"key": "Control+a"})
	m, _ = c.do("browser.tabs", nil)
	if tabs := m["tabs"].([]any); len(tabs) != 1 || tabs[0].(map[string]any)["active"] != true {
		t.Fatalf("tabs: %v", m)
	}
}

func TestSnapshotHasAHardCap(t *testing.T) {
	var page strings.Builder
	page.WriteString("<!doctype html><title>Big</title>")
	for i := range 3000 {
		fmt.Fprintf(&page, "<button>Button number %d</button>", i)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, page.String())
	}))
	defer srv.Close()
	c := call{t, newBrowser(t)}
	c.do("browser.navigate", map[string]string{"url": srv.URL})
	m, _ := c.do("browser.snapshot", map[string]int{"max_chars": 2000})
	snap := m["snapshot"].(string)
	// The cap counts characters and holds the note that says how to read
	// on, and the snapshot ends at a whole line.
	if n := utf8.RuneCountInString(snap); n > 2000 || m["truncated"] != true || !strings.Contains(snap, "more characters") || !strings.HasSuffix(snap, "\n") {
		t.Fatalf("capped snapshot is %d chars, truncated=%v:\n%s", n, m["truncated"], snap)
	}
	m, _ = c.do("browser.snapshot", map[string]int{"max_chars": 10_000_000})
	if n := utf8.RuneCountInString(m["snapshot"].(string)); n > browser.MaxSnapshotChars {
		t.Fatalf("snapshot of %d chars over the hard cap", n)
	}
}

func TestBadInputAndURLs(t *testing.T) {
	c := call{t, newBrowser(t)}
	for _, tc := range []struct {
		action string
		args   any
		code   string
	}{
		{"browser.navigate", map[string]string{"url": "file:///etc/passwd"}, "bad_args"},
		{"browser.navigate", map[string]string{"url": "javascript:alert(1)"}, "bad_args"},
		{"browser.navigate", map[string]int{"url": 3}, "bad_args"},
		{"browser.click", map[string]string{}, "bad_args"},
		{"browser.press", map[string]string{"key": "Hyper+Q"}, "bad_args"},
		{"browser.screenshot", map[string]string{"format": "bmp"}, "bad_args"},
		{"browser.dialog", map[string]bool{"accept": true}, "no_dialog"},
		{"browser.downloads", map[string]string{"fetch": "nope"}, "not_found"},
		{"browser.nothing", nil, "unknown_action"},
	} {
		_, err := c.try(tc.action, tc.args)
		var ae *errcode.Error
		if !errors.As(err, &ae) || string(ae.Code) != tc.code || ae.Message == "" {
			t.Errorf("%s %v: %v, want %s", tc.action, tc.args, err, tc.code)
		}
	}
}

func TestCancelStopsTheActionInFlight(t *testing.T) {
	srv := testServer(t)
	c := call{t, newBrowser(t)}
	c.do("browser.navigate", map[string]string{"url": srv.URL})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(300 * time.Millisecond); cancel() }()
	start := time.Now()
	_, err := c.b.Do(ctx, "browser.wait_for", json.RawMessage(`{"text":"never there","timeout_ms":20000}`))
	// (Short of the wait's own 20 s: cancelled, not run out.)
	if !errors.Is(err, context.Canceled) || time.Since(start) > 15*time.Second {
		t.Fatalf("cancelled wait_for: %v after %s", err, time.Since(start))
	}
	// The browser still works after the cancel.
	m, _ := c.do("browser.navigate", map[string]string{"url": srv.URL + "/second"})
	if m["title"] != "Second" {
		t.Fatalf("after cancel: %v", m)
	}
}

func TestProfilePersistsAndNoChromiumIsLeft(t *testing.T) {
	requireBrowser(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/login" {
			http.SetCookie(w, &http.Cookie{Name: "session", Value: "kept", Path: "/", Expires: time.Now().Add(time.Hour)})
		}
		io.WriteString(w, "<title>x</title>")
	}))
	defer srv.Close()
	profile := filepath.Join(t.TempDir(), "profile")
	for i, path := range []string{"/login", "/"} {
		b := browser.New(browser.Config{ProfileDir: profile, Headless: true, Logger: quiet()})
		c := call{t, b}
		c.do("browser.navigate", map[string]string{"url": srv.URL + path})
		if i == 1 {
			m, _ := c.do("browser.eval", map[string]string{"js": "document.cookie"})
			if m["value"] != "session=kept" {
				t.Fatalf("the login did not survive a restart: %v", m)
			}
		}
		b.Close()
		// Every process of this profile is gone.
		out, _ := exec.Command("pgrep", "-f", profile).Output()
		if len(bytes.TrimSpace(out)) > 0 {
			t.Fatalf("Chromium left running after Close: pids %s", out)
		}
	}
}

func TestAttachToRunningChrome(t *testing.T) {
	requireBrowser(t)
	// Chrome's helpers keep writing to its profile for a moment after it
	// is killed, so the profile is removed by hand, after they are gone.
	dir, err := os.MkdirTemp("", "lowkey-attach-")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for range 50 {
			if os.RemoveAll(dir) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	cmd := exec.Command(browser.Find(""), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--remote-debugging-port=0", "--user-data-dir="+dir, "about:blank")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() }()
	if _, err := browser.AttachURL(t.TempDir()); err == nil {
		t.Fatal("attached to a directory with no Chrome")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := browser.AttachURL(dir); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Chrome did not write DevToolsActivePort")
		}
		time.Sleep(50 * time.Millisecond)
	}
	srv := testServer(t)
	b := browser.New(browser.Config{AttachDir: dir, Logger: quiet()})
	c := call{t, b}
	m, _ := c.do("browser.navigate", map[string]string{"url": srv.URL})
	if m["title"] != "Test page" {
		t.Fatalf("attached navigate: %v", m)
	}
	// The person's Chrome keeps site isolation: a frame from another site
	// runs in a process of its own, and is read and acted in through its
	// target.
	other := serve(t, "localhost", map[string]string{"/": `<!doctype html><button onclick="this.textContent='Pressed inside'">Press inside</button>`})
	host := serve(t, "127.0.0.1", map[string]string{"/": `<!doctype html><title>Host</title><iframe src="` + other + `/" title="Other site"></iframe>`})
	c.do("browser.navigate", map[string]string{"url": host})
	var s string
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(s, `button "Press inside"`); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the other site's frame is not read:\n%s", s)
		}
		s = snap(c, nil)
	}
	c.do("browser.click", map[string]string{"ref": refOf(t, s, `button "Press inside"`)})
	if s = snap(c, nil); !strings.Contains(s, `button "Pressed inside"`) {
		t.Fatalf("the click inside the other site's frame:\n%s", s)
	}
	b.Close()
	// Closing an attached browser leaves the person's Chrome running.
	if cmd.ProcessState != nil {
		t.Fatal("the person's Chrome was closed")
	}
	if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("Chrome not running after detach: %v", err)
	}
}
