package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-rod/rod"
	"github.com/go-rod/rod/lib/launcher"
	"github.com/go-rod/rod/lib/proto"
	"github.com/ysmood/gson"

	"github.com/lowkeyhq/lowkey/internal/testenv"
)

// artifacts is where web tests leave their screenshots.
func artifacts(t *testing.T) string {
	dir := os.Getenv("LOWKEY_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "artifacts")
	}
	dir = filepath.Join(dir, t.Name())
	// Only this run's screenshots: none left from an earlier one.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
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
	// A person acts on the tab in front: a tab behind others does not
	// draw, and clicks on it wait.
	if _, err := w.page.Activate(); err != nil {
		w.t.Fatal(err)
	}
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
	if _, err := w.page.Activate(); err != nil {
		w.t.Fatal(err)
	}
	// A page that redraws what changed may replace the element between
	// finding and clicking it (rod then waits on a node with no box):
	// each try is bounded, and the element is found again.
	var err error
	for try := 0; try < 5; try++ {
		var e *rod.Element
		e, err = w.page.Timeout(15*time.Second).ElementR(sel, "^"+regexp.QuoteMeta(text)+"$")
		if err != nil {
			w.shot("failed")
			w.t.Fatalf("no %s %q: %v", sel, text, err)
		}
		if err = e.Timeout(10*time.Second).Click(proto.InputMouseButtonLeft, 1); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	w.shot("failed")
	w.t.Fatalf("click %s %q: %v", sel, text, err)
}

func (w *webUI) fill(sel, text string) {
	w.t.Helper()
	if err := w.el(sel).Input(text); err != nil {
		w.t.Fatalf("type into %s: %v", sel, err)
	}
}

// drawn waits until the page shows the route in the address bar.
func (w *webUI) drawn() {
	w.t.Helper()
	w.until(`() => document.getElementById("main").dataset.view === (location.hash.slice(1) || "/")`, 10*time.Second, "the page drawn for "+w.eval(`() => location.hash`).Str())
}

// newConversation starts one with the sidebar's button and waits for its
// page.
func (w *webUI) newConversation() {
	w.t.Helper()
	w.drawn()
	prev := w.eval(`() => location.hash`).Str()
	w.clickText("button", "New conversation")
	w.until(`() => location.hash !== `+strconvQuote(prev)+` && document.getElementById("main").dataset.view === location.hash.slice(1)`, 10*time.Second, "the new conversation's page")
}

func (w *webUI) say(text string) {
	w.t.Helper()
	w.fill("#message", text)
	w.clickText("button", "Send")
}

// ownerPage creates the box's owner through its setup link, in a new tab.
func ownerPage(t *testing.T, br *rod.Browser, setup string) *webUI {
	t.Helper()
	w := &webUI{t: t, page: br.MustPage(""), dir: artifacts(t)}
	if err := w.page.Navigate(setup); err != nil {
		t.Fatal(err)
	}
	w.fill(`input[name="name"]`, "ada")
	w.fill(`input[name="password"]`, "correct horse battery")
	w.clickText("button", "Create and sign in")
	w.waitText(`ada \(owner\)`, 10*time.Second)
	return w
}

// size sets the page's viewport, as a window or a phone of that size.
func (w *webUI) size(width, height int) {
	w.t.Helper()
	err := proto.EmulationSetDeviceMetricsOverride{Width: width, Height: height, DeviceScaleFactor: 1, Mobile: width < 700}.Call(w.page)
	if err != nil {
		w.t.Fatal(err)
	}
}

// eval runs js in the page and returns its value.
func (w *webUI) eval(js string) gson.JSON {
	w.t.Helper()
	r, err := w.page.Eval(js)
	if err != nil {
		w.shot("failed")
		w.t.Fatalf("%s: %v", js, err)
	}
	return r.Value
}

// until waits for js to be true in the page.
func (w *webUI) until(js string, limit time.Duration, what string) {
	w.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		r, err := w.page.Eval(js)
		if err == nil && r.Value.Bool() {
			return
		}
		if time.Now().After(deadline) {
			w.shot("failed")
			w.t.Fatalf("%s: not within %s (%v)", what, limit, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// inView says whether the element sel is shown, whole, inside the viewport.
func (w *webUI) inView(sel string) bool {
	w.t.Helper()
	return w.eval(`() => { const e = document.querySelector(` + strconvQuote(sel) + `); if (!e || !e.getClientRects().length) return false;
		const r = e.getBoundingClientRect(); return r.top >= 0 && r.left >= 0 && r.bottom <= innerHeight + 0.5 && r.right <= innerWidth + 0.5 }`).Bool()
}

func strconvQuote(s string) string { b, _ := json.Marshal(s); return string(b) }

// axeSource is axe-core, vendored from npm (scripts/vendor-web).
var axeSource = func() string {
	b, err := os.ReadFile(filepath.Join("testdata", "axe.js"))
	if err != nil {
		panic(err)
	}
	return string(b)
}()

// axe runs axe-core on the page as it is and fails on any serious or
// critical violation.
func (w *webUI) axe(name string) {
	w.t.Helper()
	if !w.eval(`() => typeof axe === "object"`).Bool() {
		if _, err := (proto.RuntimeEvaluate{Expression: axeSource}).Call(w.page); err != nil {
			w.t.Fatalf("loading axe-core: %v", err)
		}
	}
	res := w.eval(`async () => {
		const r = await axe.run(document, { resultTypes: ["violations"] });
		return r.violations.filter(v => v.impact === "serious" || v.impact === "critical")
			.map(v => v.impact + " " + v.id + ": " + v.help + " — " + v.nodes.slice(0, 3).map(n => n.target.join(" ")).join(", "));
	}`)
	for _, v := range res.Arr() {
		w.t.Errorf("axe on %s: %s", name, v.Str())
	}
}

// noOverflow checks the page is no wider than its viewport.
func (w *webUI) noOverflow(name string) {
	w.t.Helper()
	if r := w.eval(`() => [document.documentElement.scrollWidth, innerWidth]`); r.Arr()[0].Int() > r.Arr()[1].Int() {
		w.shot(name + " overflow")
		w.t.Errorf("%s: the page is %dpx wide in a %dpx viewport", name, r.Arr()[0].Int(), r.Arr()[1].Int())
	}
}

// watchErrors records every uncaught exception on the page; check fails
// the test on any.
func (w *webUI) watchErrors() (check func()) {
	seen := w.errors()
	return func() {
		w.t.Helper()
		for _, s := range seen() {
			w.t.Errorf("an uncaught error on the page: %s", s)
		}
	}
}

// errors records the page's uncaught exceptions from now on.
func (w *webUI) errors() func() []string {
	var mu sync.Mutex
	var seen []string
	go w.page.EachEvent(func(e *proto.RuntimeExceptionThrown) {
		mu.Lock()
		text := e.ExceptionDetails.Text
		if ex := e.ExceptionDetails.Exception; ex != nil {
			text += " " + ex.Description
		}
		seen = append(seen, text)
		mu.Unlock()
	})()
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), seen...)
	}
}

// acceptDialogs answers every confirm() on the page with OK.
func (w *webUI) acceptDialogs() {
	go w.page.EachEvent(func(e *proto.PageJavascriptDialogOpening) {
		// Answered apart from the event loop: a call made inside it waits
		// for a reply that the blocked loop cannot deliver.
		go func() { _ = proto.PageHandleJavaScriptDialog{Accept: true}.Call(w.page) }()
	})()
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
	w.acceptDialogs()
	defer w.watchErrors()()
	w.page = w.page.Timeout(5 * time.Minute)
	w.size(1280, 800)
	if err := w.page.Navigate(setup); err != nil {
		t.Fatal(err)
	}
	w.el(`input[name="name"]`)
	w.axe("the setup page")
	// The form checks what the box would refuse before it is sent.
	w.fill(`input[name="name"]`, "ada")
	w.fill(`input[name="password"]`, "short")
	if w.eval(`() => document.querySelector('input[name="password"]').checkValidity()`).Bool() {
		t.Error("a 5-character password passes the setup form's own check")
	}
	w.el(`input[name="password"]`).MustSelectAllText().MustInput("correct horse battery")
	w.shot("setup")
	// The header (Conversations, Devices, Sign out) is not there before
	// anyone has signed in.
	if w.eval(`() => { const h = document.getElementById("top"); return !!h && h.getClientRects().length > 0 }`).Bool() {
		t.Fatal("the header shows on the setup page")
	}
	w.clickText("button", "Create and sign in")
	w.waitText(`ada \(owner\)`, 10*time.Second)
	w.waitText(`No conversations yet`, 10*time.Second)
	w.axe("the empty conversations page")

	// The session cookie's flags.
	cookies, err := w.page.Cookies([]string{base})
	if err != nil || len(cookies) != 1 {
		t.Fatalf("cookies: %v %v", cookies, err)
	}
	c := cookies[0]
	if c.Name != "__Host-lowkey" || !c.HTTPOnly || !c.Secure || c.SameSite != proto.NetworkCookieSameSiteStrict || c.Path != "/" {
		t.Fatalf("cookie %+v", c)
	}

	// Pairing: one code per window, on every open Devices page.
	w.click(`a[href="#/devices"]`)
	w.waitText(`No pairing code is open`, 5*time.Second)
	w2 := &webUI{t: t, page: br.MustPage(base + "/#/devices").Timeout(5 * time.Minute), dir: w.dir}
	w2.size(1280, 800)
	w2.waitText(`No pairing code is open`, 10*time.Second)
	w.clickText("button", "Pair a computer")
	code1 := w.el("#pair-code").MustText()
	w2.waitText(`Pairing code: `+code1, 5*time.Second)
	w2.clickText("button", "Pair a computer")
	w2.until(`() => document.getElementById("pair-code").textContent !== `+strconvQuote(code1), 5*time.Second, "a new code")
	code := w2.el("#pair-code").MustText()
	if code == code1 || !regexp.MustCompile(`^\d{4}-\d{4}$`).MatchString(code) {
		t.Fatalf("pairing codes %q then %q", code1, code)
	}
	// The first page shows the new code, not the one that no longer pairs.
	w.waitText(`Pairing code: `+code, 5*time.Second)
	// The command names the box by an address the computer can reach:
	// this box listens on loopback, and the page says what that means.
	if cmd := w.el("#pair-command").MustText(); cmd != "lowkey-companion pair --hub "+b.addr+" --code "+code {
		t.Errorf("the pairing command is %q", cmd)
	}
	w.waitText(`listens on loopback only`, time.Second)
	w.el("#pairing button.copy")
	w.axe("the Devices page with a code")
	w.shot("pairing code")
	state := t.TempDir()
	mustRun(t, "", "lowkey-companion", "pair", "--hub", b.addr, "--code", code, "--state", state, "--name", "laptop")
	// The used code goes from both pages, which say what paired.
	for _, p := range []*webUI{w, w2} {
		p.waitText(`Paired: laptop`, 10*time.Second)
		if p.eval(`() => !!document.getElementById("pair-code")`).Bool() {
			t.Error("a used pairing code stays on the page")
		}
	}
	start(t, "", "lowkey-companion", "run", "--state", state, "--no-mdns", "--headless")
	for _, p := range []*webUI{w, w2} {
		p.waitText(`laptop\s+online`, 15*time.Second)
		// What the computer offers shows without a reload: this one has no
		// display.
		p.waitText(`browser: yes · desktop: no \(no X display`, 10*time.Second)
	}
	// How the link goes, here UDP on one machine.
	w.waitText(`laptop\s+online\s+· direct`, 10*time.Second)
	w.shot("device paired")
	w2.page.MustClose()

	// A conversation: the agents on offer, the box's own, and the presets
	// whose CLI this box lacks shown as such (disabled, with what to install).
	w.click(`#top a[href="#/"]`)
	w.el("#new-agent")
	offered := w.eval(`() => [...document.querySelectorAll("#new-agent option")].map(o => o.value + "|" + o.disabled + "|" + o.textContent + "|" + o.title).join("\n")`).Str()
	for _, want := range []string{"builtin|false|Built-in", "claude|true|Claude Code (not installed)|claude is not installed on the box: npm install -g @anthropic-ai/claude-code"} {
		if !strings.Contains(offered, want) {
			t.Errorf("the agents offered do not include %q:\n%s", want, offered)
		}
	}
	w.newConversation()
	w.el("#message")
	// An empty conversation says what to do, with the name of a computer
	// this box has.
	w.waitText(`Nothing here yet\. Ask the agent for something, like "open https://example\.com on laptop"`, 5*time.Second)
	if ph := w.el("#message").MustAttribute("placeholder"); !strings.Contains(*ph, "on laptop") {
		t.Errorf("the message box suggests %q", *ph)
	}
	// A capability the computer lacks is not offered.
	if !w.eval(`() => document.querySelector('input[data-toggle="desktop"]').disabled`).Bool() {
		t.Error("Desktop access is offered for a computer with no display")
	}
	w.waitText(`Desktop access\s+\(unavailable: no X display`, time.Second)
	w.click(`input[data-toggle="browser"]`)
	w.waitText(`on, by ada`, 5*time.Second)
	// Note whenever the "agent acting" indicator shows.
	w.eval(`() => { window.actingSeen = false; new MutationObserver(() => {
		const i = document.querySelector(".acting"); if (i && !i.hidden) window.actingSeen = true;
	}).observe(document.body, { subtree: true, childList: true, attributes: true, attributeFilter: ["hidden"] }) }`)
	w.say("open " + pageSrv.URL + " on laptop")
	w.waitText(`Opened "Form"`, 30*time.Second)
	// The first message named the conversation, in its header and in the
	// sidebar, without a reload.
	if side := w.el(`nav.convs a[aria-current="page"]`).MustText(); side != "open "+pageSrv.URL+" on laptop" {
		t.Errorf("the sidebar names the conversation %q", side)
	}
	// The reply shows once, as the agent's message; the device action is
	// a step inside that message, not a line of its own.
	if n := w.eval(`() => (document.querySelector(".events").innerText.match(/Opened "Form"/g) || []).length`).Int(); n != 1 {
		w.shot("failed")
		t.Errorf("the reply shows %d times in the thread", n)
	}
	steps := w.eval(`() => [...document.querySelectorAll("li.msg.agent .steps li")].map(s => s.textContent)`).Arr()
	if len(steps) == 0 || !strings.Contains(steps[len(steps)-1].Str(), "browser.navigate on laptop: done") {
		t.Errorf("the agent's message has the steps %v", steps)
	}
	if n := w.eval(`() => [...document.querySelectorAll(".events > li")].filter(l => /browser\.navigate/.test(l.innerText) && !l.matches(".msg.agent")).length`).Int(); n != 0 {
		t.Errorf("%d lines of the thread outside the agent's message repeat its device action", n)
	}
	// The indicator showed while the agent acted, and goes once its turn
	// is over.
	w.until(`() => window.actingSeen`, 5*time.Second, "the indicator while the agent acted on the computer")
	w.until(`() => /\bdone\b/.test(document.querySelector("li.msg.agent .badge").textContent) && document.querySelector(".acting").hidden`, 10*time.Second, "the acting indicator going once the turn ended")
	// The focus pane says what the agent did and looks only when the person
	// asks: opening a conversation never acts on the computer.
	w.waitText(`The agent ran browser\.navigate on laptop\. Refresh to look\.`, 10*time.Second)
	w.axe("a conversation")
	token := strings.TrimSpace(mustRun(t, "", "lowkey", "token", "--data", b.data))
	sid := strings.TrimPrefix(w.eval(`() => location.hash`).Str(), "#/c/")
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
	w.until(`() => { const i = document.getElementById("focus-img"); return !!i && !i.hidden && i.naturalWidth > 0 }`, 15*time.Second, "a screenshot in the focus pane")
	w.waitText(`Form on laptop|A form page`, 5*time.Second)
	// The person's own look is in the audit, not in the thread.
	if n := w.eval(`() => (document.querySelector(".events").innerText.match(/browser\.screenshot/g) || []).length`).Int(); n != 0 {
		t.Errorf("the person's screenshot shows %d times in the thread", n)
	}
	w.shot("page opened")

	// One truth for every viewer: a member on the same conversation, in a
	// browser context of their own, and the owner see each other's toggle
	// changes on the pages they hold, without reloading.
	apiJSON(t, "POST", "http://"+b.addr+"/api/v1/users", token, `{"name":"bob","password":"another horse battery"}`, 201)
	bob := &webUI{t: t, page: br.MustIncognito().MustPage(""), dir: w.dir}
	defer bob.watchErrors()()
	bob.page = bob.page.Timeout(5 * time.Minute)
	bob.size(1280, 800)
	if err := bob.page.Navigate(base + "/#/c/" + sid); err != nil {
		t.Fatal(err)
	}
	bob.el(`input[name="name"]`)
	if bob.eval(`() => { const h = document.getElementById("top"); return !!h && h.getClientRects().length > 0 }`).Bool() {
		t.Fatal("the header shows on the sign-in page")
	}
	bob.axe("the sign-in page")
	bob.fill(`input[name="name"]`, "bob")
	bob.fill(`input[name="password"]`, "another horse battery")
	bob.clickText("button", "Sign in")
	bob.waitText(`on, by ada`, 10*time.Second)
	browserOn := `() => document.querySelector('input[data-toggle="browser"]').checked`
	whoSet := `() => document.querySelector(".who-set").textContent`
	bob.click(`input[data-toggle="browser"]`)
	w.until(`() => !(`+browserOn+`)() && (`+whoSet+`)() === "off"`, 5*time.Second, "the owner's page showing the member's toggle off")
	w.click(`input[data-toggle="browser"]`)
	bob.until(`() => (`+browserOn+`)() && /^on, by ada/.test((`+whoSet+`)())`, 5*time.Second, "the member's page showing the owner's toggle on")
	bob.shot("member sees the owner's toggle")
	// A message from someone else is theirs, not "You".
	bob.say("echo hello from bob")
	w.until(`() => [...document.querySelectorAll(".msg.user .who")].some(e => e.textContent === "bob")`, 15*time.Second, "bob's message under his name on the owner's page")
	bob.waitText(`hello from bob`, 10*time.Second)
	// Renamed in place, in the header and the sidebar, on both pages.
	w.clickText(".thread-head button", "Rename")
	w.el("#rename").MustSelectAllText().MustInput("Form checks")
	w.clickText(".thread-head button", "Save")
	for _, p := range []*webUI{w, bob} {
		p.until(`() => document.getElementById("conv-title").textContent === "Form checks" && document.querySelector('nav.convs a[aria-current="page"]').textContent === "Form checks"`, 5*time.Second, "the new title in the header and the sidebar")
	}
	// The tab says which box this is; a member's People page says who
	// manages people, and that conversations are shared.
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	if title := bob.eval(`() => document.title`).Str(); title != host+" — Lowkey" {
		t.Errorf("the page title is %q, want the box's name", title)
	}
	bob.waitText(`Every conversation on this box is shared with everyone who can sign in to it`, time.Second)
	if err := bob.page.Navigate(base + "/#/people"); err != nil {
		t.Fatal(err)
	}
	bob.waitText(`Only the box's owner adds and removes people\.\s+Every conversation on this box is shared`, 5*time.Second)
	if n := bob.eval(`() => document.querySelectorAll("main form").length`).Int(); n != 0 {
		t.Errorf("a member's People page offers %d forms", n)
	}
	bob.axe("a member's People page")

	// Stop a running turn.
	w.say("think 60")
	w.waitText(`thinking…`, 10*time.Second)
	if !w.inView("#stop") {
		t.Fatal("no Stop in view while a turn runs")
	}
	w.shot("turn running")
	// An error shows where it happened and stays until dismissed (the
	// box refuses a second message while a turn runs): still there after
	// the 6 s a toast used to last.
	w.say("and another thing")
	w.until(`() => /a turn is already running/.test(document.querySelector(".chatcol .errors").innerText)`, 10*time.Second, "the refusal shown in the conversation")
	time.Sleep(7 * time.Second)
	if !w.eval(`() => !!document.querySelector(".chatcol .errors .error")`).Bool() {
		t.Fatal("the error went by itself")
	}
	w.clickText(".chatcol .errors button", "Dismiss")
	w.until(`() => !document.querySelector(".chatcol .errors .error")`, 5*time.Second, "the error dismissed")
	// The refused message is still in the box, not lost; clear it.
	if v := w.eval(`() => document.getElementById("message").value`).Str(); v != "and another thing" {
		t.Errorf("after the refusal the message box holds %q", v)
	}
	w.eval(`() => { document.getElementById("message").value = "" }`)
	w.click("#stop")
	w.waitText(`cancelled`, 5*time.Second)

	// A running job's time goes on between its events; its Stop stops it.
	w.say("start sleep 120")
	w.waitText(`Run sleep 120 running`, 10*time.Second)
	first := w.el(`[data-job] .elapsed`).MustText()
	w.until(`() => document.querySelector("[data-job] .elapsed").textContent !== `+strconvQuote(first), 15*time.Second, "a running job's time going on")
	w.clickText(`[data-job] button`, "Stop")
	w.waitText(`Run sleep 120 stopped`, 10*time.Second)

	// Answer a confirm card.
	w.say("confirm ready to go?")
	w.waitText(`The agent asks: ready to go\?`, 10*time.Second)
	w.shot("confirm card")
	w.clickText(".confirm button", "Yes")
	w.waitText(`You answered yes\.`, 10*time.Second)
	// The card itself says who answered, and no longer asks; the person
	// is back in the message box.
	card := w.el(".confirm").MustText()
	if !strings.Contains(card, "Answered yes by ada.") || strings.Contains(card, "counts as no") {
		t.Errorf("the answered card: %q", card)
	}
	if id := w.eval(`() => document.activeElement && document.activeElement.id`).Str(); id != "message" {
		t.Errorf("after answering, the focus is on %q, not the message box", id)
	}

	// Toggle off: the next action is refused, and the agent's message says
	// so without a click.
	w.click(`input[data-toggle="browser"]`)
	w.until(`() => (`+whoSet+`)() === "off"`, 5*time.Second, "the toggle off")
	w.say("open " + pageSrv.URL + " on laptop")
	w.waitText(`browser\.navigate on laptop: refused \(browser access is off\)`, 15*time.Second)
	w.shot("refused")

	// The audit: which conversation, who, the outcome with its reason.
	w.click(`a[href="#/audit"]`)
	w.waitText(`When\s+Conversation\s+Who\s+Device\s+Action\s+Outcome\s+Arguments`, 10*time.Second)
	row := w.eval(`() => [...document.querySelectorAll("tbody tr")].map(r => r.innerText.replace(/\s+/g, " ")).find(t => /refused/.test(t)) || ""`).Str()
	if !strings.Contains(row, "Form checks") || !strings.Contains(row, "agent") || !strings.Contains(row, "browser.navigate") || !strings.Contains(row, "browser access is off") {
		t.Errorf("the audit's refused row: %q", row)
	}
	w.axe("the audit")
	w.shot("audit")
	w.size(390, 844)
	w.noOverflow("the audit on a phone")
	w.shot("audit phone")
	w.size(1280, 800)

	// The owner's settings: a secret by name, and which agents members get.
	w.click(`a[href="#/settings"]`)
	w.waitText(`No secrets stored`, 10*time.Second)
	w.fill(`input[name="name"]`, "EXAMPLE_KEY")
	w.fill(`input[name="value"]`, "not-shown-anywhere")
	w.clickText("button", "Store secret")
	w.waitText(`EXAMPLE_KEY\s+for all agents`, 5*time.Second)
	if strings.Contains(w.eval(`() => document.body.innerText`).Str(), "not-shown-anywhere") {
		t.Error("the settings page shows a secret's value")
	}
	w.click(`input[name="member-agent"][value="builtin"]`)
	memberAgents := func() string {
		_, raw := apiDo(t, "GET", "http://"+b.addr+"/api/v1/settings", token, "")
		var m struct {
			MemberAgents []string `json:"member_agents"`
		}
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		return strings.Join(m.MemberAgents, ",")
	}
	for deadline := time.Now().Add(5 * time.Second); strings.Contains(memberAgents(), "builtin"); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("unticking Built-in did not take it from members")
		}
	}
	w.axe("the settings")
	w.shot("settings")
	if err := bob.page.Navigate(base + "/#/"); err != nil {
		t.Fatal(err)
	}
	bob.until(`() => { const o = document.querySelector('#new-agent option[value="builtin"]'); return !!o && o.disabled && /owner only/.test(o.textContent) }`, 10*time.Second, "the member's picker saying builtin is the owner's only")
	w.click(`input[name="member-agent"][value="builtin"]`)
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(memberAgents(), "builtin"); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("ticking Built-in again did not give it back to members")
		}
	}
	w.clickText("#secrets button", "Remove")
	w.waitText(`No secrets stored`, 5*time.Second)

	// Conversations: search by title; delete one, and it goes from every
	// page.
	w.click(`#top a[href="#/"]`)
	w.newConversation()
	w.say("echo second")
	w.waitText(`second`, 10*time.Second)
	w.fill("#conv-search", "form")
	w.until(`() => [...document.querySelectorAll(".conv-list a")].map(a => a.textContent).join("|") === "Form checks"`, 5*time.Second, "the search showing only the matching title")
	w.click(`.conv-list a`)
	w.waitText(`Opened "Form"`, 10*time.Second)
	w.clickText(".thread-head button", "Delete")
	w.until(`() => location.hash !== "#/c/`+sid+`"`, 10*time.Second, "leaving the deleted conversation")
	bob.until(`() => ![...document.querySelectorAll(".conv-list a")].some(a => a.textContent === "Form checks")`, 5*time.Second, "the deleted conversation going from the member's sidebar")
	if status, _ := apiDo(t, "GET", "http://"+b.addr+"/api/v1/sessions/"+sid, token, ""); status != 404 {
		t.Errorf("the deleted conversation answers %d", status)
	}

	// Revoke the device, confirming the dialog.
	w.click(`a[href="#/devices"]`)
	w.waitText(`laptop`, 5*time.Second)
	w.clickText(`li[data-device] button`, "Revoke")
	w.waitText(`No paired computers yet`, 10*time.Second)
	w.shot("revoked")

	// Every page on a phone: nothing wider than the screen, nothing axe
	// calls serious.
	w.size(390, 844)
	for _, page := range []string{"devices", "audit", "people", "settings"} {
		w.click(`#top a[href="#/` + page + `"]`)
		w.drawn()
		w.noOverflow("the " + page + " page on a phone")
		w.axe("the " + page + " page on a phone")
		w.shot(page + " phone")
	}
	for _, page := range []string{"people", "devices"} {
		w.size(1280, 800)
		w.click(`#top a[href="#/` + page + `"]`)
		w.drawn()
		w.axe("the owner's " + page + " page")
	}

	// A phone-sized screen: one column, nothing wider than the screen,
	// the composer in view.
	w.size(390, 844)
	w.click(`#top a[href="#/"]`)
	w.el("#message")
	w.noOverflow("a conversation on a phone")
	if !w.inView(".composer") {
		t.Error("the composer is not in view on a phone")
	}
	w.axe("a conversation on a phone")
	w.shot("phone")
}
