package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-rod/rod"
	"github.com/go-rod/rod/lib/launcher"
	"github.com/go-rod/rod/lib/proto"

	"github.com/lowkeyhq/lowkey/internal/testenv"
)

// artifacts is where web tests leave their screenshots.
func artifacts(t *testing.T) string {
	dir := os.Getenv("LOWKEY_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "artifacts")
	}
	dir = filepath.Join(dir, t.Name())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

type webUI struct {
	t    *testing.T
	page *rod.Page
	dir  string
	n    int
}

func openBrowser(t *testing.T) *rod.Browser {
	t.Helper()
	bin := testenv.RequireBrowser(t)
	l := launcher.New().Bin(bin).Headless(true).NoSandbox(true).UserDataDir(t.TempDir()).
		Set("disable-gpu").Set("no-first-run").Set("disable-background-networking").
		Set("disable-component-update").Set("disable-sync").Set("window-size", "1280,900")
	u, err := l.Launch()
	if err != nil {
		t.Fatal(err)
	}
	b := rod.New().ControlURL(u)
	if err := b.Connect(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(); l.Kill() })
	return b
}

func (w *webUI) shot(name string) {
	w.n++
	img, err := w.page.Screenshot(false, nil)
	if err == nil {
		_ = os.WriteFile(filepath.Join(w.dir, strings.ReplaceAll(strings.ToLower(name), " ", "-")+".png"), img, 0o644)
	}
}

// waitText waits until the page's text matches re.
func (w *webUI) waitText(re string, limit time.Duration) {
	w.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(limit)
	for {
		txt, err := w.page.Eval(`() => document.body.innerText`)
		if err == nil && rx.MatchString(txt.Value.Str()) {
			return
		}
		if time.Now().After(deadline) {
			w.shot("failed")
			w.t.Fatalf("the page did not show %q within %s; it shows:\n%v", re, limit, txt.Value.Str())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (w *webUI) el(sel string) *rod.Element {
	w.t.Helper()
	e, err := w.page.Timeout(15 * time.Second).Element(sel)
	if err != nil {
		w.shot("failed")
		w.t.Fatalf("no %s on the page: %v", sel, err)
	}
	return e.CancelTimeout()
}

func (w *webUI) click(sel string) {
	w.t.Helper()
	if err := w.el(sel).Click(proto.InputMouseButtonLeft, 1); err != nil {
		w.t.Fatalf("click %s: %v", sel, err)
	}
}

func (w *webUI) clickText(sel, text string) {
	w.t.Helper()
	e, err := w.page.Timeout(15*time.Second).ElementR(sel, "^"+regexp.QuoteMeta(text)+"$")
	if err != nil {
		w.shot("failed")
		w.t.Fatalf("no %s %q: %v", sel, text, err)
	}
	if err := e.CancelTimeout().Click(proto.InputMouseButtonLeft, 1); err != nil {
		w.t.Fatal(err)
	}
}

func (w *webUI) fill(sel, text string) {
	w.t.Helper()
	if err := w.el(sel).Input(text); err != nil {
		w.t.Fatalf("type into %s: %v", sel, err)
	}
}

func (w *webUI) say(text string) {
	w.t.Helper()
	w.fill("#message", text)
	w.clickText("button", "Send")
}

func TestWebAppEndToEnd(t *testing.T) {
	pageSrv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "text/html")
		io.WriteString(rw, `<!doctype html><title>Form</title><h1>A form page</h1><p>hello from the test</p>`)
	}))
	defer pageSrv.Close()
	b := startBox(t, "", t.TempDir(), "127.0.0.1:0", "--no-mdns")
	setup := b.waitFor(`Create the owner \(this link works once\): (\S+)`, 5*time.Second)
	// The printed link is on localhost: __Host- cookies need a secure
	// context, and localhost is one.
	if !strings.HasPrefix(setup, "http://localhost:") {
		t.Fatalf("the setup link %s is not on localhost", setup)
	}
	base := setup[:strings.Index(setup, "/#/")]
	br := openBrowser(t)
	w := &webUI{t: t, page: br.MustPage(""), dir: artifacts(t)}
	w.page = w.page.Timeout(5 * time.Minute)
	if err := w.page.Navigate(setup); err != nil {
		t.Fatal(err)
	}
	w.fill(`input[name="name"]`, "ada")
	w.fill(`input[name="password"]`, "correct horse battery")
	w.shot("setup")
	// The header (Conversations, Devices, Sign out) is not there before
	// anyone has signed in.
	if w.page.MustEval(`() => { const h = document.getElementById("top"); return !!h && h.getClientRects().length > 0 }`).Bool() {
		t.Fatal("the header shows on the setup page")
	}
	w.clickText("button", "Create and sign in")
	w.waitText(`ada \(owner\)`, 10*time.Second)

	// The session cookie's flags.
	cookies, err := w.page.Cookies([]string{base})
	if err != nil || len(cookies) != 1 {
		t.Fatalf("cookies: %v %v", cookies, err)
	}
	c := cookies[0]
	if c.Name != "__Host-lowkey" || !c.HTTPOnly || !c.Secure || c.SameSite != proto.NetworkCookieSameSiteStrict || c.Path != "/" {
		t.Fatalf("cookie %+v", c)
	}

	// Pair a computer from the Devices page.
	w.click(`a[href="#/devices"]`)
	w.clickText("button", "Pair a computer")
	code := w.el("#pair-code").MustText()
	if !regexp.MustCompile(`^\d{4}-\d{4}$`).MatchString(code) || !strings.Contains(w.el("#pair-command").MustText(), code) {
		t.Fatalf("pairing code %q", code)
	}
	w.shot("pairing code")
	state := t.TempDir()
	mustRun(t, "", "lowkey-companion", "pair", "--hub", b.addr, "--code", code, "--state", state, "--name", "laptop")
	start(t, "", "lowkey-companion", "run", "--state", state, "--no-mdns", "--headless")
	w.waitText(`laptop online`, 15*time.Second)
	w.shot("device paired")

	// A conversation: browser access on, the agent opens a page there.
	w.click(`a[href="#/"]`)
	// The agents on offer: the box's own, and the presets whose CLI this
	// box lacks shown as such (disabled, with what to install).
	w.el("#new-agent")
	offered := w.page.MustEval(`() => [...document.querySelectorAll("#new-agent option")].map(o => o.value + "|" + o.disabled + "|" + o.textContent + "|" + o.title).join("\n")`).String()
	for _, want := range []string{"builtin|false|Built-in", "claude|true|Claude Code (not installed)|claude is not installed on the box: npm install -g @anthropic-ai/claude-code"} {
		if !strings.Contains(offered, want) {
			t.Errorf("the agents offered do not include %q:\n%s", want, offered)
		}
	}
	w.clickText("button", "New conversation")
	w.el("#message")
	w.click(`input[data-toggle="browser"]`)
	w.waitText(`on, by ada`, 5*time.Second)
	// Note whenever the "agent acting" indicator shows.
	w.page.MustEval(`() => { window.actingSeen = false; new MutationObserver(() => {
		const i = document.querySelector(".acting"); if (i && !i.hidden) window.actingSeen = true;
	}).observe(document.body, { subtree: true, childList: true, attributes: true, attributeFilter: ["hidden"] }) }`)
	w.say("open " + pageSrv.URL + " on laptop")
	w.waitText(`Opened "Form"`, 30*time.Second)
	// The first message named the conversation, in its header and in the
	// sidebar, without a reload.
	if side := w.el(`nav.convs a[aria-current="page"]`).MustText(); side != "open "+pageSrv.URL+" on laptop" {
		t.Errorf("the sidebar names the conversation %q", side)
	}
	// The reply shows once, as the agent's message, not again in the
	// turn's output.
	if n := w.page.MustEval(`() => (document.querySelector(".thread").innerText.match(/Opened "Form"/g) || []).length`).Int(); n != 1 {
		w.shot("failed")
		t.Errorf("the reply shows %d times in the thread", n)
	}
	// The indicator showed while the agent acted, and goes once its turn
	// is over.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		r := w.page.MustEval(`() => ({ seen: window.actingSeen, now: !document.querySelector(".acting").hidden, done: /\bdone\b/.test(document.body.innerText) })`)
		if !r.Get("seen").Bool() {
			t.Fatal("no indicator while the agent acted on the computer")
		}
		if r.Get("done").Bool() && !r.Get("now").Bool() {
			break
		}
		if time.Now().After(deadline) {
			w.shot("failed")
			t.Fatal("the acting indicator stayed after the turn ended")
		}
	}
	// The focus pane says what the agent did and looks only when the person
	// asks: opening a conversation never acts on the computer.
	w.waitText(`The agent ran browser\.navigate on laptop\. Refresh to look\.`, 10*time.Second)
	token := strings.TrimSpace(mustRun(t, "", "lowkey", "token", "--data", b.data))
	sid := strings.TrimPrefix(w.page.MustEval(`() => location.hash`).String(), "#/c/")
	auditRows := func() int {
		status, raw := apiDo(t, "GET", "http://"+b.addr+"/api/v1/audit?session="+sid, token, "")
		var recs []any
		if status != 200 || json.Unmarshal(raw, &recs) != nil {
			t.Fatalf("audit: %d %s", status, raw)
		}
		return len(recs)
	}
	before := auditRows()
	w.page.MustReload()
	w.waitText(`Opened "Form"`, 15*time.Second)
	w.waitText(`The agent ran browser\.navigate on laptop\. Refresh to look\.`, 10*time.Second)
	if after := auditRows(); after != before {
		t.Fatalf("reloading the conversation acted on the computer: %d audit records, %d before", after, before)
	}
	w.clickText(".focus button", "Refresh")
	deadline := time.Now().Add(15 * time.Second)
	for {
		r, _ := w.page.Eval(`() => { const i = document.getElementById("focus-img"); return !!i && !i.hidden && i.naturalWidth > 0 }`)
		if r != nil && r.Value.Bool() {
			break
		}
		if time.Now().After(deadline) {
			w.shot("failed")
			t.Fatal("the focus pane shows no screenshot of the page")
		}
		time.Sleep(100 * time.Millisecond)
	}
	w.waitText(`Form on laptop|A form page`, 5*time.Second)
	w.shot("page opened")

	// One truth for every viewer: a member on the same conversation, in a
	// browser context of their own, and the owner see each other's toggle
	// changes on the pages they hold, without reloading.
	apiJSON(t, "POST", "http://"+b.addr+"/api/v1/users", token, `{"name":"bob","password":"another horse battery"}`, 201)
	bob := &webUI{t: t, page: br.MustIncognito().MustPage(""), dir: w.dir}
	bob.page = bob.page.Timeout(5 * time.Minute)
	if err := bob.page.Navigate(base + "/#/c/" + sid); err != nil {
		t.Fatal(err)
	}
	if bob.page.MustEval(`() => { const h = document.getElementById("top"); return !!h && h.getClientRects().length > 0 }`).Bool() {
		t.Fatal("the header shows on the sign-in page")
	}
	bob.fill(`input[name="name"]`, "bob")
	bob.fill(`input[name="password"]`, "another horse battery")
	bob.clickText("button", "Sign in")
	bob.waitText(`on, by ada`, 10*time.Second)
	bob.click(`input[data-toggle="browser"]`)
	w.waitText(`Device control in this conversation\s+laptop\s+online\s+Browser access\s+Desktop access\s+off`, 5*time.Second)
	if w.page.MustEval(`() => document.querySelector('input[data-toggle="browser"]').checked`).Bool() {
		t.Fatal("the owner's page still shows browser access on after the member turned it off")
	}
	w.click(`input[data-toggle="browser"]`)
	bob.waitText(`on, by ada`, 5*time.Second)
	if !bob.page.MustEval(`() => document.querySelector('input[data-toggle="browser"]').checked`).Bool() {
		t.Fatal("the member's page does not show the owner's toggle")
	}
	bob.shot("member sees the owner's toggle")
	// The tab says which box this is; a member's People page says who
	// manages people, and that conversations are shared.
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	if title := bob.page.MustEval(`() => document.title`).String(); title != host+" — Lowkey" {
		t.Errorf("the page title is %q, want the box's name", title)
	}
	if err := bob.page.Navigate(base + "/#/people"); err != nil {
		t.Fatal(err)
	}
	bob.waitText(`Only the box's owner adds and removes people\.\s+Every conversation on this box is shared`, 5*time.Second)
	if n := bob.page.MustEval(`() => document.querySelectorAll("main form").length`).Int(); n != 0 {
		t.Errorf("a member's People page offers %d forms", n)
	}

	// Stop a running turn.
	w.say("think 60")
	w.waitText(`thinking…`, 10*time.Second)
	if w.el("#stop").MustVisible() != true {
		t.Fatal("no visible Stop while a turn runs")
	}
	w.shot("turn running")
	w.click("#stop")
	w.waitText(`cancelled`, 5*time.Second)

	// A running job's time goes on between its events; its Stop stops it.
	w.say("start sleep 120")
	w.waitText(`Run sleep 120 running`, 10*time.Second)
	first := w.el(`li[data-job] .muted`).MustText()
	ticked := false
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if w.el(`li[data-job] .muted`).MustText() != first {
			ticked = true
			break
		}
	}
	if !ticked {
		t.Errorf("a running job's time stays at %q", first)
	}
	w.clickText(`li[data-job] button`, "Stop")
	w.waitText(`Run sleep 120 stopped`, 10*time.Second)

	// Answer a confirm card.
	w.say("confirm ready to go?")
	w.waitText(`The agent asks: ready to go\?`, 10*time.Second)
	w.shot("confirm card")
	w.clickText(".confirm button", "Yes")
	w.waitText(`You answered yes\.`, 10*time.Second)
	// The card itself says who answered, and no longer asks.
	card := w.el(".confirm").MustText()
	if !strings.Contains(card, "Answered yes by ada.") || strings.Contains(card, "counts as no") {
		t.Errorf("the answered card: %q", card)
	}

	// Toggle off: the next action is refused, and the thread says so.
	w.click(`input[data-toggle="browser"]`)
	w.waitText(`\boff\b`, 5*time.Second)
	w.say("open " + pageSrv.URL + " on laptop")
	w.waitText(`browser\.navigate on laptop: refused \(browser access is off\)`, 15*time.Second)
	w.shot("refused")

	// Audit page lists what happened.
	w.click(`a[href="#/audit"]`)
	w.waitText(`browser\.navigate`, 10*time.Second)
	w.shot("audit")

	// Revoke the device, confirming the dialog.
	w.click(`a[href="#/devices"]`)
	w.waitText(`laptop`, 5*time.Second)
	wait, handle := w.page.HandleDialog()
	go w.click(`li[data-device] button`)
	wait()
	if err := handle(&proto.PageHandleJavaScriptDialog{Accept: true}); err != nil {
		t.Fatal(err)
	}
	w.waitText(`No paired computers yet`, 10*time.Second)
	w.shot("revoked")

	// A phone-sized screen still fits.
	_ = proto.EmulationSetDeviceMetricsOverride{Width: 390, Height: 844, DeviceScaleFactor: 2, Mobile: true}.Call(w.page)
	w.click(`a[href="#/"]`)
	w.el("#message")
	r, _ := w.page.Eval(`() => document.documentElement.scrollWidth`)
	if r.Value.Int() > 400 {
		w.shot("phone")
		t.Fatalf("the page is %dpx wide on a 390px screen", r.Value.Int())
	}
	w.shot("phone")
}

// TestWebSecurity checks the web app's guards from outside a browser.
func TestWebSecurity(t *testing.T) {
	b := startBox(t, "", t.TempDir(), "127.0.0.1:0", "--no-mdns")
	setup := b.waitFor(`Create the owner \(this link works once\): (\S+)`, 5*time.Second)
	token := setup[strings.Index(setup, "/#/setup/")+len("/#/setup/"):]
	base := "http://" + b.addr
	// A browser, reduced to its cookie and its CSRF token.
	type client struct {
		cookie *http.Cookie
		csrf   string
	}
	newClient := func() *client { return &client{} }
	do := func(c *client, method, path string, body any, withCSRF bool) (int, map[string]any) {
		var rd io.Reader
		if body != nil {
			raw, _ := json.Marshal(body)
			rd = bytes.NewReader(raw)
		}
		req, _ := http.NewRequest(method, base+path, rd)
		if withCSRF && c.csrf != "" {
			req.Header.Set("X-CSRF-Token", c.csrf)
		}
		if c.cookie != nil {
			req.AddCookie(&http.Cookie{Name: c.cookie.Name, Value: c.cookie.Value})
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		for _, ck := range resp.Cookies() {
			if ck.Name == "__Host-lowkey" {
				c.cookie = ck
			}
		}
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		if cs, ok := m["csrf"].(string); ok && cs != "" {
			c.csrf = cs
		}
		return resp.StatusCode, m
	}
	owner := newClient()
	if st, m := do(owner, "POST", "/api/v1/setup", map[string]string{"token": "wrong", "name": "ada", "password": "correct horse battery"}, false); st != 403 {
		t.Fatalf("setup with a wrong token: %d %v", st, m)
	}
	if st, m := do(owner, "POST", "/api/v1/setup", map[string]string{"token": token, "name": "ada", "password": "correct horse battery"}, false); st != 200 {
		t.Fatalf("setup: %d %v", st, m)
	}
	if st, _ := do(newClient(), "POST", "/api/v1/setup", map[string]string{"token": token, "name": "eve", "password": "correct horse battery"}, false); st != 409 {
		t.Fatalf("a second setup: %d", st)
	}
	// No state change without the CSRF token.
	if st, m := do(owner, "POST", "/api/v1/sessions", map[string]string{}, false); st != 403 || m["error"].(map[string]any)["code"] != "csrf" {
		t.Fatalf("without CSRF: %d %v", st, m)
	}
	if st, _ := do(owner, "POST", "/api/v1/sessions", map[string]string{}, true); st != 201 {
		t.Fatalf("with CSRF: %d", st)
	}
	// A member can chat but not manage people or devices.
	if st, _ := do(owner, "POST", "/api/v1/users", map[string]string{"name": "bob", "password": "another long password"}, true); st != 201 {
		t.Fatalf("add member: %d", st)
	}
	member := newClient()
	if st, _ := do(member, "POST", "/api/v1/login", map[string]string{"name": "bob", "password": "wrong password!!"}, false); st != 401 {
		t.Fatalf("wrong password: %d", st)
	}
	if st, _ := do(member, "POST", "/api/v1/login", map[string]string{"name": "bob", "password": "another long password"}, false); st != 200 {
		t.Fatalf("member login: %d", st)
	}
	if st, _ := do(member, "POST", "/api/v1/sessions", map[string]string{}, true); st != 201 {
		t.Fatalf("member chat: %d", st)
	}
	for _, c := range []struct{ method, path string }{
		{"POST", "/api/v1/users"}, {"DELETE", "/api/v1/users/ada"}, {"GET", "/api/v1/users"},
		{"POST", "/api/v1/pairing/codes"}, {"DELETE", "/api/v1/devices/x"},
	} {
		if st, m := do(member, c.method, c.path, map[string]string{"name": "mallory", "password": "yet another password"}, true); st != 403 {
			t.Fatalf("member %s %s: %d %v", c.method, c.path, st, m)
		}
	}
	// Removing a member stops their access at once.
	if st, _ := do(owner, "DELETE", "/api/v1/users/bob", nil, true); st != 200 {
		t.Fatalf("remove: %d", st)
	}
	if st, _ := do(member, "GET", "/api/v1/sessions", nil, false); st != 401 {
		t.Fatalf("removed member still in: %d", st)
	}
	// Ten wrong passwords in a minute lock the name out for a while.
	for range 10 {
		do(newClient(), "POST", "/api/v1/login", map[string]string{"name": "ada", "password": "not the password"}, false)
	}
	if st, _ := do(newClient(), "POST", "/api/v1/login", map[string]string{"name": "ada", "password": "correct horse battery"}, false); st != 429 {
		t.Fatalf("after 10 failures: %d", st)
	}
}
