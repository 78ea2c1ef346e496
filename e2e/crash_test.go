package e2e

import (
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestKillNineLosesNothingAcknowledged writes through the API while the
// box is killed without warning; after a restart every write it answered
// is there. Then a backup of the live box restores into a new one.
func TestKillNineLosesNothingAcknowledged(t *testing.T) {
	data := t.TempDir()
	b := startBox(t, "", data, "127.0.0.1:0")
	token := strings.TrimSpace(mustRun(t, "", "lowkey", "token", "--data", data))
	base := "http://" + b.addr
	type ack struct{ session, turn string }
	var (
		mu    sync.Mutex
		acked []ack
		stop  = make(chan struct{})
		wg    sync.WaitGroup
	)
	client := &http.Client{Timeout: 5 * time.Second}
	post := func(path, body string) (int, map[string]any) {
		req, _ := http.NewRequest("POST", base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return 0, nil
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	// Work that would outlive the box: a job still running when it dies.
	if st, m := post("/api/v1/sessions", `{"title":"left running"}`); st != 201 {
		t.Fatalf("session: %d", st)
	} else if st, _ := post("/api/v1/sessions/"+m["id"].(string)+"/messages", `{"text":"start sleep 3172"}`); st != 201 {
		t.Fatalf("message: %d", st)
	}
	for deadline := time.Now().Add(10 * time.Second); sleepers("3172") == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the job did not start")
		}
	}
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				select {
				case <-stop:
					return
				default:
				}
				st, m := post("/api/v1/sessions", `{"title":"w`+string(rune('0'+w))+`"}`)
				if st != 201 {
					continue
				}
				a := ack{session: m["id"].(string)}
				if st, m := post("/api/v1/sessions/"+a.session+"/messages", `{"text":"echo hello"}`); st == 201 {
					a.turn, _ = m["turn_id"].(string)
				}
				mu.Lock()
				acked = append(acked, a)
				mu.Unlock()
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	b.kill() // no warning, writes in flight
	close(stop)
	wg.Wait()
	if len(acked) < 10 {
		t.Fatalf("only %d writes were acknowledged before the kill", len(acked))
	}
	b = startBox(t, "", data, b.addr)
	// The restarted box stops what its earlier life left running, and
	// leaves no credentials file of it.
	for deadline := time.Now().Add(5 * time.Second); sleepers("3172") > 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a job of the box that died is still running after the restart")
		}
	}
	if left, _ := filepath.Glob("/dev/shm/lowkey-box-*/*/credentials.json"); len(left) > 0 {
		t.Fatalf("credentials files outlived the box that made them: %v", left)
	}
	get := func(base, path string) (int, map[string]any) {
		req, _ := http.NewRequest("GET", base+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	lost := 0
	for _, a := range acked {
		st, m := get(base, "/api/v1/sessions/"+a.session)
		if st != 200 {
			lost++
			continue
		}
		if a.turn != "" {
			found := false
			for _, tr := range m["turns"].([]any) {
				found = found || tr.(map[string]any)["id"] == a.turn
			}
			if !found {
				lost++
			}
		}
	}
	// A started turn's message is in its conversation's replay.
	checked := 0
	for _, a := range acked {
		if a.turn == "" || checked == 20 {
			continue
		}
		checked++
		if !replayHasMessage(t, b.addr, token, a.session, a.turn) {
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged writes are gone after kill -9", lost, len(acked))
	}
	t.Logf("%d acknowledged sessions (with their turns, %d replays checked) survived kill -9", len(acked), checked)

	// Back the live box up, restore it elsewhere: the same box.
	file := filepath.Join(t.TempDir(), "box.backup")
	if out := mustRun(t, "", "lowkey", "backup", "--data", data, file); !strings.Contains(out, "backed up") {
		t.Fatalf("backup: %s", out)
	}
	// A backup cut short (a full disk, a copy interrupted) is refused,
	// and nothing is restored from it.
	whole, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(t.TempDir(), "short.backup")
	if err := os.WriteFile(short, whole[:len(whole)-1536], 0o600); err != nil {
		t.Fatal(err)
	}
	partial := filepath.Join(t.TempDir(), "partial")
	if out, code := run(t, "", "lowkey", "restore", "--data", partial, short); code != 1 || !strings.Contains(out, "not restored") {
		t.Fatalf("restore from a backup cut short: %d %s", code, out)
	}
	if _, err := os.Stat(filepath.Join(partial, "identity.json")); !os.IsNotExist(err) {
		t.Fatal("a backup cut short was partly restored")
	}
	restored := filepath.Join(t.TempDir(), "restored")
	mustRun(t, "", "lowkey", "restore", "--data", restored, file)
	if out, code := run(t, "", "lowkey", "restore", "--data", restored, file); code != 1 || !strings.Contains(out, "already holds a box") {
		t.Fatalf("restore over a box: %d %s", code, out)
	}
	b2 := startBox(t, "", restored, "127.0.0.1:0")
	if tok := strings.TrimSpace(mustRun(t, "", "lowkey", "token", "--data", restored)); tok != token {
		t.Fatal("the restored box has another token")
	}
	idOf := func(out string) string {
		return regexp.MustCompile(`hub ready" url=\S+ id=(\S+)`).FindStringSubmatch(out)[1]
	}
	if idOf(b.out.String()) != idOf(b2.out.String()) {
		t.Fatal("the restored box has another identity")
	}
	for _, a := range acked[:min(len(acked), 20)] {
		if st, _ := get("http://"+b2.addr, "/api/v1/sessions/"+a.session); st != 200 {
			t.Fatalf("session %s missing from the restored box", a.session)
		}
	}
	_ = os.Remove(file)
}

// replayHasMessage reads a conversation's events from the start and says
// whether the person's message of turn is among them.
func replayHasMessage(t *testing.T, addr, token, session, turn string) bool {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/api/v1/sessions/"+session+"/events?since=0", http.Header{"Authorization": {"Bearer " + token}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	for {
		_ = ws.SetReadDeadline(time.Now().Add(2 * time.Second))
		var e struct {
			Type, Turn string
			Data       struct{ Role string }
		}
		if err := ws.ReadJSON(&e); err != nil {
			return false
		}
		if e.Type == "message" && e.Turn == turn && e.Data.Role == "user" {
			return true
		}
	}
}

// sleepers counts "sleep ARG" processes.
func sleepers(arg string) int {
	out, _ := exec.Command("pgrep", "-c", "-f", "^sleep "+arg+"$").Output()
	n, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return n
}

// As reported, a full disk: the box's store writes through memory-mapped
// files, and a write there on a disk with no room kills the process. Now
// the box refuses changes while its disk is nearly full (507, with what
// to do), keeps answering reads, is still alive after hundreds of
// refused writes, and carries on once space is back, with everything it
// acknowledged before.
func TestFullDiskIsRefusedAndRecovered(t *testing.T) {
	needRoot(t, "to mount a small disk for the box")
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=200m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", mnt).Run() })
	data := filepath.Join(mnt, "box")
	b := startBox(t, "", data, "127.0.0.1:0", "--no-mdns")
	token := strings.TrimSpace(mustRun(t, "", "lowkey", "token", "--data", data))
	before := apiJSON(t, "POST", base(b.addr)+"/api/v1/sessions", token, `{"title":"before"}`, http.StatusCreated)["id"].(string)

	filler := filepath.Join(mnt, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for {
		if _, err := f.Write(chunk); err != nil {
			break // the disk is full
		}
	}
	f.Close()
	title := strings.Repeat("x", 200)
	for i := range 300 {
		code, raw := apiDo(t, "POST", base(b.addr)+"/api/v1/sessions", token, `{"title":"`+title+`"}`)
		if code != http.StatusInsufficientStorage || !strings.Contains(string(raw), "free some space") {
			t.Fatalf("write %d on a full disk: %d %s", i, code, raw)
		}
	}
	if code, raw := apiDo(t, "GET", base(b.addr)+"/api/v1/sessions/"+before, token, ""); code != http.StatusOK {
		t.Fatalf("a read on a full disk: %d %s", code, raw)
	}
	if b.exited(0) {
		t.Fatal("the box died on a full disk")
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	apiJSON(t, "POST", base(b.addr)+"/api/v1/sessions", token, `{"title":"after"}`, http.StatusCreated)
	if code, _ := apiDo(t, "GET", base(b.addr)+"/api/v1/sessions/"+before, token, ""); code != http.StatusOK {
		t.Fatal("a session acknowledged before the disk filled is gone")
	}
}

// kill -9 at random points of a busy box, three times over: after each
// restart every write any of its lives acknowledged is there.
func TestKillNineAtRandomPointsKeepsEveryAcknowledgedWrite(t *testing.T) {
	data := t.TempDir()
	b := startBox(t, "", data, "127.0.0.1:0")
	token := strings.TrimSpace(mustRun(t, "", "lowkey", "token", "--data", data))
	client := &http.Client{Timeout: 5 * time.Second}
	var acked []string
	for round := range 3 {
		var (
			mu   sync.Mutex
			wg   sync.WaitGroup
			stop = make(chan struct{})
		)
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 400; i++ {
					select {
					case <-stop:
						return
					default:
					}
					req, _ := http.NewRequest("POST", "http://"+b.addr+"/api/v1/sessions", strings.NewReader(`{"title":"round"}`))
					req.Header.Set("Authorization", "Bearer "+token)
					resp, err := client.Do(req)
					if err != nil {
						continue
					}
					var m struct{ ID string }
					derr := json.NewDecoder(resp.Body).Decode(&m)
					resp.Body.Close()
					if resp.StatusCode == http.StatusCreated && derr == nil {
						mu.Lock()
						acked = append(acked, m.ID)
						mu.Unlock()
					}
				}
			}()
		}
		time.Sleep(time.Duration(200+rand.IntN(1000)) * time.Millisecond)
		b.kill()
		close(stop)
		wg.Wait()
		b = startBox(t, "", data, b.addr)
		lost := 0
		for _, id := range acked {
			if code, _ := apiDo(t, "GET", "http://"+b.addr+"/api/v1/sessions/"+id, token, ""); code != http.StatusOK {
				lost++
			}
		}
		if lost > 0 {
			t.Fatalf("round %d: %d of %d acknowledged writes are gone", round, lost, len(acked))
		}
	}
	if len(acked) < 30 {
		t.Fatalf("only %d writes were acknowledged in three lives", len(acked))
	}
}
