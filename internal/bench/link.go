package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/lowkeyhq/lowkey/companion"
	"github.com/lowkeyhq/lowkey/devicectl"
	"github.com/lowkeyhq/lowkey/hub"
	"github.com/lowkeyhq/lowkey/internal/local"
)

// LinkReport is "lowkey bench link --json".
type LinkReport struct {
	RawRTTP50us          float64 `json:"raw_rtt_p50_us"`
	RawRTTP99us          float64 `json:"raw_rtt_p99_us"`
	LinkRTTP50us         float64 `json:"link_rtt_p50_us"`
	LinkRTTP99us         float64 `json:"link_rtt_p99_us"`
	Raw5MiBms            float64 `json:"raw_5mib_ms"`
	Link5MiBms           float64 `json:"link_5mib_ms"`
	LinkRPCDuringBulkP50 float64 `json:"link_rpc_during_bulk_p50_ms"`
	LinkRPCDuringBulkP99 float64 `json:"link_rpc_during_bulk_p99_ms"`
	// Isolated: each small call after a quiet spell, so that it meets a
	// transfer moving at full pace (the link has not yet made room for
	// small calls).
	LinkRPCIsolatedP50 float64 `json:"link_rpc_isolated_during_bulk_p50_ms"`
	LinkRPCIsolatedMax float64 `json:"link_rpc_isolated_during_bulk_max_ms"`
	RTTRatio           float64 `json:"rtt_p50_ratio"`
	BulkRatio          float64 `json:"bulk_5mib_ratio"`
	// With the relayed path: a second computer that may only be relayed,
	// through the box's own relay (TURN over TCP on its web port).
	RelayedPath      string  `json:"relayed_path,omitempty"`
	RelayedRTTP50us  float64 `json:"relayed_rtt_p50_us,omitempty"`
	RelayedRTTP99us  float64 `json:"relayed_rtt_p99_us,omitempty"`
	Relayed5MiBms    float64 `json:"relayed_5mib_ms,omitempty"`
	RelayedRTTRatio  float64 `json:"relayed_rtt_p50_ratio,omitempty"`
	Relayed5MiBRatio float64 `json:"relayed_5mib_ratio,omitempty"`
	Rounds           int     `json:"rounds"`
	BulkRuns         int     `json:"bulk_runs"`
	IsolatedCalls    int     `json:"isolated_calls"`
}

// Defaults of LinkOptions.
const (
	DefaultLinkRounds   = 2000
	DefaultLinkBulkRuns = 21
	DefaultLinkIsolated = 40
)

// LinkOptions bound the run.
type LinkOptions struct {
	Rounds   int // echo round trips per side
	BulkRuns int // 5 MiB transfers per side (median)
	Isolated int // small calls, each after a quiet spell, during transfers
	// Relayed measures a relayed link too, beside the direct one.
	Relayed  bool
	Progress io.Writer
}

// Link measures a raw pion data channel and the Lowkey link (a real box and
// a real companion, paired, on loopback) side by side.
func Link(ctx context.Context, o LinkOptions) (*LinkReport, error) {
	if o.Rounds <= 0 {
		o.Rounds = DefaultLinkRounds
	}
	if o.BulkRuns <= 0 {
		o.BulkRuns = DefaultLinkBulkRuns
	}
	if o.Isolated <= 0 {
		o.Isolated = DefaultLinkIsolated
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	const size = 5 << 20
	rep := &LinkReport{Rounds: o.Rounds, BulkRuns: o.BulkRuns, IsolatedCalls: o.Isolated}

	fmt.Fprintln(o.Progress, "raw pion: connecting")
	raw, err := newRawPair(ctx)
	if err != nil {
		return nil, err
	}
	defer raw.close()

	fmt.Fprintln(o.Progress, "lowkey link: starting a box and pairing a companion")
	dir, err := os.MkdirTemp("", "lowkey-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := local.Start(ctx, dir, local.Options{Logger: quiet})
	if err != nil {
		return nil, err
	}
	defer p.Close()
	call := func(ctx context.Context, n int) error { return echo(ctx, p, n) }
	var relayed *local.Pair
	if o.Relayed {
		fmt.Fprintln(o.Progress, "relayed link: a second box and a computer that may only be relayed")
		// It never has a direct path: the box does not try for one (an
		// ICE restart mid-run would be measured).
		relayed, err = local.Start(ctx, dir+"/relayed", local.Options{Logger: quiet,
			Hub:       func(c *hub.Config) { c.UpgradeEvery = -1 },
			Companion: func(c *companion.Config) { c.RelayOnly = true }})
		if err != nil {
			return nil, err
		}
		defer relayed.Close()
		ds, err := relayed.Hub.Devices()
		if err != nil || len(ds) != 1 {
			return nil, fmt.Errorf("the relayed box's devices: %v", err)
		}
		if rep.RelayedPath = ds[0].Path; rep.RelayedPath != devicectl.PathRelayed {
			return nil, fmt.Errorf("the relayed link goes %q, not relayed", rep.RelayedPath)
		}
	}

	// The two sides take turns, in blocks, so a busy moment on the
	// machine weighs on both.
	fmt.Fprintln(o.Progress, "echo: raw pion and the link, alternating")
	var rawRTTs, linkRTTs, relayedRTTs []time.Duration
	const blocks = 10
	for b := range blocks {
		n := o.Rounds / blocks
		if b < o.Rounds%blocks {
			n++
		}
		d, err := raw.echoRTT(100, n)
		if err != nil {
			return nil, err
		}
		rawRTTs = append(rawRTTs, d...)
		for range n {
			t := time.Now()
			if err := call(ctx, 100); err != nil {
				return nil, err
			}
			linkRTTs = append(linkRTTs, time.Since(t))
		}
		for i := 0; relayed != nil && i < n; i++ {
			t := time.Now()
			if err := echo(ctx, relayed, 100); err != nil {
				return nil, err
			}
			relayedRTTs = append(relayedRTTs, time.Since(t))
		}
	}
	rep.RawRTTP50us, rep.RawRTTP99us = us(percentile(rawRTTs, .5)), us(percentile(rawRTTs, .99))
	rep.LinkRTTP50us, rep.LinkRTTP99us = us(percentile(linkRTTs, .5)), us(percentile(linkRTTs, .99))

	fmt.Fprintln(o.Progress, "5 MiB results: raw pion and the link, alternating")
	var rawBulks, linkBulks, relayedBulks []time.Duration
	for range o.BulkRuns {
		d, err := raw.bulk(size, devicectl.DefaultChunkSize)
		if err != nil {
			return nil, err
		}
		rawBulks = append(rawBulks, d)
		t := time.Now()
		if err := call(ctx, size); err != nil {
			return nil, err
		}
		linkBulks = append(linkBulks, time.Since(t))
		if relayed != nil {
			t := time.Now()
			if err := echo(ctx, relayed, size); err != nil {
				return nil, err
			}
			relayedBulks = append(relayedBulks, time.Since(t))
		}
	}
	rep.Raw5MiBms, rep.Link5MiBms = ms(percentile(rawBulks, .5)), ms(percentile(linkBulks, .5))
	if relayed != nil {
		rep.RelayedRTTP50us, rep.RelayedRTTP99us = us(percentile(relayedRTTs, .5)), us(percentile(relayedRTTs, .99))
		rep.Relayed5MiBms = ms(percentile(relayedBulks, .5))
		rep.RelayedRTTRatio = rep.RelayedRTTP50us / rep.LinkRTTP50us
		rep.Relayed5MiBRatio = rep.Relayed5MiBms / rep.Link5MiBms
	}

	fmt.Fprintln(o.Progress, "lowkey link: small calls during 5 MiB transfers")
	bctx, stopBulk := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var bulkErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		// Transfers back to back until the small calls are done (bounded).
		for i := 0; i < 1000 && bctx.Err() == nil; i++ {
			if err := call(bctx, size); err != nil && bctx.Err() == nil {
				bulkErr = err
				return
			}
		}
	}()
	// smallCalls times n 100-byte calls, each after a pause, until the
	// deadline (if any).
	smallCalls := func(n int, pause time.Duration, deadline time.Time) ([]time.Duration, error) {
		var ds []time.Duration
		for len(ds) < n && (deadline.IsZero() || time.Now().Before(deadline)) {
			time.Sleep(pause)
			t := time.Now()
			if err := call(ctx, 100); err != nil {
				return nil, err
			}
			ds = append(ds, time.Since(t))
		}
		return ds, nil
	}
	during, err := smallCalls(500, 2*time.Millisecond, time.Now().Add(10*time.Second))
	var isolated []time.Duration
	if err == nil {
		fmt.Fprintln(o.Progress, "lowkey link: small calls after a quiet spell, during 5 MiB transfers")
		// Each past the link's 100 ms memory of small calls.
		isolated, err = smallCalls(o.Isolated, 150*time.Millisecond, time.Time{})
	}
	if err != nil {
		stopBulk()
		wg.Wait()
		return nil, err
	}
	stopBulk()
	wg.Wait()
	if bulkErr != nil {
		return nil, bulkErr
	}
	rep.LinkRPCIsolatedP50, rep.LinkRPCIsolatedMax = ms(percentile(isolated, .5)), ms(percentile(isolated, 1))
	rep.LinkRPCDuringBulkP99 = ms(percentile(during, .99))
	rep.LinkRPCDuringBulkP50 = ms(percentile(during, .5))
	rep.RTTRatio = rep.LinkRTTP50us / rep.RawRTTP50us
	rep.BulkRatio = rep.Link5MiBms / rep.Raw5MiBms
	return rep, nil
}

// echo asks the pair's computer for n bytes.
func echo(ctx context.Context, p *local.Pair, n int) error {
	args, _ := json.Marshal(map[string]int{"bytes": n})
	res, err := p.Hub.Call(ctx, p.DeviceID, "sys.echo", "bench", args)
	if err == nil && len(res.Blob) != n {
		err = fmt.Errorf("echo returned %d bytes, want %d", len(res.Blob), n)
	}
	return err
}
