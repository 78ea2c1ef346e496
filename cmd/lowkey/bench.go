package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"

	"github.com/lowkeyhq/lowkey/internal/bench"
)

func runBench(args []string) error {
	if len(args) == 0 {
		return errors.New("bench needs a target: link, browser, live, sessions, load, soak or abuse")
	}
	switch args[0] {
	case "link":
		fs := newFlags("bench link", "lowkey bench link [--json] [--rounds N] [--bulk-runs N] [--isolated N]")
		asJSON := fs.Bool("json", false, "print one JSON object")
		rounds := fs.Int("rounds", bench.DefaultLinkRounds, "100-byte echo round trips per side")
		bulkRuns := fs.Int("bulk-runs", bench.DefaultLinkBulkRuns, "5 MiB transfers per side (the median is reported)")
		isolated := fs.Int("isolated", bench.DefaultLinkIsolated, "small calls during transfers, each after a quiet spell of 150 ms")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		ctx, stop := signalContext()
		defer stop()
		var progress io.Writer = os.Stderr
		rep, err := bench.Link(ctx, bench.LinkOptions{Rounds: *rounds, BulkRuns: *bulkRuns, Isolated: *isolated, Progress: progress})
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(os.Stdout).Encode(rep)
		}
		fmt.Printf("100-byte echo    raw pion p50 %7.1f µs  p99 %7.1f µs\n", rep.RawRTTP50us, rep.RawRTTP99us)
		fmt.Printf("                 link     p50 %7.1f µs  p99 %7.1f µs   (p50 ratio %.2fx)\n", rep.LinkRTTP50us, rep.LinkRTTP99us, rep.RTTRatio)
		fmt.Printf("5 MiB result     raw pion %7.1f ms  link %7.1f ms   (ratio %.2fx)\n", rep.Raw5MiBms, rep.Link5MiBms, rep.BulkRatio)
		fmt.Printf("small call during 5 MiB transfers: p50 %.2f ms, p99 %.2f ms\n", rep.LinkRPCDuringBulkP50, rep.LinkRPCDuringBulkP99)
		fmt.Printf("  each after a quiet spell (%d calls): p50 %.2f ms, max %.2f ms\n", rep.IsolatedCalls, rep.LinkRPCIsolatedP50, rep.LinkRPCIsolatedMax)
		return nil
	case "abuse":
		fs := newFlags("bench abuse", "lowkey bench abuse [--json]")
		asJSON := fs.Bool("json", false, "print one JSON object")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			return fmt.Errorf("bench abuse takes no arguments, got %q", fs.Args())
		}
		self, err := os.Executable()
		if err != nil {
			return err
		}
		ctx, stop := signalContext()
		defer stop()
		rep, err := bench.Abuse(ctx, self, os.Stderr)
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(os.Stdout).Encode(rep)
		}
		fmt.Printf("the box at rest: %.0f MiB\n", rep.IdleRSSMiB)
		for _, a := range rep.Attacks {
			fmt.Printf("%-32s peak %4.0f MiB  %4d goroutines  legitimate calls p99 %6.1f ms (%d, %d failed)\n    %s\n",
				a.Name, a.PeakRSSMiB, a.PeakGoroutines, a.LegitP99ms, a.LegitCalls, a.LegitErrors, a.Outcome)
		}
		fmt.Printf("wrong passwords accepted: %d\n", rep.WrongPasswordsAccepted)
		return nil
	case "browser":
		fs := newFlags("bench browser", "lowkey bench browser [--json] [--rounds N]")
		asJSON := fs.Bool("json", false, "print one JSON object")
		rounds := fs.Int("rounds", bench.DefaultBrowserRounds, "measured rounds per side (the median is reported)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		ctx, stop := signalContext()
		defer stop()
		rep, err := bench.Browser(ctx, *rounds, os.Stderr)
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(os.Stdout).Encode(rep)
		}
		fmt.Printf("                     rod directly   through the link   added\n")
		fmt.Printf("navigate + snapshot  %9.1f ms   %12.1f ms   %+6.1f ms\n", rep.DirectNavigateSnapshotMS, rep.LinkNavigateSnapshotMS, rep.LinkNavigateSnapshotMS-rep.DirectNavigateSnapshotMS)
		fmt.Printf("click                %9.1f ms   %12.1f ms   %+6.1f ms\n", rep.DirectClickMS, rep.LinkClickMS, rep.LinkClickMS-rep.DirectClickMS)
		fmt.Printf("screenshot (%4d KiB) %8.1f ms   %12.1f ms   %+6.1f ms\n", rep.ScreenshotBytes>>10, rep.DirectScreenshotMS, rep.LinkScreenshotMS, rep.LinkScreenshotMS-rep.DirectScreenshotMS)
		return nil
	case "live":
		fs := newFlags("bench live", "lowkey bench live [--json] [--display :N] [--fps N] [--seconds N]")
		asJSON := fs.Bool("json", false, "print one JSON object")
		display := fs.String("display", "", "X display to stream (default: a private 1280x720 Xvfb)")
		fps := fs.Int("fps", 30, "frame rate to ask for")
		secs := fs.Int("seconds", 5, "how long to watch")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		ctx, stop := signalContext()
		defer stop()
		if *display == "" {
			d, stopX, err := startXvfb(1280, 720)
			if err != nil {
				return err
			}
			defer stopX()
			*display = d
		}
		rep, err := bench.Live(ctx, *display, *fps, time.Duration(*secs)*time.Second, os.Stderr)
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(os.Stdout).Encode(rep)
		}
		fmt.Printf("live screen %dx%d: %.1f frames per second (asked for %d), %.0f KiB a frame\n", rep.Width, rep.Height, rep.FPS, rep.Asked, rep.KBPer)
		return nil
	case "load":
		fs := newFlags("bench load", "lowkey bench load [--json] [--companions N] [--sessions N]")
		asJSON := fs.Bool("json", false, "print one JSON object")
		n := fs.Int("companions", 50, "companions to link (in this process, over loopback)")
		s := fs.Int("sessions", 20, "sessions running turns at once")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		ctx, stop := signalContext()
		defer stop()
		rep, err := bench.Load(ctx, *n, *s, os.Stderr)
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(os.Stdout).Encode(rep)
		}
		fmt.Printf("%d companions, %d sessions running turns (%d turns done, %d errors)\n", rep.Companions, rep.Sessions, rep.TurnsDone, rep.Errors)
		fmt.Printf("small call   p50 %6.2f ms  p99 %6.2f ms\n", rep.RPCP50ms, rep.RPCP99ms)
		fmt.Printf("API request  p50 %6.2f ms  p99 %6.2f ms\n", rep.APIP50ms, rep.APIP99ms)
		fmt.Printf("heap: idle %.1f MiB, under load %.1f MiB, after %.1f MiB\n", rep.IdleHeapMiB, rep.LoadHeapMiB, rep.AfterHeapMiB)
		fmt.Printf("goroutines: idle %d, under load %d, after %d\n", rep.IdleGoroutines, rep.LoadGoroutines, rep.AfterGoroutines)
		return nil
	case "soak":
		fs := newFlags("bench soak", "lowkey bench soak [--minutes N] [--every DURATION] [--rounds N] [--json]")
		asJSON := fs.Bool("json", false, "print each sample as a JSON line")
		minutes := fs.Float64("minutes", 5, "how long to run")
		every := fs.Duration("every", 30*time.Second, "how often to report")
		rounds := fs.Int("rounds", 100000, "stop after this many rounds at most")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *minutes <= 0 || *minutes > 24*60 {
			return errors.New("--minutes must be between 0 and 1440")
		}
		ctx, stop := signalContext()
		defer stop()
		fmt.Fprintf(os.Stderr, "soaking for %.1f minutes: pair and revoke, drive the browser, run, cancel and kill turns\n", *minutes)
		samples, err := bench.Soak(ctx, time.Duration(*minutes*float64(time.Minute)), *every, *rounds, func(s bench.SoakSample) {
			if *asJSON {
				_ = json.NewEncoder(os.Stdout).Encode(s)
				return
			}
			line := fmt.Sprintf("%8s  rounds %5d  errors %3d  heap %6.1f MiB  goroutines %5d", s.Elapsed, s.Rounds, s.Errors, s.HeapMiB, s.Goroutines)
			if s.LastError != "" {
				line += "  last error: " + s.LastError
			}
			fmt.Println(line)
		})
		if err != nil {
			return err
		}
		if last := samples[len(samples)-1]; last.Errors > 0 {
			return fmt.Errorf("%d errors in %d rounds", last.Errors, last.Rounds)
		}
		return nil
	case "sessions":
		fs := newFlags("bench sessions", "lowkey bench sessions [--json] [--rounds N]")
		asJSON := fs.Bool("json", false, "print one JSON object")
		rounds := fs.Int("rounds", 20, "turns and fork/execs to time (the median is reported)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		ctx, stop := signalContext()
		defer stop()
		rep, err := bench.Sessions(ctx, *rounds, os.Stderr)
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(os.Stdout).Encode(rep)
		}
		fmt.Printf("start a worker     plain fork/exec %6.2f ms   as a turn in a fresh session %6.2f ms   (%.2fx)\n", rep.ForkExecP50MS, rep.TurnStartP50MS, rep.StartRatio)
		fmt.Printf("kill a session running 100 processes: %.1f ms\n", rep.Kill100MS)
		fmt.Printf("budget: %s\n", rep.Budget)
		return nil
	}
	return fmt.Errorf("unknown bench target %q: use link, browser, live, sessions, load or soak", args[0])
}

// startXvfb starts a private virtual display for a benchmark.
func startXvfb(w, h int) (string, func(), error) {
	bin, err := exec.LookPath("Xvfb")
	if err != nil {
		return "", nil, errors.New("no Xvfb to stream from: install xvfb or pass --display :N")
	}
	for n := 200 + os.Getpid()%500; n < 1000; n++ {
		if _, err := os.Stat(fmt.Sprintf("/tmp/.X11-unix/X%d", n)); err == nil {
			continue
		}
		d := fmt.Sprintf(":%d", n)
		cmd := exec.Command(bin, d, "-screen", "0", fmt.Sprintf("%dx%dx24", w, h), "-nolisten", "tcp", "-noreset")
		if err := cmd.Start(); err != nil {
			return "", nil, err
		}
		stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
		for range 100 {
			if _, err := os.Stat(fmt.Sprintf("/tmp/.X11-unix/X%d", n)); err == nil {
				return d, stop, nil
			}
			time.Sleep(50 * time.Millisecond)
		}
		stop()
		return "", nil, fmt.Errorf("Xvfb %s did not start", d)
	}
	return "", nil, errors.New("no free X display number")
}
