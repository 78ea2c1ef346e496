package e2e

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-rod/rod/lib/proto"

	"github.com/lowkeyhq/lowkey/internal/bench"
)

func tarOf(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	tw.Close()
	return buf.Bytes()
}

func publish(t *testing.T, base, token, sid string, body []byte) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/api/v1/sessions/"+sid+"/pages", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/x-tar")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

func TestPublishedPagesAreInert(t *testing.T) {
	// The canary stands for anything a page's script would reach: the
	// hub's API included. It must see nothing.
	var hits atomic.Int64
	canary := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Access-Control-Allow-Origin", "*")
		io.WriteString(w, "hello")
	}))
	defer canary.Close()
	b := startBox(t, "", t.TempDir(), "127.0.0.1:0", "--no-mdns", "--pages-listen", "127.0.0.1:0")
	pagesOrigin := b.waitFor(`Published pages are served at (\S+)`, 5*time.Second)
	setup := b.waitFor(`Create the owner \(this link works once\): (\S+)`, 5*time.Second)
	token := strings.TrimSpace(mustRun(t, "", "lowkey", "token", "--data", b.data))
	base := "http://" + b.addr
	sid := apiJSON(t, "POST", base+"/api/v1/sessions", token, `{}`, 201)["id"].(string)
	hubAPI := base + "/api/v1/devices"
	page := `<!doctype html><html><head><title>Report</title><link rel="stylesheet" href="style.css">
<script>document.title = "HACKED"; fetch("` + canary.URL + `/inline"); fetch("` + hubAPI + `");</script>
<script src="app.js"></script></head>
<body><h1 id="h">Quarterly report</h1><p>Static text.</p><img src="chart.png" alt="chart">
<iframe id="f" src="` + base + `/"></iframe><iframe id="g" src="` + canary.URL + `/frame"></iframe>
<img src="` + canary.URL + `/pixel.png"><a href="doc.pdf">pdf</a></body></html>`
	files := map[string]string{
		"index.html":       page,
		"style.css":        "h1 { color: rebeccapurple }",
		"app.js.txt":       "not a script",
		"chart.png":        "\x89PNG\r\n\x1a\n",
		"doc.pdf":          "%PDF-1.4\n",
		"fonts/a.woff2":    "wOF2",
		"notes/readme.txt": "plain",
	}
	status, m := publish(t, base, token, sid, tarOf(t, files))
	if status != 201 {
		t.Fatalf("publish: %d %v", status, m)
	}
	url := m["url"].(string)
	if !strings.HasPrefix(url, pagesOrigin+"/p/") || len(strings.TrimSuffix(strings.TrimPrefix(url, pagesOrigin+"/p/"), "/")) < 40 {
		t.Fatalf("page URL %s (pages at %s)", url, pagesOrigin)
	}

	// Headers on every file type; no cookies; read-only.
	for name, ctype := range map[string]string{"": "text/html; charset=utf-8", "style.css": "text/css; charset=utf-8", "chart.png": "image/png",
		"doc.pdf": "application/pdf", "fonts/a.woff2": "font/woff2", "notes/readme.txt": "text/plain; charset=utf-8"} {
		resp, err := http.Get(url + name)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		h := resp.Header
		if resp.StatusCode != 200 || h.Get("Content-Type") != ctype || h.Get("X-Content-Type-Options") != "nosniff" ||
			!strings.HasPrefix(h.Get("Content-Security-Policy"), "sandbox; default-src 'none'") || h.Get("Referrer-Policy") != "no-referrer" ||
			h.Get("Cross-Origin-Resource-Policy") == "" || h.Get("Cross-Origin-Opener-Policy") == "" || len(resp.Cookies()) != 0 {
			t.Fatalf("%q: %d %v", name, resp.StatusCode, h)
		}
	}
	req, _ := http.NewRequest("POST", url, strings.NewReader("x"))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 405 {
		t.Fatalf("POST to a page: %v %v", resp.StatusCode, err)
	}
	if resp, _ := http.Get(url + "app.js"); resp.StatusCode != 404 {
		t.Fatalf("a file that is not there: %d", resp.StatusCode)
	}

	// In Chromium, signed in to the hub: the page stays as published.
	w := ownerPage(t, openBrowser(t), setup)
	// Which requests carried a Cookie header, by URL.
	var (
		mu       sync.Mutex
		urls     = map[proto.NetworkRequestID]string{}
		withCook = map[proto.NetworkRequestID]bool{}
	)
	_ = proto.NetworkEnable{}.Call(w.page)
	go w.page.EachEvent(func(e *proto.NetworkRequestWillBeSentExtraInfo) {
		for k, v := range e.Headers {
			if strings.EqualFold(k, "cookie") && v.String() != "" {
				mu.Lock()
				withCook[e.RequestID] = true
				mu.Unlock()
			}
		}
	}, func(e *proto.NetworkRequestWillBeSent) {
		mu.Lock()
		urls[e.RequestID] = e.Request.URL
		mu.Unlock()
	})()
	cookieSentTo := func(prefix string) bool {
		mu.Lock()
		defer mu.Unlock()
		for id := range withCook {
			if strings.HasPrefix(urls[id], prefix) {
				return true
			}
		}
		return false
	}
	// Leave the web app, so nothing else talks to the hub from this tab.
	if err := w.page.Navigate("about:blank"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	hubBefore := hubRequests(t, base, token)
	// No script runs on a published page, not even the one CDP would
	// evaluate, so the checks look from outside: the target's title and
	// the browser's network log.
	before := hits.Load()
	if err := w.page.Timeout(10 * time.Second).Navigate(url); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	w.shot("published page")
	info, _ := w.page.Info()
	if info.Title != "Report" {
		t.Fatalf("the page's script ran: title %q", info.Title)
	}
	if n := hits.Load() - before; n != 0 {
		t.Fatalf("the page reached out %d times", n)
	}
	if cookieSentTo(pagesOrigin) {
		t.Fatal("a cookie was sent to the pages origin")
	}
	// The hub saw no request from the page (its API, or itself in an
	// iframe): only this count's own.
	if n := hubRequests(t, base, token) - hubBefore; n != 1 {
		t.Fatalf("the hub served %d requests while the page loaded", n-1)
	}
	// The cookie check can see a cookie: the hub's own origin gets it.
	if err := w.page.Timeout(10 * time.Second).Navigate(strings.Replace(base, "127.0.0.1", "localhost", 1) + "/api/v1/me"); err != nil {
		t.Fatal(err)
	}
	hubLocal := strings.Replace(base, "127.0.0.1", "localhost", 1)
	deadline := time.Now().Add(5 * time.Second)
	for !cookieSentTo(hubLocal) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if !cookieSentTo(hubLocal) {
		t.Fatal("the cookie check saw no cookie even on the hub's origin")
	}

	// Unpublish: the URL stops at once.
	id := m["id"].(string)
	req, _ = http.NewRequest("DELETE", base+"/api/v1/sessions/"+sid+"/pages/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("unpublish: %v", err)
	}
	if resp, _ := http.Get(url); resp.StatusCode != 404 {
		t.Fatalf("after unpublish: %d", resp.StatusCode)
	}
}

func TestPublishingRefusesEscapesAndOversize(t *testing.T) {
	b := startBox(t, "", t.TempDir(), "127.0.0.1:0", "--no-mdns", "--pages-listen", "127.0.0.1:0")
	token := strings.TrimSpace(mustRun(t, "", "lowkey", "token", "--data", b.data))
	base := "http://" + b.addr
	sid := apiJSON(t, "POST", base+"/api/v1/sessions", token, `{}`, 201)["id"].(string)
	entry := func(h *tar.Header, body string) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		h.Size = int64(len(body))
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		tw.WriteHeader(h)
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(body))
		}
		tw.Close()
		return buf.Bytes()
	}
	cases := []struct {
		name   string
		body   []byte
		status int
	}{
		{"parent path", entry(&tar.Header{Name: "../evil.html", Typeflag: tar.TypeReg, Mode: 0o644}, "x"), 400},
		{"absolute path", entry(&tar.Header{Name: "/etc/evil.html", Typeflag: tar.TypeReg, Mode: 0o644}, "x"), 400},
		{"inner parent", entry(&tar.Header{Name: "a/../../evil.html", Typeflag: tar.TypeReg, Mode: 0o644}, "x"), 400},
		{"symlink", entry(&tar.Header{Name: "index.html", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"}, ""), 400},
		{"hard link", entry(&tar.Header{Name: "index.html", Typeflag: tar.TypeLink, Linkname: "/etc/passwd"}, ""), 400},
		{"script file", entry(&tar.Header{Name: "app.js", Typeflag: tar.TypeReg, Mode: 0o644}, "alert(1)"), 400},
		{"odd name", entry(&tar.Header{Name: "a\x01b.html", Typeflag: tar.TypeReg, Mode: 0o644}, "x"), 400},
		{"backslash", entry(&tar.Header{Name: "..\\evil.html", Typeflag: tar.TypeReg, Mode: 0o644}, "x"), 400},
		{"hidden file", entry(&tar.Header{Name: ".htaccess.txt", Typeflag: tar.TypeReg, Mode: 0o644}, "x"), 400},
		{"huge file", entry(&tar.Header{Name: "big.txt", Typeflag: tar.TypeReg, Mode: 0o644}, strings.Repeat("x", 11<<20)), 413},
		{"not a tar", []byte("hello"), 400},
		{"dot then parent", entry(&tar.Header{Name: "./../evil.html", Typeflag: tar.TypeReg, Mode: 0o644}, "x"), 400},
		{"dot then hidden", entry(&tar.Header{Name: "./.git/x.txt", Typeflag: tar.TypeReg, Mode: 0o644}, "x"), 400},
	}
	for _, c := range cases {
		if status, m := publish(t, base, token, sid, c.body); status != c.status {
			t.Errorf("%s: %d %v, want %d", c.name, status, m, c.status)
		} else if msg, _ := m["error"].(map[string]any)["message"].(string); msg == "" {
			t.Errorf("%s: no message", c.name)
		}
	}
	// The archive people make with tar itself: ./index.html, ./css/ and
	// ./css/site.css, directory entries included.
	site := t.TempDir()
	if err := os.MkdirAll(filepath.Join(site, "css"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"index.html": "<h1>made with tar</h1>", "css/site.css": "h1{color:red}"} {
		if err := os.WriteFile(filepath.Join(site, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	archive, err := exec.Command("tar", "-C", site, "-cf", "-", ".").Output()
	if err != nil {
		t.Fatalf("tar: %v", err)
	}
	if !bytes.Contains(archive, []byte("./index.html")) {
		t.Fatal("this tar does not write ./ names")
	}
	status, m := publish(t, base, token, sid, archive)
	if status != 201 {
		t.Fatalf("a tar made by tar: %d %v", status, m)
	}
	resp, err := http.Get(m["url"].(string))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), "made with tar") {
		t.Fatalf("the published page: %d %s", resp.StatusCode, body)
	}
}

// hubRequests reads how many HTTP requests the hub has served.
func hubRequests(t *testing.T, base, token string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n, err := bench.Metric(resp.Body, "lowkey_http_requests_total")
	if err != nil {
		t.Fatalf("no request count in /metrics: %v", err)
	}
	return int(n)
}
