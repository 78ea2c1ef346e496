package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/lowkeyhq/lowkey/hub"
	"github.com/lowkeyhq/lowkey/internal/local"
)

// SessionsReport is "lowkey bench sessions --json".
type SessionsReport struct {
	ForkExecP50MS  float64 `json:"fork_exec_p50_ms"`
	TurnStartP50MS float64 `json:"turn_start_p50_ms"`
	StartRatio     float64 `json:"turn_start_ratio"`
	Kill100MS      float64 `json:"kill_100_ms"`
	Budget         string  `json:"budget"`
	Rounds         int     `json:"rounds"`
}

// Sessions compares starting a trivial worker with plain fork/exec and as
// a turn in a fresh session (its own memory group), and times killing a
// session that runs 100 processes.
func Sessions(ctx context.Context, rounds int, progress io.Writer) (*SessionsReport, error) {
	if rounds <= 0 {
		rounds = 20
	}
	dir, err := os.MkdirTemp("", "lowkey-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	// The worker writes a mark and exits: what is timed is the start.
	worker := filepath.Join(dir, "worker.sh")
	if err := os.WriteFile(worker, []byte("#!/bin/sh\nread -r _\necho started\n"), 0o755); err != nil {
		return nil, err
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	h, err := hub.Start(hub.Config{DataDir: filepath.Join(dir, "box"), Listen: "127.0.0.1:0", NoMDNS: true, Logger: quiet})
	if err != nil {
		return nil, err
	}
	defer h.Close()
	c := local.Client{Base: h.URL(), Token: h.Token()}
	rep := &SessionsReport{Rounds: rounds}
	// Rounds alternate, so a busy moment on the machine weighs on both.
	fmt.Fprintln(progress, "plain fork/exec and turns (each in a fresh session), alternating")
	var plain, turns []time.Duration
	for range rounds {
		cmd := exec.Command(worker)
		cmd.Stdin = strings.NewReader("{}\n")
		out, _ := cmd.StdoutPipe()
		t := time.Now()
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		buf := make([]byte, 8)
		_, _ = out.Read(buf)
		plain = append(plain, time.Since(t))
		_ = cmd.Wait()

		var s struct{ ID string }
		if err := c.Do("POST", "/api/v1/sessions", map[string]string{"agent": "exec:" + worker}, &s); err != nil {
			return nil, err
		}
		d, err := timeTurn(ctx, c, s.ID)
		if err != nil {
			return nil, err
		}
		turns = append(turns, d)
		if rep.Budget == "" {
			var info struct{ Budget string }
			_ = c.Do("GET", "/api/v1/sessions/"+s.ID, nil, &info)
			rep.Budget = info.Budget
		}
	}
	rep.ForkExecP50MS, rep.TurnStartP50MS = ms(percentile(plain, .5)), ms(percentile(turns, .5))
	rep.StartRatio = rep.TurnStartP50MS / rep.ForkExecP50MS

	fmt.Fprintln(progress, "kill a session running 100 processes")
	var s struct{ ID string }
	if err := c.Do("POST", "/api/v1/sessions", map[string]string{}, &s); err != nil {
		return nil, err
	}
	if err := c.Do("POST", "/api/v1/sessions/"+s.ID+"/messages", map[string]string{"text": "start for i in $(seq 100); do sleep 377 & done; wait"}, nil); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(20 * time.Second)
	for countSleepers() < 100 {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the 100 processes did not start (%d)", countSleepers())
		}
		time.Sleep(20 * time.Millisecond)
	}
	t := time.Now()
	if err := c.Do("POST", "/api/v1/sessions/"+s.ID+"/kill", nil, nil); err != nil {
		return nil, err
	}
	rep.Kill100MS = ms(time.Since(t))
	if n := countSleepers(); n > 0 {
		return nil, fmt.Errorf("%d processes left after the kill", n)
	}
	return rep, nil
}

// timeTurn measures, on the box's clock, from the turn's start (the
// session's group, the credentials file, the spawn) to the worker's first
// output.
func timeTurn(ctx context.Context, c local.Client, sid string) (time.Duration, error) {
	var turn struct {
		TurnID string `json:"turn_id"`
	}
	if err := c.Do("POST", "/api/v1/sessions/"+sid+"/messages", map[string]string{"text": "go"}, &turn); err != nil {
		return 0, err
	}
	u := "ws" + strings.TrimPrefix(c.Base, "http") + "/api/v1/sessions/" + sid + "/events?since=0"
	ws, _, err := websocket.DefaultDialer.DialContext(ctx, u, http.Header{"Authorization": {"Bearer " + c.Token}})
	if err != nil {
		return 0, err
	}
	defer ws.Close()
	var started, output time.Time
	for {
		_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		var e struct {
			Type string
			Turn string
			Time time.Time
			Data struct{ State string }
		}
		if err := ws.ReadJSON(&e); err != nil {
			return 0, err
		}
		if e.Turn != turn.TurnID {
			continue
		}
		switch {
		case e.Type == "turn.state" && e.Data.State == "running":
			started = e.Time
		case e.Type == "turn.output" && output.IsZero():
			output = e.Time
		case e.Type == "turn.state" && e.Data.State != "running":
			if output.IsZero() || started.IsZero() {
				return 0, fmt.Errorf("the bench turn ended %s without output", e.Data.State)
			}
			return output.Sub(started), nil
		}
	}
}

func countSleepers() int {
	out, _ := exec.Command("pgrep", "-c", "-f", "^sleep 377$").Output()
	var n int
	fmt.Sscan(strings.TrimSpace(string(out)), &n)
	return n
}
