package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/lowkeyhq/lowkey/companion"
	"github.com/lowkeyhq/lowkey/pairing"
)

var version = "0.1.0-dev"

const usage = `lowkey-companion — a computer paired with a Lowkey box

Usage:
  lowkey-companion pair [--hub HOST:PORT] [--code CODE] [--name NAME] [--state DIR]
        pair with a box; without --hub, find it on the LAN (mDNS)
  lowkey-companion run [--state DIR] [--browser PATH] [--headless] [--display :N] [--no-mdns] [--attach-chrome DIR]
        keep the link to the box up and serve its device actions
  lowkey-companion status [--state DIR]
        the paired box, the link state, which conversations hold control now
  lowkey-companion unpair [--state DIR]
        forget the box and tell it so
  lowkey-companion pause | resume [--state DIR]
        the local kill switch for device control

The state directory (identity, pinned box, all files owner-only) is --state,
else $LOWKEY_COMPANION_STATE, else ~/.config/lowkey-companion.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	cmd, args := os.Args[1], os.Args[2:]
	var err error
	switch cmd {
	case "pair":
		err = runPair(args)
	case "run":
		err = runRun(args)
	case "status":
		err = runStatus(args)
	case "unpair":
		err = runUnpair(args)
	case "pause", "resume":
		err = runPause(cmd, args)
	case "help", "-h", "--help":
		fmt.Print(usage)
		return
	case "version", "--version":
		fmt.Println("lowkey-companion", version)
		return
	default:
		fmt.Fprintf(os.Stderr, "lowkey-companion: unknown command %q\n\n%s", cmd, usage)
		os.Exit(2)
	}
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "lowkey-companion:", err)
		os.Exit(1)
	}
}

func defaultState() string {
	if d := os.Getenv("LOWKEY_COMPANION_STATE"); d != "" {
		return d
	}
	return companion.DefaultStateDir()
}

func newFlags(name, synopsis string) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	state := fs.String("state", defaultState(), "state directory")
	return fs, state
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s takes no arguments, got %q", fs.Name(), fs.Args())
	}
	return nil
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func runPair(args []string) error {
	fs, state := newFlags("pair", "lowkey-companion pair [--hub HOST:PORT] [--code CODE] [--name NAME] [--state DIR]")
	hubAddr := fs.String("hub", "", "the box's address; without it the box is found on the LAN")
	code := fs.String("code", "", "the pairing code shown by the box (asked for when absent)")
	host, _ := os.Hostname()
	name := fs.String("name", host, "this computer's name, as the box will show it")
	if err := parse(fs, args); err != nil {
		return err
	}
	st := companion.State{Dir: *state}
	if h, err := st.Hub(); err == nil {
		return fmt.Errorf("already paired with %s (%s): run \"lowkey-companion unpair\" first", h.Peer.Name, h.Addr)
	}
	ctx, stop := signalContext()
	defer stop()
	addr := *hubAddr
	if addr == "" {
		var err error
		if addr, err = discover(ctx); err != nil {
			return err
		}
	} else {
		var err error
		if addr, err = companion.NormalizeAddr(addr); err != nil {
			return err
		}
	}
	if *code == "" {
		fmt.Fprint(os.Stderr, "Pairing code (shown by \"lowkey pair-code\" on the box): ")
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil && line == "" {
			return errors.New("no pairing code given: pass --code CODE")
		}
		*code = strings.TrimSpace(line)
	}
	if _, err := pairing.NormalizeCode(*code); err != nil {
		return err
	}
	rec, err := companion.Pair(ctx, st, addr, *code, *name)
	if err != nil {
		return err
	}
	id, _ := st.Identity()
	fmt.Printf("Paired with %s at %s.\n", rec.Peer.Name, rec.Addr)
	fmt.Printf("This computer is %s (%s) on the box.\n", id.ID(), *name)
	fmt.Println(`Now run "lowkey-companion run" to keep the link up.`)
	return nil
}

// discover browses the LAN and returns the only box found.
func discover(ctx context.Context) (string, error) {
	fmt.Fprintln(os.Stderr, "Looking for boxes on the LAN (mDNS)...")
	found, err := pairing.Browse(ctx, 3*time.Second)
	if err != nil {
		return "", fmt.Errorf("%w; pass --hub HOST:PORT", err)
	}
	switch len(found) {
	case 0:
		return "", errors.New("no box found on the LAN (multicast may be blocked on this network): pass --hub HOST:PORT")
	case 1:
		fmt.Fprintf(os.Stderr, "Found %s at %s.\n", found[0].Name, found[0].Addr)
		return found[0].Addr, nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "found %d boxes; choose one with --hub:\n", len(found))
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	for _, f := range found {
		fmt.Fprintf(tw, "  %s\t%s\tkey %s\tversion %s\n", f.Name, f.Addr, f.KeyPrefix, f.Version)
	}
	tw.Flush()
	return "", errors.New(strings.TrimRight(b.String(), "\n"))
}

func runRun(args []string) error {
	fs, state := newFlags("run", "lowkey-companion run [--state DIR] [--browser PATH] [--headless] [--display :N] [--no-mdns]")
	var cfg companion.Config
	fs.StringVar(&cfg.BrowserPath, "browser", "", "Chromium binary to drive (default: the system one)")
	headless := fs.Bool("headless", false, "run the browser without a window")
	display := fs.String("display", "", "X display to use for the screen and a windowed browser (default: $DISPLAY)")
	fs.BoolVar(&cfg.NoMDNS, "no-mdns", false, "never look for the box on the LAN; use only its last address")
	fs.StringVar(&cfg.AttachChrome, "attach-chrome", "", "drive the running Chrome whose user data directory this is (started with --remote-debugging-port=0) instead of launching one")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg.State = companion.State{Dir: *state}
	cfg.Headless, cfg.Display = *headless, *display
	if cfg.Display == "" {
		cfg.Display = os.Getenv("DISPLAY")
	}
	level := slog.LevelInfo
	if os.Getenv("LOWKEY_DEBUG") != "" {
		level = slog.LevelDebug
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	cfg.Version = version
	if _, err := cfg.State.Hub(); err != nil {
		return err
	}
	ctx, stop := signalContext()
	defer stop()
	return companion.NewRunner(cfg).Run(ctx)
}

func runStatus(args []string) error {
	fs, state := newFlags("status", "lowkey-companion status [--state DIR]")
	if err := parse(fs, args); err != nil {
		return err
	}
	st := companion.State{Dir: *state}
	h, err := st.Hub()
	if err != nil {
		return err
	}
	id, err := st.Identity()
	if err != nil {
		return err
	}
	fmt.Printf("this computer: %s\n", id.ID())
	fmt.Printf("paired box:    %s (%s) at %s, since %s\n", h.Peer.Name, h.Peer.ID, h.Addr, h.PairedAt.Local().Format("2006-01-02 15:04"))
	if p, _ := st.Paused(); p {
		fmt.Println("control:       PAUSED here (\"lowkey-companion resume\" to allow it again)")
	}
	s, err := companion.ReadStatus(st)
	switch {
	case err != nil || !s.Running():
		fmt.Println("link:          not running (start it with \"lowkey-companion run\")")
	default:
		line := fmt.Sprintf("link:          %s since %s (pid %d)", s.Link, s.Since.Local().Format("15:04:05"), s.PID)
		if s.LastError != "" {
			line += ": " + s.LastError
		}
		fmt.Println(line)
		if len(s.Grants) == 0 {
			fmt.Println("control:       no conversation holds control of this computer")
		} else {
			fmt.Printf("control:       active for %s\n", strings.Join(s.Grants, ", "))
		}
	}
	return nil
}

func runUnpair(args []string) error {
	fs, state := newFlags("unpair", "lowkey-companion unpair [--state DIR]")
	if err := parse(fs, args); err != nil {
		return err
	}
	st := companion.State{Dir: *state}
	h, err := st.Hub()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := companion.Unpair(ctx, st); err != nil {
		return err
	}
	fmt.Printf("Unpaired from %s: the box has forgotten this computer and this computer has forgotten the box.\n", h.Peer.Name)
	return nil
}

func runPause(cmd string, args []string) error {
	fs, state := newFlags(cmd, "lowkey-companion "+cmd+" [--state DIR]")
	if err := parse(fs, args); err != nil {
		return err
	}
	st := companion.State{Dir: *state}
	if err := st.SetPaused(cmd == "pause"); err != nil {
		return err
	}
	if cmd == "pause" {
		fmt.Println("Paused: every device action is refused here until \"lowkey-companion resume\", whatever the box asks.")
	} else {
		fmt.Println("Resumed: conversations that hold a grant may act on this computer again.")
	}
	return nil
}
