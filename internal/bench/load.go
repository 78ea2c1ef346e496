package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/lowkeyhq/lowkey/companion"
	"github.com/lowkeyhq/lowkey/hub"
	"github.com/lowkeyhq/lowkey/internal/admin"
	"github.com/lowkeyhq/lowkey/internal/local"
)

// LoadReport is "lowkey bench load --json". Memory and goroutines are of
// the whole process: the box and every companion run in it.
type LoadReport struct {
	Companions      int     `json:"companions"`
	Sessions        int     `json:"sessions"`
	IdleHeapMiB     float64 `json:"idle_heap_mib"`
	IdleGoroutines  int     `json:"idle_goroutines"`
	LoadHeapMiB     float64 `json:"load_heap_mib"`
	LoadGoroutines  int     `json:"load_goroutines"`
	RPCP50ms        float64 `json:"rpc_p50_ms"`
	RPCP99ms        float64 `json:"rpc_p99_ms"`
	APIP50ms        float64 `json:"api_p50_ms"`
	APIP99ms        float64 `json:"api_p99_ms"`
	TurnsDone       int     `json:"turns_done"`
	AfterHeapMiB    float64 `json:"after_heap_mib"`
	AfterGoroutines int     `json:"after_goroutines"`
	Errors          int     `json:"errors"`
}

func heapMiB() float64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapInuse) / (1 << 20)
}

// settle waits for goroutines to wind down after a change.
func settle(limit int, d time.Duration) int {
	deadline := time.Now().Add(d)
	for {
		n := runtime.NumGoroutine()
		if n <= limit || time.Now().After(deadline) {
			return n
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Load links many companions to one box and runs sessions' turns while
// measuring small calls and the API.
func Load(ctx context.Context, companions, sessions int, progress io.Writer) (*LoadReport, error) {
	dir, err := os.MkdirTemp("", "lowkey-load-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	h, err := hub.Start(hub.Config{DataDir: filepath.Join(dir, "box"), Listen: "127.0.0.1:0", NoMDNS: true, LoopbackICE: true, Logger: quiet})
	if err != nil {
		return nil, err
	}
	defer h.Close()
	rep := &LoadReport{Companions: companions, Sessions: sessions}
	rep.IdleGoroutines, rep.IdleHeapMiB = runtime.NumGoroutine(), heapMiB()
	adm := admin.New(hub.SocketPath(filepath.Join(dir, "box")))
	addr := strings.TrimPrefix(h.URL(), "http://")

	fmt.Fprintf(progress, "pairing and linking %d companions\n", companions)
	var (
		ids     []string
		runners []*companion.Runner
		stops   []context.CancelFunc
		wg      sync.WaitGroup
	)
	for i := range companions {
		var code struct{ Code string }
		if err := adm.Do("POST", "/admin/pair-code", nil, &code); err != nil {
			return nil, err
		}
		st := companion.State{Dir: filepath.Join(dir, fmt.Sprintf("c%02d", i))}
		if _, err := companion.Pair(ctx, st, addr, code.Code, fmt.Sprintf("pc-%02d", i)); err != nil {
			return nil, fmt.Errorf("pairing companion %d: %w", i, err)
		}
		id, _ := st.Identity()
		ids = append(ids, id.ID())
		r := companion.NewRunner(companion.Config{State: st, LoopbackICE: true, NoMDNS: true, Logger: quiet})
		rctx, stop := context.WithCancel(context.Background())
		stops = append(stops, stop)
		runners = append(runners, r)
		wg.Add(1)
		go func() { defer wg.Done(); _ = r.Run(rctx) }()
	}
	stopAll := func() {
		for _, s := range stops {
			s()
		}
		wg.Wait()
	}
	defer stopAll()
	for i, r := range runners {
		select {
		case <-r.LinkUp():
		case <-time.After(60 * time.Second):
			return nil, fmt.Errorf("companion %d did not link in a minute: %+v", i, r.Status())
		}
	}
	fmt.Fprintf(progress, "%d companions linked\n", companions)
	c := local.Client{Base: h.URL(), Token: h.Token()}
	fmt.Fprintf(progress, "%d sessions running turns while calls and API requests are timed\n", sessions)
	var sids []string
	for range sessions {
		var s struct{ ID string }
		if err := c.Do("POST", "/api/v1/sessions", map[string]string{}, &s); err != nil {
			return nil, err
		}
		sids = append(sids, s.ID)
	}
	var (
		mu       sync.Mutex
		rpcs     []time.Duration
		apis     []time.Duration
		load     sync.WaitGroup
		loadStop = make(chan struct{})
	)
	fail := func() { mu.Lock(); rep.Errors++; mu.Unlock() }
	// Turns: each session runs turns back to back.
	for _, sid := range sids {
		load.Add(1)
		go func() {
			defer load.Done()
			for i := 0; i < 100; i++ {
				select {
				case <-loadStop:
					return
				default:
				}
				var t struct {
					TurnID string `json:"turn_id"`
				}
				if err := c.Do("POST", "/api/v1/sessions/"+sid+"/messages", map[string]string{"text": "run sleep 0.2; echo done"}, &t); err != nil {
					time.Sleep(50 * time.Millisecond)
					continue
				}
				for {
					var s struct {
						Turns []struct{ ID, State string }
					}
					if err := c.Do("GET", "/api/v1/sessions/"+sid, nil, &s); err != nil {
						fail()
						break
					}
					done := false
					for _, tr := range s.Turns {
						if tr.ID == t.TurnID && tr.State != "running" && tr.State != "stalled" {
							done = true
							mu.Lock()
							if tr.State == "done" {
								rep.TurnsDone++
							} else {
								rep.Errors++
							}
							mu.Unlock()
						}
					}
					if done {
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}
	// Small calls to every computer, and API requests, at a steady pace.
	for w := range 4 {
		load.Add(1)
		go func() {
			defer load.Done()
			for i := 0; i < 250; i++ {
				dev := ids[(w*250+i)%len(ids)]
				t := time.Now()
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := h.Call(cctx, dev, "sys.echo", "", []byte(`{"bytes":100}`))
				cancel()
				if err != nil {
					fail()
				} else {
					mu.Lock()
					rpcs = append(rpcs, time.Since(t))
					mu.Unlock()
				}
				t = time.Now()
				req, _ := http.NewRequest("GET", h.URL()+"/api/v1/devices", nil)
				req.Header.Set("Authorization", "Bearer "+h.Token())
				resp, err := http.DefaultClient.Do(req)
				if err != nil || resp.StatusCode != 200 {
					fail()
				}
				if resp != nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				mu.Lock()
				apis = append(apis, time.Since(t))
				mu.Unlock()
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	time.Sleep(3 * time.Second)
	rep.LoadGoroutines, rep.LoadHeapMiB = runtime.NumGoroutine(), heapMiB()
	// The call and API loops end by count; the turns are stopped then.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		mu.Lock()
		n := len(rpcs) + len(apis)
		mu.Unlock()
		if n >= 2000-rep.Errors || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	close(loadStop)
	load.Wait()
	rep.RPCP50ms, rep.RPCP99ms = ms(percentile(rpcs, .5)), ms(percentile(rpcs, .99))
	rep.APIP50ms, rep.APIP99ms = ms(percentile(apis, .5)), ms(percentile(apis, .99))

	fmt.Fprintln(progress, "disconnecting everything")
	stopAll()
	for _, sid := range sids {
		_ = c.Do("POST", "/api/v1/sessions/"+sid+"/kill", nil, nil)
	}
	http.DefaultClient.CloseIdleConnections()
	rep.AfterGoroutines = settle(rep.IdleGoroutines+10, 15*time.Second)
	rep.AfterHeapMiB = heapMiB()
	return rep, nil
}
