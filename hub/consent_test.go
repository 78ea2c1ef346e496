package hub_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/lowkeyhq/lowkey/companion"
	"github.com/lowkeyhq/lowkey/devicectl"
	"github.com/lowkeyhq/lowkey/errcode"
	"github.com/lowkeyhq/lowkey/internal/local"
	"github.com/lowkeyhq/lowkey/internal/testenv"
)

// question waits for the companion to ask the person there.
func question(t *testing.T, p *local.Pair) companion.Question {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if qs := p.Runner.Status().Questions; len(qs) > 0 {
			return qs[0]
		}
		if time.Now().After(deadline) {
			t.Fatal("the computer never asked the person there")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The attack as reproduced: a box that lies (a modified hub, or anyone with
// its identity) sends the computer grants it made up, then acts. With ask,
// nothing runs until the person at the computer answers; Deny and no
// answer refuse; an allow holds for that conversation only. With trust it
// runs, and the computer's indicator shows who holds control. Pause
// refuses everything whatever the rule.
func TestALyingBoxMeetsThePersonAtTheComputer(t *testing.T) {
	p := startControlPair(t, nil, func(c *companion.Config) { c.AskWait = 3 * time.Second })
	if err := p.State.SetRule(companion.Ask); err != nil {
		t.Fatal(err)
	}
	made := func(conv string) devicectl.Notice {
		b, _ := json.Marshal(map[string]any{"version": time.Now().UnixNano(), "grants": []devicectl.Grant{{Conversation: conv, Device: p.DeviceID, Browser: true, Desktop: true}}})
		return devicectl.Notice{Type: "grants", Body: b}
	}
	if err := p.Hub.NotifyComputer(p.DeviceID, made("fake-conv")); err != nil {
		t.Fatal(err)
	}
	call := func(conv string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := p.Hub.Call(ctx, p.DeviceID, "browser.tabs", conv, nil)
		return err
	}
	// The indicator shows the made-up conversation as soon as it is granted.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(strings.Join(p.Runner.Status().Grants, ","), "fake-conv") {
		if time.Now().After(deadline) {
			t.Fatalf("the computer does not show who holds control: %v", p.Runner.Status().Grants)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Deny: refused, and nothing ran.
	done := make(chan error, 1)
	go func() { done <- call("fake-conv") }()
	q := question(t, p)
	if q.Conversation != "fake-conv" || q.Capability != "browser" || q.Action != "browser.tabs" {
		t.Fatalf("the question: %+v", q)
	}
	select {
	case err := <-done:
		t.Fatalf("the action did not wait for the person: %v", err)
	default:
	}
	if _, err := p.Runner.Answer(q.ID, companion.Deny); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errcode.Has(err, errcode.Declined) || !strings.Contains(err.Error(), "denied") {
		t.Fatalf("after Deny: %v", err)
	}

	// No answer: refused when the wait ends.
	if err := call("fake-conv"); !errcode.Has(err, errcode.Declined) || !strings.Contains(err.Error(), "no answer") {
		t.Fatalf("unanswered: %v", err)
	}

	// Allow for this conversation: it runs, and asks no more.
	go func() { done <- call("fake-conv") }()
	q = question(t, p)
	if _, err := p.Runner.Answer(q.ID, companion.AllowConversation); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("after Allow: %v", err)
	}
	if err := call("fake-conv"); err != nil {
		t.Fatalf("the next action of an allowed conversation: %v", err)
	}
	// Another made-up conversation is asked about again.
	if err := p.Hub.NotifyComputer(p.DeviceID, made("other-fake")); err != nil {
		t.Fatal(err)
	}
	go func() { done <- call("other-fake") }()
	q = question(t, p)
	if q.Conversation != "other-fake" {
		t.Fatalf("the question: %+v", q)
	}
	if _, err := p.Runner.Answer("", companion.Deny); err != nil {
		t.Fatal(err)
	}
	<-done

	// Pause refuses everything, allowed or trusted.
	if err := p.State.SetPaused(true); err != nil {
		t.Fatal(err)
	}
	for _, rule := range []string{companion.Ask, companion.Trust} {
		if err := p.State.SetRule(rule); err != nil {
			t.Fatal(err)
		}
		if err := call("fake-conv"); !errcode.Has(err, errcode.Paused) {
			t.Fatalf("paused, %s: %v", rule, err)
		}
	}
	if err := p.State.SetPaused(false); err != nil {
		t.Fatal(err)
	}
	// Trust: the box's grant is enough (what a lying box can do then).
	if err := call("other-fake"); err != nil {
		t.Fatalf("trust: %v", err)
	}
}

// Through the box's own API: the thread says the computer waits for the
// person there, the action is refused when they deny, and the audit
// records their answer as theirs.
func TestTheBoxShowsTheComputerAskingAndAuditsTheAnswer(t *testing.T) {
	p := startControlPair(t, nil, nil)
	if err := p.State.SetRule(companion.Ask, devicectl.CapBrowser); err != nil {
		t.Fatal(err)
	}
	s := newConversation(t, p)
	s.access(true, false)
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(p.URL(), "http")+"/api/v1/sessions/"+s.id+"/events", http.Header{"Authorization": {"Bearer " + p.Hub.Token()}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	got := make(chan int, 1)
	go func() {
		status, _, _ := s.act("browser.tabs", nil)
		got <- status
	}()
	q := question(t, p)
	// The thread shows it waits for the person at the computer.
	for {
		_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, m, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("the thread never said the computer waits: %v", err)
		}
		if strings.Contains(string(m), "device.waiting") && strings.Contains(string(m), "waiting for the person at laptop to allow browser access") {
			break
		}
	}
	if _, err := p.Runner.Answer(q.ID, companion.Deny); err != nil {
		t.Fatal(err)
	}
	if status := <-got; status != 409 {
		t.Fatalf("a denied action: %d", status)
	}
	var found bool
	for _, r := range audit(t, s.a, "session="+s.id) {
		found = found || (r.Action == "consent.browser" && r.Outcome == "refused" && r.Who == "the person at laptop" && r.Detail == "denied at the computer")
	}
	if !found {
		t.Fatalf("no audit record of the person's answer: %+v", audit(t, s.a, "session="+s.id))
	}
}

// Answers belong to one pairing: a re-pair starts with none; the rules
// stay the person's.
func TestConsentAnswersDoNotOutliveThePairing(t *testing.T) {
	p := startControlPair(t, nil, nil)
	st := p.State
	if err := st.SetRule(companion.Ask, devicectl.CapDesktop); err != nil {
		t.Fatal(err)
	}
	c, err := st.Consent()
	if err != nil || c.Desktop != companion.Ask || c.Browser != companion.Trust {
		t.Fatalf("rules: %+v %v", c, err)
	}
	c.Answers = []companion.Approval{{Conversation: "s-1", Capability: "desktop"}}
	if err := st.SaveConsent(c); err != nil {
		t.Fatal(err)
	}
	if c, _ := st.Consent(); !c.Allows("s-1", devicectl.CapDesktop, time.Now()) {
		t.Fatal("an answer given for this pairing does not hold")
	}
	h, err := st.Hub()
	if err != nil {
		t.Fatal(err)
	}
	h.PairedAt = h.PairedAt.Add(time.Minute) // paired again
	if err := st.SaveHub(h); err != nil {
		t.Fatal(err)
	}
	c, err = st.Consent()
	if err != nil || c.Allows("s-1", devicectl.CapDesktop, time.Now()) || c.Desktop != companion.Ask {
		t.Fatalf("after a re-pair: %+v %v", c, err)
	}
	if err := st.Forget(); err != nil {
		t.Fatal(err)
	}
	if c, _ := st.Consent(); len(c.Answers) != 0 {
		t.Fatalf("with no pairing: %+v", c)
	}
}

// Watching the screen is acting on it too: with ask, the live view waits
// for the person at the computer, and a Deny sends nothing.
func TestWatchingTheScreenAsksToo(t *testing.T) {
	display := testenv.Xvfb(t, 800, 600)
	p := startControlPair(t, nil, func(c *companion.Config) { c.Display = display })
	if err := p.State.SetRule(companion.Ask, devicectl.CapDesktop); err != nil {
		t.Fatal(err)
	}
	s := newConversation(t, p)
	s.access(false, true)
	u := "ws" + strings.TrimPrefix(p.URL(), "http") + "/api/v1/sessions/" + s.id + "/devices/" + s.dev + "/live?fps=10"
	hdr := http.Header{"Authorization": {"Bearer " + p.Hub.Token()}}
	for _, answer := range []string{companion.Deny, companion.AllowConversation} {
		ws, _, err := websocket.DefaultDialer.Dial(u, hdr)
		if err != nil {
			t.Fatal(err)
		}
		q := question(t, p)
		if q.Action != "live.screen" || q.Capability != "desktop" {
			t.Fatalf("the question: %+v", q)
		}
		if _, err := p.Runner.Answer(q.ID, answer); err != nil {
			t.Fatal(err)
		}
		_ = ws.SetReadDeadline(time.Now().Add(15 * time.Second))
		_, data, err := ws.ReadMessage()
		switch {
		case answer == companion.Deny && err == nil:
			t.Fatalf("denied, and the screen came: %d bytes", len(data))
		case answer == companion.Deny && !strings.Contains(err.Error(), "the person at laptop: denied at the computer"):
			// The viewer is told why, not left waiting.
			t.Fatalf("denied: the view ended with %v", err)
		case answer != companion.Deny && err != nil:
			t.Fatalf("allowed, and no screen: %v", err)
		}
		ws.Close()
	}
}
