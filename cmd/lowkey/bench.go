package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/lowkeyhq/lowkey/internal/bench"
)

func runBench(args []string) error {
	if len(args) == 0 {
		return errors.New("bench needs a target: link (browser and sessions arrive with their features)")
	}
	switch args[0] {
	case "link":
		fs := newFlags("bench link", "lowkey bench link [--json] [--rounds N] [--bulk-runs N]")
		asJSON := fs.Bool("json", false, "print one JSON object")
		rounds := fs.Int("rounds", 2000, "100-byte echo round trips per side")
		bulkRuns := fs.Int("bulk-runs", 5, "5 MiB transfers per side (the median is reported)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		ctx, stop := signalContext()
		defer stop()
		var progress io.Writer = os.Stderr
		rep, err := bench.Link(ctx, bench.LinkOptions{Rounds: *rounds, BulkRuns: *bulkRuns, Progress: progress})
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(os.Stdout).Encode(rep)
		}
		fmt.Printf("100-byte echo    raw pion p50 %7.1f µs  p99 %7.1f µs\n", rep.RawRTTP50us, rep.RawRTTP99us)
		fmt.Printf("                 link     p50 %7.1f µs  p99 %7.1f µs   (p50 ratio %.2fx)\n", rep.LinkRTTP50us, rep.LinkRTTP99us, rep.RTTRatio)
		fmt.Printf("5 MiB result     raw pion %7.1f ms  link %7.1f ms   (ratio %.2fx)\n", rep.Raw5MiBms, rep.Link5MiBms, rep.BulkRatio)
		fmt.Printf("small call p99 during 5 MiB transfers: %.2f ms\n", rep.LinkRPCDuringBulkP99)
		return nil
	case "browser", "sessions":
		return fmt.Errorf("bench %s: not built yet (it arrives with %s control)", args[0], args[0])
	}
	return fmt.Errorf("unknown bench target %q: use link", args[0])
}
