package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kong"

	"github.com/lowkeyhq/lowkey/companion"
	"github.com/lowkeyhq/lowkey/devicectl"
	"github.com/lowkeyhq/lowkey/internal/cli"
	"github.com/lowkeyhq/lowkey/pairing"
)

var version = "0.1.0-dev"

const description = `lowkey-companion — a computer paired with a Lowkey box.

The state directory (identity, pinned box, all files owner-only) is --state,
else $LOWKEY_COMPANION_STATE, else ~/.config/lowkey-companion.`

// companionCLI is the whole command line of a paired computer's program.
type companionCLI struct {
	State string `name:"state" env:"LOWKEY_COMPANION_STATE" default:"${state}" placeholder:"DIR" help:"State directory (default: ${default})."`

	Pair   pairCmd   `cmd:"" help:"Pair with a box; without --hub, find it on the LAN (mDNS)."`
	Run    runCmd    `cmd:"" help:"Keep the link to the box up and serve its device actions."`
	Status statusCmd `cmd:"" help:"The paired box, the link state, which conversations hold control now."`
	Unpair unpairCmd `cmd:"" help:"Forget the box and tell it so."`
	Pause  pauseCmd  `cmd:"" help:"The local kill switch: refuse every device action here, whatever the box asks."`
	Resume resumeCmd `cmd:"" help:"Allow device actions again (for conversations that hold a grant)."`

	Consent consentCmd `cmd:"" help:"Whether a conversation's first action on this computer waits for you (ask) or the box's grant is enough (trust)."`
	Approve approveCmd `cmd:"" help:"Allow what the box asks (the question named, or the only one open)."`
	Deny    denyCmd    `cmd:"" help:"Refuse what the box asks (the question named, or the only one open)."`

	InstallService   installServiceCmd   `cmd:"" name:"install-service" help:"Start the companion at every sign-in (systemd user unit, launchd agent, Windows startup entry) and now."`
	UninstallService uninstallServiceCmd `cmd:"" name:"uninstall-service" help:"Stop starting it at sign-in (the pairing is kept)."`

	cli.Common
}

func main() {
	os.Exit(run(os.Args[1:], cli.IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}))
}

// run is the program, minus the process: tests call it.
func run(args []string, o cli.IO) int {
	var g companionCLI
	return cli.Run("lowkey-companion", description, &g, args, o, kong.Vars{"version": version, "state": companion.DefaultStateDir(), "host": hostname()})
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "computer"
	}
	return h
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

type pairCmd struct {
	Hub  string `placeholder:"HOST:PORT" help:"The box's address; without it the box is found on the LAN."`
	Code string `placeholder:"CODE" help:"The pairing code shown by the box (asked for when absent)."`
	Name string `placeholder:"NAME" default:"${host}" help:"This computer's name, as the box will show it (default: ${default})."`
}

func (c *pairCmd) Run(g *companionCLI, o *cli.IO) error {
	st := companion.State{Dir: g.State}
	if h, err := st.Hub(); err == nil {
		return fmt.Errorf("already paired with %s (%s): run \"lowkey-companion unpair\" first", h.Peer.Name, h.Addr)
	}
	ctx, stop := signalContext()
	defer stop()
	addr := c.Hub
	if addr == "" {
		var err error
		if addr, err = discover(ctx, o.Err); err != nil {
			return err
		}
	} else {
		var err error
		if addr, err = companion.NormalizeAddr(addr); err != nil {
			return &cli.UsageError{Msg: err.Error()}
		}
	}
	code := c.Code
	if code == "" {
		fmt.Fprint(o.Err, "Pairing code (shown by \"lowkey pair-code\" on the box): ")
		line, err := bufio.NewReader(o.In).ReadString('\n')
		if err != nil && line == "" {
			return errors.New("no pairing code given: pass --code CODE")
		}
		code = strings.TrimSpace(line)
	}
	if _, err := pairing.NormalizeCode(code); err != nil {
		return err
	}
	rec, err := companion.Pair(ctx, st, addr, code, c.Name)
	if err != nil {
		return err
	}
	id, err := st.Identity()
	if err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "Paired with %s at %s.\n", rec.Peer.Name, rec.Addr)
	fmt.Fprintf(o.Out, "This computer is %s (%s) on the box.\n", id.ID(), c.Name)
	fmt.Fprintln(o.Out, `Now run "lowkey-companion run" to keep the link up.`)
	return nil
}

// discover browses the LAN and returns the only box found.
func discover(ctx context.Context, progress io.Writer) (string, error) {
	fmt.Fprintln(progress, "Looking for boxes on the LAN (mDNS)...")
	found, err := pairing.Browse(ctx, 3*time.Second)
	if err != nil {
		return "", fmt.Errorf("%w; pass --hub HOST:PORT", err)
	}
	switch len(found) {
	case 0:
		return "", errors.New("no box found on the LAN (multicast may be blocked on this network): pass --hub HOST:PORT")
	case 1:
		fmt.Fprintf(progress, "Found %s at %s.\n", found[0].Name, found[0].Addr)
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

type runCmd struct {
	Browser      string        `placeholder:"PATH" help:"Chromium binary to drive (default: the system's Chrome, Chromium or Edge)."`
	Headless     bool          `help:"Run the browser without a window."`
	Display      string        `placeholder:":N" env:"DISPLAY" help:"X display for the screen and a windowed browser."`
	NoMDNS       bool          `name:"no-mdns" help:"Never look for the box on the LAN; use only its last address."`
	AttachChrome string        `placeholder:"DIR" help:"Drive the running Chrome whose user data directory this is (started with --remote-debugging-port=0) instead of launching one."`
	AskWait      time.Duration `name:"ask-wait" default:"2m" placeholder:"DURATION" help:"How long a question waits for your answer; no answer is a no (default: ${default})."`
	LogFormat    string        `name:"log-format" enum:"text,json" default:"text" help:"The log on stderr: text lines, or one JSON object a line (text, json) (default: ${default})."`
}

func (c *runCmd) Run(g *companionCLI, o *cli.IO) error {
	cfg := companion.Config{
		State:       companion.State{Dir: g.State},
		BrowserPath: c.Browser, Headless: c.Headless, Display: c.Display,
		NoMDNS: c.NoMDNS, AttachChrome: c.AttachChrome, Version: version, AskWait: c.AskWait,
	}
	if c.AskWait <= 0 || c.AskWait > time.Hour {
		return &cli.UsageError{Msg: "--ask-wait must be between 0 and 1h"}
	}
	cfg.Logger = cli.Logger(o.Err, c.LogFormat)
	if _, err := cfg.State.Hub(); err != nil {
		return err
	}
	ctx, stop := signalContext()
	defer stop()
	return companion.NewRunner(cfg).Run(ctx)
}

type statusCmd struct{}

func (statusCmd) Run(g *companionCLI, o *cli.IO) error {
	st := companion.State{Dir: g.State}
	h, err := st.Hub()
	if err != nil {
		return err
	}
	id, err := st.Identity()
	if err != nil {
		return err
	}
	w := o.Out
	fmt.Fprintf(w, "this computer: %s\n", id.ID())
	fmt.Fprintf(w, "paired box:    %s (%s) at %s, since %s\n", h.Peer.Name, h.Peer.ID, h.Addr, h.PairedAt.Local().Format("2006-01-02 15:04"))
	paused, err := st.Paused()
	if err != nil {
		return err
	}
	if paused {
		fmt.Fprintln(w, "control:       PAUSED here (\"lowkey-companion resume\" to allow it again)")
	}
	if rules, err := st.Consent(); err == nil {
		fmt.Fprintf(w, "consent:       browser %s, desktop %s (\"lowkey-companion consent\" to change)\n", rules.Browser, rules.Desktop)
	}
	s, err := companion.ReadStatus(st)
	switch {
	case err != nil || !s.Running():
		fmt.Fprintln(w, "link:          not running (start it with \"lowkey-companion run\")")
	default:
		link := s.Link
		if s.Path != "" {
			link += ", " + devicectl.PathLabel(s.Path)
		}
		line := fmt.Sprintf("link:          %s since %s (pid %d)", link, s.Since.Local().Format("15:04:05"), s.PID)
		if s.LastError != "" {
			line += ": " + s.LastError
		}
		fmt.Fprintln(w, line)
		if len(s.Grants) == 0 {
			fmt.Fprintln(w, "control:       no conversation holds control of this computer")
		} else {
			fmt.Fprintf(w, "control:       active for %s\n", strings.Join(s.Grants, ", "))
		}
		for _, q := range s.Questions {
			fmt.Fprintf(w, "asks you:      %s: conversation %s wants %s access (%s); \"lowkey-companion approve %s\" or \"deny %s\" by %s\n",
				q.ID, q.Conversation, q.Capability, q.Action, q.ID, q.ID, q.Deadline.Local().Format("15:04:05"))
		}
		if s.AnswerURL != "" {
			fmt.Fprintf(w, "answer page:   %s\n", s.AnswerURL)
		}
	}
	return nil
}

type unpairCmd struct{}

func (unpairCmd) Run(g *companionCLI, o *cli.IO) error {
	st := companion.State{Dir: g.State}
	h, err := st.Hub()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := companion.Unpair(ctx, st); err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "Unpaired from %s: the box has forgotten this computer and this computer has forgotten the box.\n", h.Peer.Name)
	return nil
}

type pauseCmd struct{}

func (pauseCmd) Run(g *companionCLI, o *cli.IO) error {
	if err := (companion.State{Dir: g.State}).SetPaused(true); err != nil {
		return err
	}
	fmt.Fprintln(o.Out, "Paused: every device action is refused here until \"lowkey-companion resume\", whatever the box asks.")
	return nil
}

type consentCmd struct {
	Rule    string `arg:"" optional:"" help:"ask or trust; without it, the rules are shown."`
	Browser bool   `help:"The rule for browser access only."`
	Desktop bool   `help:"The rule for desktop access only."`
}

func (c *consentCmd) Run(g *companionCLI, o *cli.IO) error {
	st := companion.State{Dir: g.State}
	if c.Rule != "" && c.Rule != companion.Ask && c.Rule != companion.Trust {
		return &cli.UsageError{Msg: fmt.Sprintf("the rule is ask or trust, not %q", c.Rule)}
	}
	if c.Rule != "" {
		var caps []devicectl.Capability
		if c.Browser {
			caps = append(caps, devicectl.CapBrowser)
		}
		if c.Desktop {
			caps = append(caps, devicectl.CapDesktop)
		}
		if err := st.SetRule(c.Rule, caps...); err != nil {
			return err
		}
	} else if c.Browser || c.Desktop {
		return &cli.UsageError{Msg: "--browser and --desktop go with a rule: lowkey-companion consent ask --desktop"}
	}
	rules, err := st.Consent()
	if err != nil {
		return err
	}
	say := func(what, rule string) {
		if rule == companion.Ask {
			fmt.Fprintf(o.Out, "%s access: ask (a conversation's first action waits for you here)\n", what)
		} else {
			fmt.Fprintf(o.Out, "%s access: trust (the box's grant is enough)\n", what)
		}
	}
	say("browser", rules.Browser)
	say("desktop", rules.Desktop)
	return nil
}

type approveCmd struct {
	ID   string `arg:"" optional:"" help:"The question (lowkey-companion status lists them); without it, the only one open."`
	Hour bool   `help:"For an hour, not for as long as the conversation lasts."`
}

func (c *approveCmd) Run(g *companionCLI, o *cli.IO) error {
	answer := companion.AllowConversation
	if c.Hour {
		answer = companion.AllowHour
	}
	return answerQuestion(g, o, c.ID, answer)
}

type denyCmd struct {
	ID string `arg:"" optional:"" help:"The question (lowkey-companion status lists them); without it, the only one open."`
}

func (c *denyCmd) Run(g *companionCLI, o *cli.IO) error {
	return answerQuestion(g, o, c.ID, companion.Deny)
}

func answerQuestion(g *companionCLI, o *cli.IO, id, answer string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q, err := companion.Answer(ctx, companion.State{Dir: g.State}, id, answer)
	if err != nil {
		return err
	}
	switch answer {
	case companion.Deny:
		fmt.Fprintf(o.Out, "Denied %s access to conversation %s.\n", q.Capability, q.Conversation)
	case companion.AllowHour:
		fmt.Fprintf(o.Out, "Allowed %s access to conversation %s for an hour.\n", q.Capability, q.Conversation)
	default:
		fmt.Fprintf(o.Out, "Allowed %s access to conversation %s for as long as it lasts.\n", q.Capability, q.Conversation)
	}
	return nil
}

type resumeCmd struct{}

func (resumeCmd) Run(g *companionCLI, o *cli.IO) error {
	if err := (companion.State{Dir: g.State}).SetPaused(false); err != nil {
		return err
	}
	fmt.Fprintln(o.Out, "Resumed: conversations that hold a grant may act on this computer again.")
	return nil
}

type installServiceCmd struct {
	Print      bool `help:"Print what would be installed, and where, instead of installing it."`
	ForPackage bool `name:"for-package" hidden:"" help:"The unit of the Debian package: /usr/bin/lowkey-companion, the default state."`
}

func (c *installServiceCmd) Run(g *companionCLI, o *cli.IO) error {
	if c.ForPackage {
		_, err := o.Out.Write(companion.SystemdUserUnit("/usr/bin/lowkey-companion", []string{"run"}))
		return err
	}
	svc, err := companion.ThisService(g.State)
	if err != nil {
		return err
	}
	if c.Print {
		fmt.Fprintf(o.Out, "# %s\n%s", svc.Path, svc.Content)
		if len(svc.Content) > 0 && svc.Content[len(svc.Content)-1] != '\n' {
			fmt.Fprintln(o.Out)
		}
		return nil
	}
	if _, err := (companion.State{Dir: g.State}).Hub(); err != nil {
		return fmt.Errorf("not paired yet: run \"lowkey-companion pair\" first, then install the service")
	}
	err = svc.Install()
	switch {
	case errors.Is(err, companion.ErrNoServiceManager):
		fmt.Fprintf(o.Out, "installed %s; it starts at your next sign-in (%v)\n", svc.Path, err)
		return nil
	case err != nil:
		return err
	case svc.GOOS == "windows":
		fmt.Fprintf(o.Out, "installed the startup entry %q in %s: it starts at your next sign-in\n", companion.RunValue, svc.Path)
	default:
		fmt.Fprintf(o.Out, "installed %s and started it: the link stays up while you are signed in\n", svc.Path)
	}
	return nil
}

type uninstallServiceCmd struct{}

func (uninstallServiceCmd) Run(g *companionCLI, o *cli.IO) error {
	svc, err := companion.ThisService(g.State)
	if err != nil {
		return err
	}
	err = svc.Uninstall()
	if errors.Is(err, companion.ErrNoServiceManager) {
		fmt.Fprintf(o.Out, "removed %s (%v)\n", svc.Path, err)
		return nil
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "removed %s: the companion no longer starts by itself; the pairing is kept\n", svc.Path)
	return nil
}
