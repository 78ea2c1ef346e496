package hub_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/lowkeyhq/lowkey/companion"
	"github.com/lowkeyhq/lowkey/devicectl"
	"github.com/lowkeyhq/lowkey/hub"
	"github.com/lowkeyhq/lowkey/internal/local"
	"github.com/lowkeyhq/lowkey/internal/testenv"
)

const formPage = `<!doctype html><title>Form</title>
<h1>Sign in</h1>
<label>User <input id="user"></label>
<label>Password <input type="password" id="pw"></label>
<p id="out">nothing yet</p>
<button onclick="document.getElementById('out').textContent='pressed'">Go</button>`

func pageServer(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, formPage)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func startControlPair(t *testing.T, hubCfg func(*hub.Config), compCfg func(*companion.Config)) *local.Pair {
	t.Helper()
	testenv.RequireBrowser(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := local.Start(ctx, t.TempDir(), local.Options{Logger: quiet(), Hub: hubCfg, Companion: compCfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	// These tests are about the box's side; the person at the computer
	// trusts it here (consent_test.go is about asking them).
	if err := p.State.SetRule(companion.Trust); err != nil {
		t.Fatal(err)
	}
	return p
}

type session struct {
	a   api
	id  string
	dev string
}

func (s session) act(action string, args any) (int, map[string]any, []byte) {
	s.a.t.Helper()
	return s.a.do("POST", "/api/v1/sessions/"+s.id+"/devices/"+s.dev+"/actions", map[string]any{"action": action, "args": args})
}

func (s session) access(browser, desktop bool) {
	s.a.t.Helper()
	status, _, raw := s.a.do("PUT", "/api/v1/sessions/"+s.id+"/devices/"+s.dev+"/access", map[string]bool{"browser": browser, "desktop": desktop})
	if status != 200 {
		s.a.t.Fatalf("access: %d %s", status, raw)
	}
	// The grant travels to the computer as a notice; give it a moment.
	time.Sleep(100 * time.Millisecond)
}

func newConversation(t *testing.T, p *local.Pair) session {
	a := ownerAPI(t, p)
	return session{a: a, id: newSession(t, a), dev: p.DeviceID}
}

func audit(t *testing.T, a api, query string) []devicectl.AuditRecord {
	t.Helper()
	status, _, raw := a.do("GET", "/api/v1/audit?"+query, nil)
	if status != 200 {
		t.Fatalf("audit: %d %s", status, raw)
	}
	var recs []devicectl.AuditRecord
	if err := json.Unmarshal(raw, &recs); err != nil {
		t.Fatal(err)
	}
	return recs
}

func TestToggleGatesTheBrowserAndEverythingIsAudited(t *testing.T) {
	p := startControlPair(t, nil, nil)
	s := newConversation(t, p)
	page := pageServer(t)

	// Off by default: refused on the box, naming the toggle.
	status, m, raw := s.act("browser.navigate", map[string]string{"url": page})
	if status != 409 || errCode(m) != "toggle_off" || !strings.Contains(string(raw), "browser access is off") {
		t.Fatalf("without a grant: %d %s", status, raw)
	}
	// The session shows no grants.
	_, m, _ = s.a.do("GET", "/api/v1/sessions/"+s.id, nil)
	if gs := m["grants"].([]any); len(gs) != 0 {
		t.Fatalf("grants by default: %v", gs)
	}

	s.access(true, false)
	status, m, raw = s.act("browser.navigate", map[string]string{"url": page})
	if status != 200 || m["result"].(map[string]any)["title"] != "Form" {
		t.Fatalf("with the grant: %d %s", status, raw)
	}
	_, m, _ = s.act("browser.snapshot", nil)
	snap := m["result"].(map[string]any)["snapshot"].(string)
	ref := func(label string) string {
		for _, line := range strings.Split(snap, "\n") {
			if strings.Contains(line, label) {
				i := strings.Index(line, "[ref=")
				return line[i+5 : strings.Index(line[i:], "]")+i]
			}
		}
		t.Fatalf("no %q in %s", label, snap)
		return ""
	}
	if status, _, raw := s.act("browser.type", map[string]string{"ref": ref(`textbox "User"`), "text": "ada"}); status != 200 {
		t.Fatalf("type: %d %s", status, raw)
	}
	if status, _, raw := s.act("browser.type", map[string]string{"ref": ref(`textbox "Password"`), "text": "hunter2-secret"}); status != 200 {
		t.Fatalf("type password: %d %s", status, raw)
	}
	// Desktop is a separate toggle.
	if status, m, _ := s.act("screen.size", nil); status != 409 || errCode(m) != "toggle_off" {
		t.Fatalf("screen without the desktop toggle: %d %v", status, m)
	}

	s.access(false, false)
	if status, m, _ := s.act("browser.snapshot", nil); status != 409 || errCode(m) != "toggle_off" {
		t.Fatalf("after toggling off: %d %v", status, m)
	}

	recs := audit(t, s.a, "session="+s.id)
	var outcomes []string
	for _, r := range recs {
		outcomes = append(outcomes, r.Action+":"+r.Outcome)
		if r.Who != "owner" || r.Device != p.DeviceID || r.Conversation != s.id || r.Time.IsZero() {
			t.Fatalf("incomplete audit record %+v", r)
		}
	}
	want := "browser.navigate:refused browser.navigate:done browser.snapshot:done browser.type:done browser.type:done screen.size:refused browser.snapshot:refused"
	if strings.Join(outcomes, " ") != want {
		t.Fatalf("audit trail:\n got %s\nwant %s", strings.Join(outcomes, " "), want)
	}
	all, _ := json.Marshal(recs)
	if strings.Contains(string(all), "hunter2") {
		t.Fatalf("the password reached the audit log: %s", all)
	}
	if !strings.Contains(string(recs[3].Args), `"ada"`) || !strings.Contains(string(recs[4].Args), devicectl.Redacted) {
		t.Fatalf("typed text: %s / %s", recs[3].Args, recs[4].Args)
	}
	// JSON lines export, filtered by device.
	req, _ := http.NewRequest("GET", p.URL()+"/api/v1/audit?format=jsonl&device="+p.DeviceID, nil)
	req.Header.Set("Authorization", "Bearer "+p.Hub.Token())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var r devicectl.AuditRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("export line %q: %v", sc.Text(), err)
		}
		lines++
	}
	if lines != len(recs) {
		t.Fatalf("export has %d lines, audit has %d records", lines, len(recs))
	}
}

func TestTheComputerEnforcesGrantsByItself(t *testing.T) {
	// A box that skips its own check: the computer still refuses.
	p := startControlPair(t, func(c *hub.Config) { c.UnsafeSkipGrantCheck = true }, nil)
	s := newConversation(t, p)
	page := pageServer(t)
	status, m, raw := s.act("browser.navigate", map[string]string{"url": page})
	if status != 409 || errCode(m) != "no_grant" {
		t.Fatalf("the computer ran an action without a grant: %d %s", status, raw)
	}
	// A grant for another conversation does not count.
	other := newConversation(t, p)
	other.access(true, true)
	if status, m, _ := s.act("browser.navigate", map[string]string{"url": page}); status != 409 || errCode(m) != "no_grant" {
		t.Fatalf("another conversation's grant was used: %d %v", status, m)
	}
	s.access(true, false)
	if status, _, raw := s.act("browser.navigate", map[string]string{"url": page}); status != 200 {
		t.Fatalf("with the grant: %d %s", status, raw)
	}
	if status, m, _ := s.act("screen.size", nil); status != 409 || errCode(m) != "no_grant" {
		t.Fatalf("desktop without its grant: %d %v", status, m)
	}

	// Paused on the computer: refused whatever the box says, until resume.
	if err := p.State.SetPaused(true); err != nil {
		t.Fatal(err)
	}
	status, m, raw = s.act("browser.snapshot", nil)
	if status != 409 || errCode(m) != "paused" || !strings.Contains(string(raw), "resume") {
		t.Fatalf("while paused: %d %s", status, raw)
	}
	if err := p.State.SetPaused(false); err != nil {
		t.Fatal(err)
	}
	if status, _, raw := s.act("browser.snapshot", nil); status != 200 {
		t.Fatalf("after resume: %d %s", status, raw)
	}
	// The computer shows who holds control.
	if st := p.Runner.Status(); len(st.Grants) != 2 {
		t.Fatalf("status grants: %v", st.Grants)
	}
	recs := audit(t, s.a, "session="+s.id)
	if recs[0].Outcome != "refused" || recs[len(recs)-2].Outcome != "refused" {
		t.Fatalf("refusals by the computer are not audited as refused: %+v", recs)
	}

	// Revoked: refused, and its grants are gone.
	if status, _, _ := s.a.do("DELETE", "/api/v1/devices/"+p.DeviceID, nil); status != 200 {
		t.Fatal(status)
	}
	if status, m, _ := s.act("browser.snapshot", nil); status != 404 || errCode(m) != "not_found" {
		t.Fatalf("revoked device: %d %v", status, m)
	}
	_, m, _ = s.a.do("GET", "/api/v1/sessions/"+s.id, nil)
	if gs := m["grants"].([]any); len(gs) != 0 {
		t.Fatalf("grants outlived the device: %v", gs)
	}
}

func TestAskingActionsWaitForThePerson(t *testing.T) {
	p := startControlPair(t, func(c *hub.Config) { c.ConfirmTimeout = 1500 * time.Millisecond }, nil)
	s := newConversation(t, p)
	s.access(true, false)
	s.act("browser.navigate", map[string]string{"url": pageServer(t)})

	run := func() chan [3]any {
		ch := make(chan [3]any, 1)
		go func() {
			status, m, raw := s.act("browser.eval", map[string]string{"js": "document.title"})
			ch <- [3]any{status, m, raw}
		}()
		return ch
	}
	pending := func() string {
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			_, m, _ := s.a.do("GET", "/api/v1/sessions/"+s.id, nil)
			if cs := m["confirmations"].([]any); len(cs) == 1 {
				c := cs[0].(map[string]any)
				if !strings.Contains(c["summary"].(string), "run script") {
					t.Fatalf("confirmation %v", c)
				}
				return c["id"].(string)
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatal("no confirmation appeared")
		return ""
	}
	answer := func(cid, a string) int {
		status, _, _ := s.a.do("POST", "/api/v1/sessions/"+s.id+"/confirmations/"+cid, map[string]string{"answer": a})
		return status
	}

	// Yes: it runs.
	done := run()
	if answer(pending(), "yes") != 200 {
		t.Fatal("answer yes")
	}
	r := <-done
	if r[0] != 200 || r[1].(map[string]any)["result"].(map[string]any)["value"] != "Form" {
		t.Fatalf("after yes: %v %s", r[0], r[2])
	}
	// No: refused.
	done = run()
	if answer(pending(), "no") != 200 {
		t.Fatal("answer no")
	}
	if r := <-done; r[0] != 409 || errCode(r[1].(map[string]any)) != "declined" {
		t.Fatalf("after no: %v %s", r[0], r[2])
	}
	// No answer: it expires to No, and a late answer is refused.
	done = run()
	cid := pending()
	if r := <-done; r[0] != 409 || errCode(r[1].(map[string]any)) != "declined" {
		t.Fatalf("unanswered: %v %s", r[0], r[2])
	}
	if st := answer(cid, "yes"); st != 409 {
		t.Fatalf("a late yes got %d", st)
	}
	if st := answer(cid, "maybe"); st != 400 {
		t.Fatalf("a bad answer got %d", st)
	}
	var answers []string
	for _, rec := range audit(t, s.a, "session="+s.id) {
		if rec.Action == "browser.eval" {
			answers = append(answers, string(rec.Reply)+":"+rec.Outcome)
		}
	}
	if strings.Join(answers, " ") != "yes:done no:declined no:declined" {
		t.Fatalf("audited answers: %v", answers)
	}
}

func TestCancelFromTheBoxStopsTheActionOnTheComputer(t *testing.T) {
	p := startControlPair(t, nil, nil)
	s := newConversation(t, p)
	s.access(true, false)
	page := pageServer(t)
	s.act("browser.navigate", map[string]string{"url": page})
	start := time.Now()
	status, m, _ := s.a.do("POST", "/api/v1/sessions/"+s.id+"/devices/"+s.dev+"/actions",
		map[string]any{"action": "browser.wait_for", "args": map[string]any{"text": "never", "timeout_ms": 30000}, "timeout_ms": 500})
	if status != 504 {
		t.Fatalf("deadline: %d %v", status, m)
	}
	// The computer stopped waiting: the next action is not queued behind it.
	status, _, raw := s.act("browser.navigate", map[string]string{"url": page})
	// (Short of the wait's own 30 s: not queued behind it.)
	if status != 200 || time.Since(start) > 20*time.Second {
		t.Fatalf("next action after the cancel: %d in %s: %s", status, time.Since(start), raw)
	}
}

func TestDesktopAndLiveScreenUnderXvfb(t *testing.T) {
	display := testenv.Xvfb(t, 1280, 720)
	p := startControlPair(t, nil, func(c *companion.Config) { c.Display = display })
	s := newConversation(t, p)
	// sys.info says the desktop is there.
	_, m, _ := s.act("sys.info", nil)
	caps := m["result"].(map[string]any)["capabilities"].(map[string]any)
	if caps["desktop"].(map[string]any)["available"] != true || caps["browser"].(map[string]any)["available"] != true {
		t.Fatalf("capabilities: %v", caps)
	}
	// The live screen needs the desktop toggle.
	u := "ws" + strings.TrimPrefix(p.URL(), "http") + "/api/v1/sessions/" + s.id + "/devices/" + s.dev + "/live?fps=20&mode=jpeg"
	hdr := http.Header{"Authorization": {"Bearer " + p.Hub.Token()}}
	if _, resp, err := websocket.DefaultDialer.Dial(u, hdr); err == nil || resp == nil || resp.StatusCode != 409 {
		t.Fatalf("live without the toggle: %v", err)
	}
	s.access(false, true)
	if status, m, raw := s.act("screen.click", map[string]int{"x": 640, "y": 360}); status != 200 || m["result"].(map[string]any)["x"] != 640.0 {
		t.Fatalf("screen.click: %d %s", status, raw)
	}
	ws, _, err := websocket.DefaultDialer.Dial(u, hdr)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	start := time.Now()
	frames := 0
	for frames < 10 {
		_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		kind, data, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("after %d frames: %v", frames, err)
		}
		img, err := jpeg.Decode(bytes.NewReader(data))
		if kind != websocket.BinaryMessage || err != nil || img.Bounds().Dx() != 1280 || img.Bounds().Dy() != 720 {
			t.Fatalf("frame %d: %v %v", frames, err, img.Bounds())
		}
		frames++
	}
	t.Logf("live screen: %d frames of 1280x720 in %s", frames, time.Since(start).Round(time.Millisecond))
	// Toggling the desktop off ends the stream.
	s.access(false, false)
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			if !websocket.IsCloseError(err, websocket.ClosePolicyViolation) {
				t.Fatalf("stream ended with %v", err)
			}
			break
		}
	}
	recs := audit(t, s.a, "device="+s.dev)
	found := false
	for _, r := range recs {
		found = found || (r.Action == "live.screen" && r.Outcome == "done")
	}
	if !found {
		t.Fatal("no audit record for watching the screen")
	}
}

// composeLive draws an update onto a viewer's picture, as the web app does.
func composeLive(t *testing.T, pic *image.RGBA, data []byte) (*image.RGBA, *devicectl.LiveUpdate) {
	t.Helper()
	u, err := devicectl.ParseLiveUpdate(data)
	if err == nil {
		pic, err = u.Apply(pic)
	}
	if err != nil {
		t.Fatal(err)
	}
	return pic, u
}

// near says whether the viewer's pixel at x, y is c, within JPEG's error.
func near(pic *image.RGBA, x, y int, c color.RGBA) bool {
	got := pic.RGBAAt(x, y)
	d := func(a, b uint8) int { return max(int(a)-int(b), int(b)-int(a)) }
	return d(got.R, c.R) < 24 && d(got.G, c.G) < 24 && d(got.B, c.B) < 24
}

// The live screen sends a whole frame, then only what changed: a box
// drawn on the screen arrives as a small update, a still screen sends
// nothing, and a whole frame comes when a viewer asks for one or joins.
func TestLiveUpdatesUnderXvfb(t *testing.T) {
	display := testenv.Xvfb(t, 1280, 720)
	p := startControlPair(t, nil, func(c *companion.Config) { c.Display = display })
	s := newConversation(t, p)
	s.access(false, true)
	bg, red := color.RGBA{30, 60, 90, 255}, color.RGBA{220, 30, 30, 255}
	testenv.Paint(t, display, image.Rect(0, 0, 1280, 720), bg)
	u := "ws" + strings.TrimPrefix(p.URL(), "http") + "/api/v1/sessions/" + s.id + "/devices/" + s.dev + "/live?fps=30"
	hdr := http.Header{"Authorization": {"Bearer " + p.Hub.Token()}}
	ws, _, err := websocket.DefaultDialer.Dial(u, hdr)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	read := func(ws *websocket.Conn, limit time.Duration) ([]byte, error) {
		_ = ws.SetReadDeadline(time.Now().Add(limit))
		_, data, err := ws.ReadMessage()
		return data, err
	}
	data, err := read(ws, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	pic, up := composeLive(t, nil, data)
	if !up.Key || up.Width != 1280 || up.Height != 720 || !near(pic, 640, 360, bg) {
		t.Fatalf("the first update: key %v, %dx%d, centre %v", up.Key, up.Width, up.Height, pic.RGBAAt(640, 360))
	}

	// Something changes on the screen: a small update carries it.
	testenv.Paint(t, display, image.Rect(200, 200, 300, 250), red)
	for i := 0; !near(pic, 250, 225, red); i++ {
		if i == 50 {
			t.Fatal("the red box never reached the viewer")
		}
		data, err := read(ws, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		pic, up = composeLive(t, pic, data)
		if up.Key || len(data) > 20<<10 {
			t.Fatalf("a 100x50 change came as a key %v of %d bytes", up.Key, len(data))
		}
	}
	if !near(pic, 640, 360, bg) || !near(pic, 150, 150, bg) {
		t.Fatal("the viewer's picture around the change is wrong")
	}

	// A still screen: nothing more (the first frame was at full quality).
	if data, err := read(ws, 1500*time.Millisecond); err == nil {
		_, up := composeLive(t, pic, data)
		t.Fatalf("a still screen sent an update of %d ops", len(up.Ops))
	}
	ws.Close()

	// A new viewer starts at a whole frame, and gets one when it asks.
	ws, _, err = websocket.DefaultDialer.Dial(u, hdr)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if data, err = read(ws, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if pic, up = composeLive(t, nil, data); !up.Key || !near(pic, 250, 225, red) {
		t.Fatalf("a new viewer's first update: key %v", up.Key)
	}
	if err := ws.WriteMessage(websocket.TextMessage, []byte("key")); err != nil {
		t.Fatal(err)
	}
	if data, err = read(ws, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, up = composeLive(t, nil, data); !up.Key {
		t.Fatal("asked for a whole frame, got an update")
	}
	// Another way of watching while this one runs is refused, saying why.
	if _, resp, err := websocket.DefaultDialer.Dial(u+"&mode=jpeg", hdr); err == nil || resp == nil || resp.StatusCode != http.StatusConflict {
		t.Fatalf("a second mode while one streams: %v", err)
	}
}

// The controlled tab's live view: a whole frame of the page, then what
// changed when the agent types into it, and nothing while it is still.
func TestLiveTabUpdates(t *testing.T) {
	p := startControlPair(t, nil, nil)
	s := newConversation(t, p)
	s.access(true, false)
	if status, _, raw := s.act("browser.navigate", map[string]string{"url": pageServer(t)}); status != 200 {
		t.Fatalf("navigate: %d %s", status, raw)
	}
	u := "ws" + strings.TrimPrefix(p.URL(), "http") + "/api/v1/sessions/" + s.id + "/devices/" + s.dev + "/live?source=browser&fps=10"
	ws, _, err := websocket.DefaultDialer.Dial(u, http.Header{"Authorization": {"Bearer " + p.Hub.Token()}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	read := func() []byte {
		t.Helper()
		_ = ws.SetReadDeadline(time.Now().Add(15 * time.Second))
		_, data, err := ws.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	pic, up := composeLive(t, nil, read())
	if !up.Key || up.Width < 300 || up.Pointer != nil {
		t.Fatalf("the tab's first update: key %v, %dx%d, pointer %v", up.Key, up.Width, up.Height, up.Pointer)
	}
	key := len(up.Marshal())
	// Nothing changes: nothing comes (the first frame was at full quality).
	_ = ws.SetReadDeadline(time.Now().Add(1500 * time.Millisecond))
	if _, data, err := ws.ReadMessage(); err == nil {
		t.Fatalf("a still tab sent %d bytes", len(data))
	}
	ws.Close()
	ws, _, err = websocket.DefaultDialer.Dial(u, http.Header{"Authorization": {"Bearer " + p.Hub.Token()}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	pic, _ = composeLive(t, nil, read())
	_, m, _ := s.act("browser.snapshot", nil)
	snap := m["result"].(map[string]any)["snapshot"].(string)
	i := strings.Index(snap, `textbox "User" [ref=`)
	if i < 0 {
		t.Fatalf("no User field in %s", snap)
	}
	ref := snap[i+len(`textbox "User" [ref=`) : i+strings.Index(snap[i:], "]")]
	if status, _, raw := s.act("browser.type", map[string]string{"ref": ref, "text": "ada lovelace"}); status != 200 {
		t.Fatalf("type: %d %s", status, raw)
	}
	// The typing arrives as updates smaller than the whole frame.
	data := read()
	pic, up = composeLive(t, pic, data)
	if up.Key || len(data)*2 > key {
		t.Fatalf("typing came as key %v, %d bytes (a whole frame is %d)", up.Key, len(data), key)
	}
}

// A grant cannot outlive its conversation: deleting the conversation ends
// it on the computer too.
func TestGrantsEndWithTheConversation(t *testing.T) {
	p := startControlPair(t, func(c *hub.Config) { c.UnsafeSkipGrantCheck = true }, nil)
	s := newConversation(t, p)
	s.access(true, false)
	if st := p.Runner.Status(); len(st.Grants) != 1 {
		t.Fatalf("grants on the computer: %v", st.Grants)
	}
	if status, _, raw := s.a.do("DELETE", "/api/v1/sessions/"+s.id, nil); status != 200 {
		t.Fatalf("delete: %d %s", status, raw)
	}
	deadline := time.Now().Add(2 * time.Second)
	for len(p.Runner.Status().Grants) != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if st := p.Runner.Status(); len(st.Grants) != 0 {
		t.Fatalf("the computer still holds %v", st.Grants)
	}
	if status, _, _ := s.a.do("GET", "/api/v1/sessions/"+s.id, nil); status != 404 {
		t.Fatalf("deleted conversation: %d", status)
	}
	// The computer holds no grant for it any more (above), and the API has
	// no such conversation to act in.
	if status, _, _ := s.act("browser.snapshot", nil); status != 404 {
		t.Fatalf("action in a deleted conversation: %d", status)
	}
}

// A conversation has at most 8 device actions in flight, and a computer
// runs at most 8 at once: past that the box answers 429 at once rather
// than queue without end. Once they end, actions go through again.
func TestDeviceActionsInFlightAreBounded(t *testing.T) {
	p := startControlPair(t, nil, nil)
	a, b, c := newConversation(t, p), newConversation(t, p), newConversation(t, p)
	page := pageServer(t)
	for _, s := range []session{a, b, c} {
		s.access(true, false)
		if status, _, raw := s.act("browser.navigate", map[string]string{"url": page}); status != 200 {
			t.Fatalf("navigate: %d %s", status, raw)
		}
	}
	waitNever := map[string]any{"action": "browser.wait_for", "args": map[string]any{"text": "never", "timeout_ms": 60000}, "timeout_ms": 60000}
	// Eight actions that wait a minute, each sent again if a probe below
	// held a place at that moment.
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 2000 {
				if st, _, _ := a.a.do("POST", "/api/v1/sessions/"+a.id+"/devices/"+a.dev+"/actions", waitNever); st != http.StatusTooManyRequests {
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	// A quick probe (sys.echo of one byte) is refused once all eight are
	// in flight: by the conversation's bound in the same conversation, by
	// the computer's in another.
	probe := func(s session, code string) {
		t.Helper()
		for range 2000 {
			status, m, _ := s.act("sys.echo", map[string]int{"bytes": 1})
			if status == http.StatusTooManyRequests && errCode(m) == code {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("no 429 %s with eight actions in flight", code)
	}
	probe(a, "session_busy")
	probe(b, "device_busy")
	for _, s := range []session{a, b, c} {
		if status, _, raw := s.a.do("POST", "/api/v1/sessions/"+s.id+"/kill", nil); status != 200 {
			t.Fatalf("kill: %d %s", status, raw)
		}
	}
	wg.Wait()
	if status, _, raw := c.act("browser.navigate", map[string]string{"url": page}); status != 200 {
		t.Fatalf("an action after the others ended: %d %s", status, raw)
	}
}
