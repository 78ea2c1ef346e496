package e2e

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lowkeyhq/lowkey/internal/testenv"
)

// chromiumOf lists the Chromium processes using a companion's profile.
func chromiumOf(state string) string {
	out, _ := exec.Command("pgrep", "-f", filepath.Join(state, "browser-profile")).Output()
	return string(bytes.TrimSpace(out))
}

func waitNoChromium(t *testing.T, state string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for chromiumOf(state) != "" {
		if time.Now().After(deadline) {
			t.Fatalf("Chromium still running %s after the companion stopped: pids %s", limit, chromiumOf(state))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestBrowserControlWithTheBinaries(t *testing.T) {
	testenv.RequireBrowser(t)
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("<!doctype html><title>E2E page</title><h1>hello</h1>"))
	}))
	defer page.Close()
	b := startBox(t, "", t.TempDir(), "127.0.0.1:0", "--no-mdns")
	state := t.TempDir()
	id := pairComputer(t, "", b, state, "--hub", b.addr)
	run := func() *proc {
		c := start(t, "", "lowkey-companion", "run", "--state", state, "--no-mdns", "--headless")
		b.waitOnline(t, id, 15*time.Second)
		return c
	}
	c := run()
	// The box knows what the computer can drive, and why not.
	out := mustRun(t, "", "lowkey", "devices", "--data", b.data)
	if !strings.Contains(out, "browser") || !strings.Contains(out, "no desktop control: no X display") {
		t.Fatalf("devices:\n%s", out)
	}
	// How the link goes: on one machine, UDP between the two sides.
	if !regexp.MustCompile(`PATH[\s\S]*\bms\s+direct\s`).MatchString(out) {
		t.Fatalf("devices does not say the link's path:\n%s", out)
	}
	token := strings.TrimSpace(mustRun(t, "", "lowkey", "token", "--data", b.data))
	base := "http://" + b.addr + "/api/v1/sessions/"
	sid := apiJSON(t, "POST", "http://"+b.addr+"/api/v1/sessions", token, `{"title":"e2e"}`, 201)["id"].(string)
	navigate := `{"action":"browser.navigate","args":{"url":"` + page.URL + `"}}`
	apiJSON(t, "POST", base+sid+"/devices/"+id+"/actions", token, navigate, 409)
	apiJSON(t, "PUT", base+sid+"/devices/"+id+"/access", token, `{"browser":true}`, 200)
	c.waitFor(`device control ACTIVE`, 5*time.Second)
	if out := mustRun(t, "", "lowkey-companion", "status", "--state", state); !strings.Contains(out, "control:       active for "+sid+" (browser)") {
		t.Fatalf("status while controlled:\n%s", out)
	}
	res := apiJSON(t, "POST", base+sid+"/devices/"+id+"/actions", token, navigate, 200)
	if res["result"].(map[string]any)["title"] != "E2E page" {
		t.Fatalf("navigate: %v", res)
	}
	// The local kill switch wins over the box.
	mustRun(t, "", "lowkey-companion", "pause", "--state", state)
	if m := apiJSON(t, "POST", base+sid+"/devices/"+id+"/actions", token, navigate, 409); errCode(m) != "paused" {
		t.Fatalf("paused: %v", m)
	}
	if out := mustRun(t, "", "lowkey-companion", "status", "--state", state); !strings.Contains(out, "PAUSED") {
		t.Fatalf("status while paused:\n%s", out)
	}
	mustRun(t, "", "lowkey-companion", "resume", "--state", state)
	apiJSON(t, "POST", base+sid+"/devices/"+id+"/actions", token, navigate, 200)

	// Stopping the companion closes the browser it launched.
	if chromiumOf(state) == "" {
		t.Fatal("no Chromium found for the companion's profile while it runs")
	}
	c.stop()
	waitNoChromium(t, state, 5*time.Second)

	// Even when the companion is killed outright.
	c = run()
	time.Sleep(200 * time.Millisecond) // the grants arrive
	apiJSON(t, "POST", base+sid+"/devices/"+id+"/actions", token, navigate, 200)
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
	waitNoChromium(t, state, 10*time.Second)

	// Toggling off ends control on the computer too.
	c = run()
	c.waitFor(`device control ACTIVE`, 5*time.Second)
	apiJSON(t, "PUT", base+sid+"/devices/"+id+"/access", token, `{"browser":false}`, 200)
	c.waitFor(`device control inactive`, 5*time.Second)
}

func errCode(m map[string]any) string {
	e, _ := m["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

// A computer that dies in the middle of an action: the caller hears so
// at once, with a clear error, not at the action's deadline.
func TestCompanionKilledMidAction(t *testing.T) {
	testenv.RequireBrowser(t)
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("<!doctype html><title>Wait here</title><p>nothing comes</p>"))
	}))
	defer page.Close()
	b := startBox(t, "", t.TempDir(), "127.0.0.1:0", "--no-mdns")
	state := t.TempDir()
	id := pairComputer(t, "", b, state, "--hub", b.addr)
	c := start(t, "", "lowkey-companion", "run", "--state", state, "--no-mdns", "--headless")
	b.waitOnline(t, id, 15*time.Second)
	token := strings.TrimSpace(mustRun(t, "", "lowkey", "token", "--data", b.data))
	base := "http://" + b.addr + "/api/v1/sessions/"
	sid := apiJSON(t, "POST", "http://"+b.addr+"/api/v1/sessions", token, `{}`, 201)["id"].(string)
	apiJSON(t, "PUT", base+sid+"/devices/"+id+"/access", token, `{"browser":true}`, 200)
	time.Sleep(200 * time.Millisecond)
	apiJSON(t, "POST", base+sid+"/devices/"+id+"/actions", token, `{"action":"browser.navigate","args":{"url":"`+page.URL+`"}}`, 200)
	type answer struct {
		status int
		body   string
	}
	done := make(chan answer, 1)
	go func() {
		st, raw := apiDo(t, "POST", base+sid+"/devices/"+id+"/actions", token, `{"action":"browser.wait_for","args":{"text":"never","timeout_ms":60000},"timeout_ms":60000}`)
		done <- answer{st, string(raw)}
	}()
	time.Sleep(500 * time.Millisecond)
	killed := time.Now()
	c.kill()
	select {
	case a := <-done:
		if a.status != 409 || !strings.Contains(a.body, "device_offline") {
			t.Fatalf("the caller got %d %s", a.status, a.body)
		}
		t.Logf("the caller heard %s after the computer died", time.Since(killed).Round(time.Millisecond))
	case <-time.After(15 * time.Second):
		t.Fatal("the caller was left waiting after the computer died")
	}
	waitNoChromium(t, state, 10*time.Second)
}
