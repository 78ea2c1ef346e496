package e2e

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The person at the computer asked, in real Chromium: the conversation's
// first browser action waits, the thread says it waits for the person at
// the computer, the companion's own loopback page shows the question and
// its Allow lets the action through; the thread and the audit say who
// answered. A Deny from the command line refuses the next conversation's.
func TestThePersonAtTheComputerAnswersOnItsPage(t *testing.T) {
	pageSrv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "text/html")
		io.WriteString(rw, `<!doctype html><title>Form</title><h1>A form page</h1>`)
	}))
	defer pageSrv.Close()
	b := startBox(t, "", t.TempDir(), "127.0.0.1:0", "--no-mdns")
	setup := b.waitFor(`Create the owner \(this link works once\): (\S+)`, 5*time.Second)
	base := setup[:strings.Index(setup, "/#/")]
	state := t.TempDir()
	mustRun(t, "", "lowkey-companion", "pair", "--hub", b.addr, "--code", b.pairCode(t), "--state", state, "--name", "laptop")
	id := b.devices(t)[0].ID
	mustRun(t, "", "lowkey-companion", "consent", "ask", "--browser", "--state", state)
	comp := start(t, "", "lowkey-companion", "run", "--state", state, "--no-mdns", "--headless")
	b.waitOnline(t, id, 30*time.Second)
	br := openBrowser(t)
	w := ownerPage(t, br, setup)
	uncaught := w.errors()
	w.size(1280, 800)
	token := strings.TrimSpace(mustRun(t, "", "lowkey", "token", "--data", b.data))
	sid := apiJSON(t, "POST", base+"/api/v1/sessions", token, `{}`, 201)["id"].(string)
	apiJSON(t, "PUT", base+"/api/v1/sessions/"+sid+"/devices/"+id+"/access", token, `{"browser": true}`, 200)
	if err := w.page.Navigate(base + "/#/c/" + sid); err != nil {
		t.Fatal(err)
	}
	w.drawn()
	w.say("open " + pageSrv.URL + " on laptop")
	w.waitText(`waiting for the person at laptop to allow browser access`, 30*time.Second)

	// The companion's page, where its status says it is.
	var page string
	deadline := time.Now().Add(10 * time.Second)
	for page == "" {
		if m := regexp.MustCompile(`answer page:\s+(\S+)`).FindStringSubmatch(mustRun(t, "", "lowkey-companion", "status", "--state", state)); m != nil {
			page = m[1]
		}
		if time.Now().After(deadline) {
			t.Fatal("the companion's status names no answer page")
		}
	}
	if !strings.HasPrefix(page, "http://127.0.0.1:") {
		t.Fatalf("the answer page is at %s, not on loopback", page)
	}
	// Without its token, or by another name for loopback, it answers nothing.
	addr := strings.TrimPrefix(strings.SplitN(page, "/#", 2)[0], "http://")
	if status, _ := apiDo(t, "GET", "http://"+addr+"/api/questions", "guess", ""); status != 401 {
		t.Errorf("the questions without the token: %d", status)
	}
	// With the token, but by a name a page in the browser could rebind to
	// loopback: refused; by its own address: answered.
	pageToken := strings.SplitN(page, "/#", 2)[1]
	for host, want := range map[string]int{"localhost:" + strings.SplitN(addr, ":", 2)[1]: 403, "evil.example": 403, addr: 200} {
		req, _ := http.NewRequest("GET", "http://"+addr+"/api/questions", nil)
		req.Host = host
		req.Header.Set("Authorization", "Bearer "+pageToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("the questions asked as Host %s: %d, want %d", host, resp.StatusCode, want)
		}
	}
	local := &webUI{t: t, page: br.MustPage(""), dir: w.dir}
	if err := local.page.Navigate(page); err != nil {
		t.Fatal(err)
	}
	local.waitText(`Conversation `+sid+` wants browser access on this computer \(its first action: browser\.navigate\)`, 15*time.Second)
	local.waitText(`s left to answer; no answer is a no`, 5*time.Second)
	local.axe("the answer page")
	local.shot("answer page")
	local.clickText("button", "Allow for this conversation")
	local.waitText(`Answered: Allow for this conversation`, 10*time.Second)

	// Back to the box's page (a tab behind another draws nothing).
	w.page.MustActivate()
	w.waitText(`Opened "Form"`, 30*time.Second)
	w.waitText(`the person at laptop: allowed at the computer for this conversation`, 10*time.Second)
	w.shot("allowed at the computer")
	status, raw := apiDo(t, "GET", base+"/api/v1/audit?session="+sid, token, "")
	if status != 200 || !strings.Contains(string(raw), `"who":"the person at laptop"`) || !strings.Contains(string(raw), `"action":"consent.browser"`) {
		t.Fatalf("the audit does not have the person's answer: %d %s", status, raw)
	}

	// Another conversation; its question denied from the command line.
	sid2 := apiJSON(t, "POST", base+"/api/v1/sessions", token, `{}`, 201)["id"].(string)
	apiJSON(t, "PUT", base+"/api/v1/sessions/"+sid2+"/devices/"+id+"/access", token, `{"browser": true}`, 200)
	done := make(chan []byte, 1)
	go func() {
		_, raw := apiDo(t, "POST", base+"/api/v1/sessions/"+sid2+"/devices/"+id+"/actions", token, `{"action": "browser.tabs"}`)
		done <- raw
	}()
	local.waitText(`Conversation `+sid2+` wants browser access`, 15*time.Second)
	if out := mustRun(t, "", "lowkey-companion", "deny", "--state", state); !strings.Contains(out, "Denied browser access to conversation "+sid2) {
		t.Fatalf("deny: %s", out)
	}
	if raw := <-done; !strings.Contains(string(raw), "declined") || !strings.Contains(string(raw), "denied") {
		t.Fatalf("a denied action: %s", raw)
	}
	local.waitText(`Nothing waits for you now|Answered`, 10*time.Second)
	if errs := uncaught(); len(errs) > 0 {
		t.Fatalf("uncaught page errors: %v", errs)
	}

	// The answer, the rules and pause outlive the computer's program and
	// the box: after both restart, the allowed conversation acts without a
	// question, and a pause set meanwhile holds.
	comp.stop()
	b.stop()
	b = startBox(t, "", b.data, b.addr, "--no-mdns")
	comp = start(t, "", "lowkey-companion", "run", "--state", state, "--no-mdns", "--headless")
	b.waitOnline(t, id, 30*time.Second)
	if status, raw := apiDo(t, "POST", base+"/api/v1/sessions/"+sid+"/devices/"+id+"/actions", token, `{"action": "browser.tabs"}`); status != 200 {
		t.Fatalf("the allowed conversation after both restarted: %d %s", status, raw)
	}
	if out := mustRun(t, "", "lowkey-companion", "status", "--state", state); !strings.Contains(out, "consent:       browser ask, desktop ask") {
		t.Fatalf("the rules after a restart:\n%s", out)
	}
	mustRun(t, "", "lowkey-companion", "pause", "--state", state)
	comp.stop()
	start(t, "", "lowkey-companion", "run", "--state", state, "--no-mdns", "--headless")
	b.waitOnline(t, id, 30*time.Second)
	if _, raw := apiDo(t, "POST", base+"/api/v1/sessions/"+sid+"/devices/"+id+"/actions", token, `{"action": "browser.tabs"}`); !strings.Contains(string(raw), "paused") {
		t.Fatalf("paused, then restarted: %s", raw)
	}
}
