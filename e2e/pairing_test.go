package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// companionID pairs a computer with the box through the binaries and
// returns the ID it was given.
func pairComputer(t *testing.T, ns string, b *box, state string, extra ...string) string {
	t.Helper()
	code := b.pairCode(t)
	args := append([]string{"pair", "--state", state, "--code", code, "--name", "laptop"}, extra...)
	out := mustRun(t, ns, "lowkey-companion", args...)
	m := regexp.MustCompile(`This computer is (\S+) `).FindStringSubmatch(out)
	if !strings.Contains(out, "Paired with") || m == nil {
		t.Fatalf("pair said:\n%s", out)
	}
	return m[1]
}

func TestPairLinkRestartRevokeWithTheBinaries(t *testing.T) {
	b := startBox(t, "", t.TempDir(), "127.0.0.1:0", "--no-mdns")
	state := t.TempDir()
	id := pairComputer(t, "", b, state, "--hub", b.addr)
	if got := b.devices(t); len(got) != 1 || got[0].ID != id || got[0].Online != "no" {
		t.Fatalf("after pairing, before run: %+v", got)
	}
	c := start(t, "", "lowkey-companion", "run", "--state", state, "--no-mdns")
	b.waitOnline(t, id, 15*time.Second)
	if out := mustRun(t, "", "lowkey-companion", "status", "--state", state); !strings.Contains(out, "link:          online") {
		t.Fatalf("status:\n%s", out)
	}

	// sys.info over the link, through the HTTP API with the owner's token.
	token := strings.TrimSpace(mustRun(t, "", "lowkey", "token", "--data", b.data))
	sid := apiJSON(t, "POST", "http://"+b.addr+"/api/v1/sessions", token, `{"title":"e2e"}`, 201)["id"].(string)
	info := apiJSON(t, "POST", "http://"+b.addr+"/api/v1/sessions/"+sid+"/devices/"+id+"/actions", token, `{"action":"sys.info"}`, 200)
	if res := info["result"].(map[string]any); res["os"] == "" || res["version"] == "" {
		t.Fatalf("sys.info: %v", info)
	}

	// The box dies without warning, under calls, and comes back on the
	// same address: the calls fail while it is away and succeed again.
	stopCalls := make(chan struct{})
	type tally struct{ ok, failed, okAfter int }
	counted := make(chan tally, 1)
	restarted := make(chan struct{})
	callURL := base(b.addr) + "/api/v1/sessions/" + sid + "/devices/" + id + "/actions"
	go func(restarted chan struct{}) {
		var n tally
		after := false
		for i := 0; i < 2000; i++ {
			select {
			case <-stopCalls:
				counted <- n
				return
			case <-restarted:
				after, restarted = true, nil
			default:
			}
			st, _ := apiDoQuiet(callURL, token, `{"action":"sys.echo","args":{"bytes":1000}}`)
			switch {
			case st == 200 && after:
				n.okAfter++
			case st == 200:
				n.ok++
			default:
				n.failed++
			}
			time.Sleep(20 * time.Millisecond)
		}
		counted <- n
	}(restarted)
	time.Sleep(300 * time.Millisecond)
	b.kill()
	b = startBox(t, "", b.data, b.addr, "--no-mdns")
	back := b.waitOnline(t, id, 10*time.Second)
	close(restarted)
	time.Sleep(500 * time.Millisecond)
	close(stopCalls)
	if n := <-counted; n.ok == 0 || n.okAfter == 0 {
		t.Fatalf("calls around the restart: %+v", n)
	} else {
		t.Logf("calls around the restart: %d before, %d failed while the box was away, %d after", n.ok, n.failed, n.okAfter)
	}
	t.Logf("companion back %s after the box restarted", back)

	// Revoking cuts it off; it stops and says it was unpaired.
	revoked := time.Now()
	mustRun(t, "", "lowkey", "devices", "revoke", "--data", b.data, id)
	if !c.exited(2 * time.Second) {
		t.Fatal("the companion kept running after it was revoked")
	}
	t.Logf("companion stopped %s after the revoke", time.Since(revoked))
	c.waitFor(`unpaired`, time.Second)
	if c.cmd.ProcessState.ExitCode() != 1 {
		t.Fatalf("companion exit code %d", c.cmd.ProcessState.ExitCode())
	}
	// Run again: refused, with the same message.
	out, code := run(t, "", "lowkey-companion", "run", "--state", state, "--no-mdns")
	if code != 1 || !strings.Contains(out, "unpaired") {
		t.Fatalf("run after revoke: exit %d\n%s", code, out)
	}
	if ds := b.devices(t); len(ds) != 0 {
		t.Fatalf("revoked device still listed: %+v", ds)
	}
}

func TestCompanionUnpairCommand(t *testing.T) {
	b := startBox(t, "", t.TempDir(), "127.0.0.1:0", "--no-mdns")
	state := t.TempDir()
	pairComputer(t, "", b, state, "--hub", b.addr)
	out := mustRun(t, "", "lowkey-companion", "unpair", "--state", state)
	if !strings.Contains(out, "Unpaired") {
		t.Fatalf("unpair: %s", out)
	}
	if ds := b.devices(t); len(ds) != 0 {
		t.Fatalf("box still lists: %+v", ds)
	}
	out, code := run(t, "", "lowkey-companion", "status", "--state", state)
	if code != 1 || !strings.Contains(out, "not paired") {
		t.Fatalf("status after unpair: exit %d %s", code, out)
	}
	// Pairing again works with a fresh code.
	pairComputer(t, "", b, state, "--hub", b.addr)
}

func TestWrongExpiredAndExhaustedCodes(t *testing.T) {
	b := startBox(t, "", t.TempDir(), "127.0.0.1:0", "--no-mdns")
	state := t.TempDir()
	code := b.pairCode(t)
	wrong := "2468-1357"
	if code == wrong {
		wrong = "1357-2468"
	}
	out, exit := run(t, "", "lowkey-companion", "pair", "--state", state, "--hub", b.addr, "--code", wrong)
	if exit != 1 || !strings.Contains(out, "pairing code did not match") {
		t.Fatalf("wrong code: exit %d\n%s", exit, out)
	}
	b.waitFor(`pairing attempt failed.*did not match`, 2*time.Second)
	// Input that is not a code is refused before anything is sent.
	out, exit = run(t, "", "lowkey-companion", "pair", "--state", state, "--hub", b.addr, "--code", "12-34")
	if exit != 1 || !strings.Contains(out, "8 digits") {
		t.Fatalf("malformed code: exit %d\n%s", exit, out)
	}

	// An expired code says so on both sides.
	code = b.pairCode(t, "--ttl", "1s")
	time.Sleep(1500 * time.Millisecond)
	out, exit = run(t, "", "lowkey-companion", "pair", "--state", state, "--hub", b.addr, "--code", code)
	if exit != 1 || !strings.Contains(out, "expired") {
		t.Fatalf("expired code: exit %d\n%s", exit, out)
	}
	b.waitFor(`pairing attempt failed.*expired`, 2*time.Second)

	// Twenty wrong guesses close the window: the right code no longer works.
	code = b.pairCode(t)
	for i := range 20 {
		guess := "1111-2222"
		if code == guess {
			guess = "3333-4444"
		}
		if out, exit := run(t, "", "lowkey-companion", "pair", "--state", state, "--hub", b.addr, "--code", guess); exit != 1 {
			t.Fatalf("guess %d: exit %d\n%s", i, exit, out)
		}
	}
	out, exit = run(t, "", "lowkey-companion", "pair", "--state", state, "--hub", b.addr, "--code", code)
	if exit != 1 || !strings.Contains(out, "closed") {
		t.Fatalf("right code after 20 failures: exit %d\n%s", exit, out)
	}
	// A fresh window from the box works.
	pairComputer(t, "", b, state, "--hub", b.addr)
}

func TestAdminCommandsWithoutAHub(t *testing.T) {
	data := t.TempDir()
	for _, args := range [][]string{
		{"devices", "--data", data},
		{"pair-code", "--data", data},
		{"token", "--data", data},
		{"devices", "revoke", "--data", data, "x"},
	} {
		out, code := run(t, "", "lowkey", args...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if code != 3 || len(lines) != 1 || !strings.Contains(out, "no hub") {
			t.Fatalf("lowkey %v: exit %d\n%s", args, code, out)
		}
	}
	out, code := run(t, "", "lowkey-companion", "run", "--state", t.TempDir())
	if code != 1 || !strings.Contains(out, "not paired") {
		t.Fatalf("run unpaired: exit %d\n%s", code, out)
	}
}

func apiDo(t *testing.T, method, url, token, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}

func apiJSON(t *testing.T, method, url, token, body string, want int) map[string]any {
	t.Helper()
	status, raw := apiDo(t, method, url, token, body)
	if status != want {
		t.Fatalf("%s %s: %d %s", method, url, status, raw)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	return m
}

func base(addr string) string { return "http://" + addr }

// apiDoQuiet is apiDo for goroutines: errors are a status of 0.
func apiDoQuiet(url, token, body string) (int, []byte) {
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}
