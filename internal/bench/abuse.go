package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/lowkeyhq/lowkey/companion"
	"github.com/lowkeyhq/lowkey/hub"
	"github.com/lowkeyhq/lowkey/internal/admin"
)

// AbuseReport is "lowkey bench abuse --json": each reproduced attack on
// a box run as its own process, with what it cost the box and whether
// the box went on serving the people meant to use it.
type AbuseReport struct {
	IdleRSSMiB             float64         `json:"idle_rss_mib"`
	Attacks                []AttackFigures `json:"attacks"`
	PeakRSSMiB             float64         `json:"peak_rss_mib"`
	WrongPasswordsAccepted int             `json:"wrong_passwords_accepted"`
}

// AttackFigures is one attack's figures.
type AttackFigures struct {
	Name           string  `json:"name"`
	PeakRSSMiB     float64 `json:"peak_rss_mib"`
	PeakGoroutines int     `json:"peak_goroutines"`
	LegitP99ms     float64 `json:"legit_p99_ms"`
	LegitCalls     int     `json:"legit_calls"`
	LegitErrors    int     `json:"legit_errors"`
	Outcome        string  `json:"outcome"`
}

// abuseBox is a "lowkey hub" process under attack, with one companion
// linked to it from this process.
type abuseBox struct {
	cmd    *exec.Cmd
	base   string
	token  string
	data   string
	device string
	sid    string
}

// Abuse runs the attacks reported against the box, each for a bounded
// time, against a hub started from bin on loopback.
func Abuse(ctx context.Context, bin string, progress io.Writer) (*AbuseReport, error) {
	dir, err := os.MkdirTemp("", "lowkey-abuse-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	b, stop, err := startAbuseBox(ctx, bin, dir)
	if err != nil {
		return nil, err
	}
	defer stop()
	rep := &AbuseReport{IdleRSSMiB: rssMiB(b.cmd.Process.Pid)}
	attacks := []struct {
		name string
		run  func(b *abuseBox) (string, error)
	}{
		{"login_with_20mb_names", attackBigLogins},
		{"59_wrong_passwords_at_once", func(b *abuseBox) (string, error) { return attackLoginBurst(b, rep) }},
		{"sys_echo_64mib_x6", attackEcho},
		{"agent_prints_100_lines_of_1mb", attackFlood},
		{"pairing_hello_then_silence", attackPairStall},
	}
	for _, a := range attacks {
		fmt.Fprintf(progress, "attack: %s\n", a.name)
		fig, err := b.measure(ctx, a.name, a.run)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", a.name, err)
		}
		rep.Attacks = append(rep.Attacks, fig)
		rep.PeakRSSMiB = max(rep.PeakRSSMiB, fig.PeakRSSMiB)
	}
	return rep, nil
}

func startAbuseBox(ctx context.Context, bin, dir string) (*abuseBox, func(), error) {
	data := filepath.Join(dir, "box")
	cmd := exec.CommandContext(ctx, bin, "hub", "--data", data, "--listen", "127.0.0.1:0", "--pages-listen=", "--no-mdns")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	b := &abuseBox{cmd: cmd, data: data}
	var runners sync.WaitGroup
	rctx, cancel := context.WithCancel(context.Background())
	stop := func() {
		cancel()
		runners.Wait()
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	ready := regexp.MustCompile(`Lowkey hub is ready: (http://\S+)`)
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if m := ready.FindStringSubmatch(sc.Text()); m != nil {
			b.base = m[1]
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	if b.base == "" {
		stop()
		return nil, nil, fmt.Errorf("the hub did not start")
	}
	adm := admin.New(hub.SocketPath(data))
	var tok struct{ Token string }
	if err := adm.Do("GET", "/admin/token", nil, &tok); err != nil {
		stop()
		return nil, nil, err
	}
	b.token = tok.Token
	var code struct{ Code string }
	if err := adm.Do("POST", "/admin/pair-code", nil, &code); err != nil {
		stop()
		return nil, nil, err
	}
	st := companion.State{Dir: filepath.Join(dir, "laptop")}
	if _, err := companion.Pair(ctx, st, strings.TrimPrefix(b.base, "http://"), code.Code, "laptop"); err != nil {
		stop()
		return nil, nil, fmt.Errorf("pairing: %w", err)
	}
	id, err := st.Identity()
	if err != nil {
		stop()
		return nil, nil, err
	}
	b.device = id.ID()
	r := companion.NewRunner(companion.Config{State: st, NoMDNS: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	runners.Add(1)
	go func() { defer runners.Done(); _ = r.Run(rctx) }()
	select {
	case <-r.LinkUp():
	case <-time.After(30 * time.Second):
		stop()
		return nil, nil, fmt.Errorf("the companion did not link: %+v", r.Status())
	}
	var s struct{ ID string }
	if _, err := b.call("POST", "/api/v1/sessions", `{}`, &s); err != nil {
		stop()
		return nil, nil, err
	}
	b.sid = s.ID
	return b, stop, nil
}

// call makes one API request as the owner.
func (b *abuseBox) call(method, path, body string, out any) (int, error) {
	req, err := http.NewRequest(method, b.base+path, strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+b.token)
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, err
		}
	}
	return resp.StatusCode, nil
}

// measure runs one attack while sampling the hub's memory and goroutines
// and timing the calls a person makes meanwhile: an API read and a small
// call to the computer, every 20 ms.
func (b *abuseBox) measure(ctx context.Context, name string, attack func(*abuseBox) (string, error)) (AttackFigures, error) {
	fig := AttackFigures{Name: name}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var lat []time.Duration
	wg.Add(2)
	go func() {
		defer wg.Done()
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			rss := rssMiB(b.cmd.Process.Pid)
			mu.Lock()
			fig.PeakRSSMiB = max(fig.PeakRSSMiB, rss)
			mu.Unlock()
			if n%10 == 0 {
				if g := b.goroutines(); g > 0 {
					mu.Lock()
					fig.PeakGoroutines = max(fig.PeakGoroutines, g)
					mu.Unlock()
				}
			}
		}
	}()
	go func() {
		defer wg.Done()
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			start := time.Now()
			var status int
			var err error
			if i%2 == 0 {
				status, err = b.call("GET", "/api/v1/devices", "", nil)
			} else {
				status, err = b.call("POST", "/api/v1/sessions/"+b.sid+"/devices/"+b.device+"/actions", `{"action":"sys.echo","args":{"bytes":100}}`, nil)
			}
			mu.Lock()
			fig.LegitCalls++
			if err != nil || status != http.StatusOK {
				fig.LegitErrors++
			} else {
				lat = append(lat, time.Since(start))
			}
			mu.Unlock()
		}
	}()
	outcome, err := attack(b)
	close(stop)
	wg.Wait()
	fig.Outcome = outcome
	fig.LegitP99ms = ms(percentile(lat, 0.99))
	return fig, err
}

func (b *abuseBox) goroutines() int { return b.metric("go_goroutines") }

// metric reads one gauge from the hub's /metrics (0 when absent).
func (b *abuseBox) metric(name string) int {
	req, err := http.NewRequest("GET", b.base+"/metrics", nil)
	if err != nil {
		return 0
	}
	req.Header.Set("Authorization", "Bearer "+b.token)
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	v, err := Metric(resp.Body, name)
	if err != nil {
		return 0
	}
	return int(v)
}

// Metric is the value of the unlabelled sample name in Prometheus text.
func Metric(r io.Reader, name string) (float64, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return 0, err
	}
	f, ok := fams[name]
	if !ok || len(f.Metric) == 0 {
		return 0, fmt.Errorf("no %s in the metrics", name)
	}
	m := f.Metric[0]
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue(), nil
	case m.Counter != nil:
		return m.Counter.GetValue(), nil
	}
	return m.GetUntyped().GetValue(), nil
}

// rssMiB is a process's resident memory now.
func rssMiB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}

// post sends body to path, unauthenticated, and says the status.
func post(url string, body io.Reader) int {
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Post(url, "application/json", body)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// statuses runs n copies of f at once and counts the statuses.
func statuses(n int, f func() int) map[int]int {
	var mu sync.Mutex
	out := map[int]int{}
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := f()
			mu.Lock()
			out[s]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

func attackBigLogins(b *abuseBox) (string, error) {
	name := bytes.Repeat([]byte("x"), 20<<20)
	got := statuses(5, func() int {
		body := io.MultiReader(strings.NewReader(`{"name":"`), bytes.NewReader(name), strings.NewReader(`","password":"p"}`))
		return post(b.base+"/api/v1/login", body)
	})
	return fmt.Sprintf("statuses %v", got), nil
}

func attackLoginBurst(b *abuseBox, rep *AbuseReport) (string, error) {
	adm := admin.New(hub.SocketPath(b.data))
	var setup struct{ URL string }
	if err := adm.Do("GET", "/admin/setup", nil, &setup); err != nil {
		return "", err
	}
	if _, tok, ok := strings.Cut(setup.URL, "#/setup/"); ok {
		body, _ := json.Marshal(map[string]string{"token": tok, "name": "owner", "password": "the-right-password"})
		if s := post(b.base+"/api/v1/setup", bytes.NewReader(body)); s != http.StatusOK {
			return "", fmt.Errorf("setting up the owner: %d", s)
		}
	}
	got := statuses(59, func() int {
		return post(b.base+"/api/v1/login", strings.NewReader(`{"name":"owner","password":"a-wrong-password"}`))
	})
	rep.WrongPasswordsAccepted = got[http.StatusOK]
	right := post(b.base+"/api/v1/login", strings.NewReader(`{"name":"owner","password":"the-right-password"}`))
	return fmt.Sprintf("wrong passwords answered %v; the right one after them %d", got, right), nil
}

func attackEcho(b *abuseBox) (string, error) {
	act := func(n int) func() int {
		return func() int {
			s, _ := b.call("POST", "/api/v1/sessions/"+b.sid+"/devices/"+b.device+"/actions", fmt.Sprintf(`{"action":"sys.echo","args":{"bytes":%d}}`, n), nil)
			return s
		}
	}
	big := statuses(6, act(64<<20))
	capped := statuses(6, act(8<<20))
	return fmt.Sprintf("64 MiB x6: %v; 8 MiB (the cap) x6: %v", big, capped), nil
}

func attackFlood(b *abuseBox) (string, error) {
	var s struct{ ID string }
	if _, err := b.call("POST", "/api/v1/sessions", `{"agent":"exec:head -c 100000000 /dev/zero | tr '\\000' x | fold -w 1000000"}`, &s); err != nil {
		return "", err
	}
	var t struct {
		TurnID string `json:"turn_id"`
	}
	if _, err := b.call("POST", "/api/v1/sessions/"+s.ID+"/messages", `{"text":"flood"}`, &t); err != nil {
		return "", err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		var view struct {
			Turns []struct{ ID, State, Reply string }
		}
		if _, err := b.call("GET", "/api/v1/sessions/"+s.ID, "", &view); err != nil {
			return "", err
		}
		for _, tr := range view.Turns {
			if tr.ID == t.TurnID && tr.State != "running" && tr.State != "stalled" {
				return fmt.Sprintf("turn %s, reply %d bytes", tr.State, len(tr.Reply)), nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return "turn still running after 2 minutes", nil
}

func attackPairStall(b *abuseBox) (string, error) {
	var code struct{ Code string }
	if err := admin.New(hub.SocketPath(b.data)).Do("POST", "/admin/pair-code", nil, &code); err != nil {
		return "", err
	}
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(b.base, "http")+"/api/v1/pair", nil)
	if err != nil {
		return "", err
	}
	defer ws.Close()
	if err := ws.WriteJSON(map[string]string{"type": "hello", "id": "stalling", "fingerprint": "none"}); err != nil {
		return "", err
	}
	before := b.metric("lowkey_pairing_failures")
	start := time.Now()
	_ = ws.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			return fmt.Sprintf("the box let go of the silent exchange after %.1f s; failed attempts %d -> %d",
				time.Since(start).Seconds(), before, b.metric("lowkey_pairing_failures")), nil
		}
	}
}
