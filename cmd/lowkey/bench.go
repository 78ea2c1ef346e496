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
	"github.com/lowkeyhq/lowkey/internal/cli"
)

type benchCmd struct {
	Link     benchLinkCmd     `cmd:"" help:"A raw pion data channel beside the link: echo round trips, a 5 MiB result, small calls during transfers."`
	Browser  benchBrowserCmd  `cmd:"" help:"The same browser actions through rod directly and through the link."`
	Live     benchLiveCmd     `cmd:"" help:"The live screen's rate and bandwidth for a still page, typing and scrolling, beside whole JPEG frames (a private Xvfb)."`
	Sessions benchSessionsCmd `cmd:"" help:"Plain fork/exec beside a turn in a fresh session; killing a session of 100 processes."`
	Load     benchLoadCmd     `cmd:"" help:"50 companions and 20 busy sessions on one box."`
	Soak     benchSoakCmd     `cmd:"" help:"The box's whole life in a loop, errors and resources."`
	Abuse    benchAbuseCmd    `cmd:"" help:"The reproduced attacks against a box on loopback: peak memory, legitimate calls' p99."`
}

// jsonFlag is --json, the same on every benchmark.
type jsonFlag struct {
	JSON bool `name:"json" help:"Print one JSON object."`
}

// report prints rep as JSON when asked, else as text.
func (j jsonFlag) report(o *cli.IO, rep any, text func(w io.Writer)) error {
	if j.JSON {
		return json.NewEncoder(o.Out).Encode(rep)
	}
	text(o.Out)
	return nil
}

type benchLinkCmd struct {
	jsonFlag
	Rounds   int    `placeholder:"N" default:"${link_rounds}" help:"100-byte echo round trips per side (default: ${default})."`
	BulkRuns int    `placeholder:"N" default:"${link_bulk_runs}" help:"5 MiB transfers per side (the median is reported) (default: ${default})."`
	Isolated int    `placeholder:"N" default:"${link_isolated}" help:"Small calls during transfers, each after a quiet spell of 150 ms (default: ${default})."`
	Path     string `enum:"direct,relayed" default:"direct" help:"relayed: also a computer that may only be relayed (through the box's own relay), beside the direct link (default: ${default})."`
}

func (c *benchLinkCmd) Run(o *cli.IO) error {
	ctx, stop := signalContext()
	defer stop()
	rep, err := bench.Link(ctx, bench.LinkOptions{Rounds: c.Rounds, BulkRuns: c.BulkRuns, Isolated: c.Isolated, Relayed: c.Path == "relayed", Progress: o.Err})
	if err != nil {
		return err
	}
	return c.report(o, rep, func(w io.Writer) {
		fmt.Fprintf(w, "100-byte echo    raw pion p50 %7.1f µs  p99 %7.1f µs\n", rep.RawRTTP50us, rep.RawRTTP99us)
		fmt.Fprintf(w, "                 link     p50 %7.1f µs  p99 %7.1f µs   (p50 ratio %.2fx)\n", rep.LinkRTTP50us, rep.LinkRTTP99us, rep.RTTRatio)
		fmt.Fprintf(w, "5 MiB result     raw pion %7.1f ms  link %7.1f ms   (ratio %.2fx)\n", rep.Raw5MiBms, rep.Link5MiBms, rep.BulkRatio)
		if rep.RelayedPath != "" {
			fmt.Fprintf(w, "relayed link     echo p50 %7.1f µs  p99 %7.1f µs   (p50 %.2fx the direct link's)\n", rep.RelayedRTTP50us, rep.RelayedRTTP99us, rep.RelayedRTTRatio)
			fmt.Fprintf(w, "                 5 MiB %7.1f ms                (%.2fx the direct link's)\n", rep.Relayed5MiBms, rep.Relayed5MiBRatio)
		}
		fmt.Fprintf(w, "small call during 5 MiB transfers: p50 %.2f ms, p99 %.2f ms\n", rep.LinkRPCDuringBulkP50, rep.LinkRPCDuringBulkP99)
		fmt.Fprintf(w, "  each after a quiet spell (%d calls): p50 %.2f ms, max %.2f ms\n", rep.IsolatedCalls, rep.LinkRPCIsolatedP50, rep.LinkRPCIsolatedMax)
	})
}

type benchAbuseCmd struct{ jsonFlag }

func (c *benchAbuseCmd) Run(o *cli.IO) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	ctx, stop := signalContext()
	defer stop()
	rep, err := bench.Abuse(ctx, self, o.Err)
	if err != nil {
		return err
	}
	return c.report(o, rep, func(w io.Writer) {
		fmt.Fprintf(w, "the box at rest: %.0f MiB\n", rep.IdleRSSMiB)
		for _, a := range rep.Attacks {
			fmt.Fprintf(w, "%-32s peak %4.0f MiB  %4d goroutines  legitimate calls p99 %6.1f ms (%d, %d failed)\n    %s\n",
				a.Name, a.PeakRSSMiB, a.PeakGoroutines, a.LegitP99ms, a.LegitCalls, a.LegitErrors, a.Outcome)
		}
		fmt.Fprintf(w, "wrong passwords accepted: %d\n", rep.WrongPasswordsAccepted)
	})
}

type benchBrowserCmd struct {
	jsonFlag
	Rounds int `placeholder:"N" default:"${browser_rounds}" help:"Measured rounds per side (the median is reported) (default: ${default})."`
}

func (c *benchBrowserCmd) Run(o *cli.IO) error {
	ctx, stop := signalContext()
	defer stop()
	rep, err := bench.Browser(ctx, c.Rounds, o.Err)
	if err != nil {
		return err
	}
	return c.report(o, rep, func(w io.Writer) {
		fmt.Fprintf(w, "                     rod directly   through the link   added\n")
		fmt.Fprintf(w, "navigate + snapshot  %9.1f ms   %12.1f ms   %+6.1f ms\n", rep.DirectNavigateSnapshotMS, rep.LinkNavigateSnapshotMS, rep.LinkNavigateSnapshotMS-rep.DirectNavigateSnapshotMS)
		fmt.Fprintf(w, "click                %9.1f ms   %12.1f ms   %+6.1f ms\n", rep.DirectClickMS, rep.LinkClickMS, rep.LinkClickMS-rep.DirectClickMS)
		fmt.Fprintf(w, "screenshot (%4d KiB) %8.1f ms   %12.1f ms   %+6.1f ms\n", rep.ScreenshotBytes>>10, rep.DirectScreenshotMS, rep.LinkScreenshotMS, rep.LinkScreenshotMS-rep.DirectScreenshotMS)
	})
}

type benchLiveCmd struct {
	jsonFlag
	Display string        `placeholder:":N" help:"X display to stream (default: a private 1280x720 Xvfb)."`
	FPS     int           `name:"fps" default:"30" help:"Frame rate to ask for (default: ${default})."`
	For     time.Duration `name:"for" default:"5s" placeholder:"DURATION" help:"How long to watch each scene (5s, 1m) (default: ${default})."`
}

func (c *benchLiveCmd) Run(o *cli.IO) error {
	if c.FPS <= 0 || c.For <= 0 {
		return &cli.UsageError{Msg: "--fps and --for must be more than zero"}
	}
	ctx, stop := signalContext()
	defer stop()
	display := c.Display
	if display == "" {
		d, stopX, err := startXvfb(1280, 720)
		if err != nil {
			return err
		}
		defer stopX()
		display = d
	}
	rep, err := bench.Live(ctx, display, c.FPS, c.For, o.Err)
	if err != nil {
		return err
	}
	return c.report(o, rep, func(w io.Writer) {
		fmt.Fprintf(w, "live screen %dx%d at %d fps asked, first (whole) frame %.0f KiB\n", rep.Width, rep.Height, rep.Asked, rep.KeyKiB)
		fmt.Fprintf(w, "  still page            %6.2f Mbit/s\n", rep.StillMbit)
		fmt.Fprintf(w, "  typing (%.0f chars/s)   %6.2f Mbit/s\n", rep.TypedCPS, rep.TypingMbit)
		fmt.Fprintf(w, "  scrolling (%d px/frame) %6.2f Mbit/s at %.1f updates/s\n", rep.ScrollPx, rep.ScrollingMbit, rep.FPS)
		fmt.Fprintf(w, "  the same scrolling as whole JPEG frames: %.2f Mbit/s at %.1f frames/s (%.0fx)\n", rep.FullFrameMbit, rep.FullFrameFPS, rep.FullFrameMbit/max(rep.ScrollingMbit, 0.001))
	})
}

type benchLoadCmd struct {
	jsonFlag
	Companions int `placeholder:"N" default:"50" help:"Companions to link (in this process, over loopback) (default: ${default})."`
	Sessions   int `placeholder:"N" default:"20" help:"Sessions running turns at once (default: ${default})."`
}

func (c *benchLoadCmd) Run(o *cli.IO) error {
	ctx, stop := signalContext()
	defer stop()
	rep, err := bench.Load(ctx, c.Companions, c.Sessions, o.Err)
	if err != nil {
		return err
	}
	return c.report(o, rep, func(w io.Writer) {
		fmt.Fprintf(w, "%d companions, %d sessions running turns (%d turns done, %d errors)\n", rep.Companions, rep.Sessions, rep.TurnsDone, rep.Errors)
		fmt.Fprintf(w, "small call   p50 %6.2f ms  p99 %6.2f ms\n", rep.RPCP50ms, rep.RPCP99ms)
		fmt.Fprintf(w, "API request  p50 %6.2f ms  p99 %6.2f ms\n", rep.APIP50ms, rep.APIP99ms)
		fmt.Fprintf(w, "heap: idle %.1f MiB, under load %.1f MiB, after %.1f MiB\n", rep.IdleHeapMiB, rep.LoadHeapMiB, rep.AfterHeapMiB)
		fmt.Fprintf(w, "goroutines: idle %d, under load %d, after %d\n", rep.IdleGoroutines, rep.LoadGoroutines, rep.AfterGoroutines)
	})
}

type benchSoakCmd struct {
	JSON   bool          `name:"json" help:"Print each sample as a JSON line."`
	For    time.Duration `name:"for" default:"5m" placeholder:"DURATION" help:"How long to run (at most 24h) (default: ${default})."`
	Every  time.Duration `default:"30s" placeholder:"DURATION" help:"How often to report (default: ${default})."`
	Rounds int           `placeholder:"N" default:"100000" help:"Stop after this many rounds at most (default: ${default})."`
}

func (c *benchSoakCmd) Run(o *cli.IO) error {
	d := c.For
	if d <= 0 || d > 24*time.Hour || c.Every <= 0 {
		return &cli.UsageError{Msg: "--for must be between 0 and 24h, --every more than 0"}
	}
	ctx, stop := signalContext()
	defer stop()
	fmt.Fprintf(o.Err, "soaking for %s: pair and revoke, drive the browser, run, cancel and kill turns\n", d)
	var werr error
	samples, err := bench.Soak(ctx, d, c.Every, c.Rounds, func(s bench.SoakSample) {
		if c.JSON {
			if err := json.NewEncoder(o.Out).Encode(s); err != nil && werr == nil {
				werr = err
			}
			return
		}
		line := fmt.Sprintf("%8s  rounds %5d  errors %3d  heap %6.1f MiB  goroutines %5d", s.Elapsed, s.Rounds, s.Errors, s.HeapMiB, s.Goroutines)
		if s.LastError != "" {
			line += "  last error: " + s.LastError
		}
		fmt.Fprintln(o.Out, line)
	})
	if err != nil {
		return err
	}
	if werr != nil {
		return werr
	}
	if last := samples[len(samples)-1]; last.Errors > 0 {
		return fmt.Errorf("%d errors in %d rounds", last.Errors, last.Rounds)
	}
	return nil
}

type benchSessionsCmd struct {
	jsonFlag
	Rounds int `placeholder:"N" default:"20" help:"Turns and fork/execs to time (the median is reported) (default: ${default})."`
}

func (c *benchSessionsCmd) Run(o *cli.IO) error {
	ctx, stop := signalContext()
	defer stop()
	rep, err := bench.Sessions(ctx, c.Rounds, o.Err)
	if err != nil {
		return err
	}
	return c.report(o, rep, func(w io.Writer) {
		fmt.Fprintf(w, "start a worker     plain fork/exec %6.2f ms   as a turn in a fresh session %6.2f ms   (%.2fx)\n", rep.ForkExecP50MS, rep.TurnStartP50MS, rep.StartRatio)
		fmt.Fprintf(w, "kill a session running 100 processes: %.1f ms\n", rep.Kill100MS)
		fmt.Fprintf(w, "budget: %s\n", rep.Budget)
	})
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
