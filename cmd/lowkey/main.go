package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/lowkeyhq/lowkey/devicectl"
	"github.com/lowkeyhq/lowkey/hub"
	"github.com/lowkeyhq/lowkey/internal/admin"
	"github.com/lowkeyhq/lowkey/sessions/agent"
	"github.com/lowkeyhq/lowkey/sessions/sandbox"
)

var version = "0.1.0-dev"

const usage = `lowkey — the box

Usage:
  lowkey hub [--data DIR] [--listen ADDR] [--name NAME] [--no-mdns] [--session-memory SIZE]
             [--pages-listen ADDR] [--pages-origin URL] [--tls-cert FILE --tls-key FILE]
             [--agent-user NAME] [--work-dir DIR]
  lowkey pair-code [--data DIR] [--ttl DURATION]   open a pairing window and print its code
  lowkey devices [--data DIR]                      list paired computers
  lowkey devices revoke [--data DIR] ID            unpair a computer now
  lowkey token [--data DIR] [--rotate]             print the bearer token for the HTTP API (--rotate: replace it)
  lowkey secrets set [--data DIR] [--for RUNTIME] NAME
                                                   store a credential for agents (value from stdin), for one
                                                   runtime (builtin, openai, exec) or all (the default)
  lowkey secrets list|rm [--data DIR] [NAME]       list names, or remove one
  lowkey backup [--data DIR] FILE                  back the running box up (identity and store)
  lowkey restore [--data DIR] FILE                 fill an empty data directory from a backup
  lowkey bench link|browser|sessions [--json]      each measured beside its baseline in one run
  lowkey bench live [--json]                       the live screen's frame rate (a private Xvfb)
  lowkey bench load [--json]                       50 companions and 20 busy sessions on one box
  lowkey bench soak [--minutes N]                  the box's whole life in a loop, errors and resources
  lowkey demo [--once]                             a box and a paired computer on this machine: pairing,
                                                   the link, the browser under a toggle, the web app

The data directory is --data, else $LOWKEY_DATA, else ~/.local/share/lowkey.
Admin commands talk to the running hub over DIR/hub.sock.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	cmd, args := os.Args[1], os.Args[2:]
	var err error
	switch cmd {
	case "hub":
		err = runHub(args)
	case "pair-code":
		err = runPairCode(args)
	case "devices":
		err = runDevices(args)
	case "token":
		err = runToken(args)
	case "secrets":
		err = runSecrets(args)
	case "backup":
		err = runBackup(args)
	case "restore":
		err = runRestore(args)
	case "agent":
		// The box runs this for a turn; it is not for people.
		os.Exit(agent.Main(args, os.Stdin, os.Stdout, os.Stderr))
	case "worker-init":
		// The first process of a worker's namespaces; not for people.
		os.Exit(sandbox.Init(os.Stderr))
	case "bench":
		err = runBench(args)
	case "demo":
		err = runDemo(args)
	case "help", "-h", "--help":
		fmt.Print(usage)
		return
	case "version", "--version":
		fmt.Println("lowkey", version)
		return
	default:
		fmt.Fprintf(os.Stderr, "lowkey: unknown command %q\n\n%s", cmd, usage)
		os.Exit(2)
	}
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "lowkey:", err)
		os.Exit(1)
	}
}

// sizeFlag is a byte count given in human units: 512MiB, 1.5GB, 1048576.
type sizeFlag int64

func (s *sizeFlag) String() string { return humanize.IBytes(uint64(*s)) }

func (s *sizeFlag) Set(v string) error {
	n, err := humanize.ParseBytes(v)
	if err != nil {
		return fmt.Errorf("%q is not a size: use a number of bytes or units like 512MiB or 2GiB", v)
	}
	if n > 1<<62 {
		return fmt.Errorf("%q is too large", v)
	}
	*s = sizeFlag(n)
	return nil
}

func defaultData() string {
	if d := os.Getenv("LOWKEY_DATA"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ".lowkey"
	}
	return filepath.Join(home, ".local", "share", "lowkey")
}

func newFlags(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

func logger() *slog.Logger {
	level := slog.LevelInfo
	if os.Getenv("LOWKEY_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func runHub(args []string) error {
	fs := newFlags("hub", "lowkey hub [flags]")
	var cfg hub.Config
	fs.StringVar(&cfg.DataDir, "data", defaultData(), "data directory (store, identity, hub.sock)")
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:7780", "web app and API address")
	fs.StringVar(&cfg.PagesListen, "pages-listen", "127.0.0.1:7781", "published pages address, their own origin (\"\" serves none)")
	fs.StringVar(&cfg.PagesOrigin, "pages-origin", "", "URL people reach published pages at, when it is another host name (must not be the hub's origin)")
	fs.StringVar(&cfg.Name, "name", "", "the box's name on the LAN (default: host name)")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "HTTPS certificate file (default beyond loopback: one made from the box's identity)")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "HTTPS key file, with --tls-cert")
	fs.BoolVar(&cfg.NoMDNS, "no-mdns", false, "do not advertise on the LAN")
	cfg.SessionMemory = 512 << 20
	fs.Var((*sizeFlag)(&cfg.SessionMemory), "session-memory", "default memory budget of a session (512MiB, 2GiB, or bytes)")
	fs.StringVar(&cfg.AgentUser, "agent-user", sandbox.DefaultAgentUser, "the account turns and jobs run as when the hub runs as root (made when it is the default and missing)")
	fs.StringVar(&cfg.WorkDir, "work-dir", "", "where the sessions' working directories go, outside --data (default: /var/lib/lowkey-work as root, DATA-work otherwise)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("hub takes no arguments, got %q", fs.Args())
	}
	cfg.Version, cfg.Logger = version, logger()
	h, err := hub.Start(cfg)
	if err != nil {
		return err
	}
	fmt.Printf("Lowkey hub is ready: %s\n", h.URL())
	switch mode, account, missing := h.Separation(); {
	case missing != "":
		fmt.Printf("Warning: agents are not fully separated from the box: %s\n", missing)
	case mode == sandbox.ModeAgentUser:
		fmt.Printf("Agents run as %s, apart from the hub's data and process\n", account)
	default:
		fmt.Printf("Agents run in namespaces of their own, apart from the hub's data and process\n")
	}
	if fp := h.TLSFingerprint(); fp != "" {
		fmt.Printf("HTTPS certificate fingerprint (check it when your browser asks): %s\n", fp)
	}
	if u := h.SetupURL(); u != "" {
		fmt.Printf("Create the owner (this link works once): %s\n", u)
	}
	if o := h.PagesOrigin(); o != "" {
		fmt.Printf("Published pages are served at %s\n", o)
	}
	ctx, stop := signalContext()
	defer stop()
	<-ctx.Done()
	fmt.Println("stopping")
	return h.Close()
}

func adminClient(fs *flag.FlagSet, args []string) (*admin.Client, error) {
	data := fs.String("data", defaultData(), "data directory of the running hub")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return admin.New(hub.SocketPath(*data)), nil
}

func runPairCode(args []string) error {
	fs := newFlags("pair-code", "lowkey pair-code [--data DIR] [--ttl DURATION]")
	ttl := fs.Duration("ttl", 5*time.Minute, "how long the code stays valid (at most 5m)")
	c, err := adminClient(fs, args)
	if err != nil {
		return err
	}
	var out struct {
		Code      string    `json:"code"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if err := c.Do("POST", "/admin/pair-code?ttl="+ttl.String(), nil, &out); err != nil {
		return err
	}
	fmt.Printf("Pairing code: %s (valid until %s, %s from now)\n", out.Code, out.ExpiresAt.Local().Format("15:04:05"), time.Until(out.ExpiresAt).Round(time.Second))
	fmt.Printf("On the computer: lowkey-companion pair --code %s\n", out.Code)
	return nil
}

func runDevices(args []string) error {
	if len(args) > 0 && args[0] == "revoke" {
		fs := newFlags("devices revoke", "lowkey devices revoke [--data DIR] ID")
		c, err := adminClient(fs, args[1:])
		if err != nil {
			return err
		}
		if fs.NArg() != 1 {
			return errors.New("devices revoke takes one device ID (see \"lowkey devices\")")
		}
		if err := c.Do("DELETE", "/api/v1/devices/"+fs.Arg(0), nil, nil); err != nil {
			return err
		}
		fmt.Printf("revoked %s: its link is closed and it cannot connect again\n", fs.Arg(0))
		return nil
	}
	fs := newFlags("devices", "lowkey devices [--data DIR] | lowkey devices revoke ID")
	c, err := adminClient(fs, args)
	if err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unknown devices subcommand %q (try \"revoke ID\")", fs.Arg(0))
	}
	var ds []hub.DeviceView
	if err := c.Do("GET", "/api/v1/devices", nil, &ds); err != nil {
		return err
	}
	printDevices(os.Stdout, ds)
	return nil
}

func printDevices(w io.Writer, ds []hub.DeviceView) {
	if len(ds) == 0 {
		fmt.Fprintln(w, "no paired computers: run \"lowkey pair-code\" to pair one")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tONLINE\tRTT\tPLATFORM\tLAST SEEN\tCAN DRIVE")
	for _, d := range ds {
		online, rtt := "no", "-"
		if d.Online {
			online = "yes"
		}
		if d.RTTMillis != nil {
			rtt = strconv.FormatFloat(*d.RTTMillis, 'f', 2, 64) + " ms"
		}
		seen := "never"
		if !d.LastSeen.IsZero() {
			seen = d.LastSeen.Local().Format("2006-01-02 15:04:05")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, d.Name, online, rtt, d.Platform, seen, canDo(d.Capabilities))
	}
	tw.Flush()
	for _, d := range ds {
		var caps map[string]devicectl.Availability
		_ = json.Unmarshal(d.Capabilities, &caps)
		for _, name := range []string{"browser", "desktop"} {
			if c, ok := caps[name]; ok && !c.Available {
				fmt.Fprintf(w, "%s: no %s control: %s\n", d.Name, name, c.Reason)
			}
		}
	}
}

func runToken(args []string) error {
	fs := newFlags("token", "lowkey token [--data DIR] [--rotate]")
	rotate := fs.Bool("rotate", false, "replace the token: the old one stops working at once")
	c, err := adminClient(fs, args)
	if err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("token takes no arguments, got %q", fs.Args())
	}
	var out struct {
		Token string `json:"token"`
	}
	method := "GET"
	if *rotate {
		method = "POST"
	}
	if err := c.Do(method, "/admin/token", nil, &out); err != nil {
		return err
	}
	fmt.Println(out.Token)
	if *rotate {
		fmt.Fprintln(os.Stderr, "the old token no longer works")
	}
	return nil
}

// canDo names the capabilities a computer reported, or "-".
func canDo(raw json.RawMessage) string {
	var caps map[string]devicectl.Availability
	if json.Unmarshal(raw, &caps) != nil || len(caps) == 0 {
		return "-"
	}
	var out []string
	for _, name := range []string{"browser", "desktop"} {
		if caps[name].Available {
			out = append(out, name)
		}
	}
	if len(out) == 0 {
		return "nothing"
	}
	return strings.Join(out, ", ")
}

func runSecrets(args []string) error {
	if len(args) == 0 {
		return errors.New("secrets needs set NAME, list or rm NAME")
	}
	sub := args[0]
	fs := newFlags("secrets "+sub, "lowkey secrets set [--for RUNTIME] NAME | list | rm NAME [--data DIR]")
	var forRuntime *string
	if sub == "set" {
		forRuntime = fs.String("for", "all", "the runtime that gets it: builtin, openai, exec or all")
	}
	c, err := adminClient(fs, args[1:])
	if err != nil {
		return err
	}
	switch sub {
	case "set":
		if fs.NArg() != 1 {
			return errors.New("secrets set takes one NAME; the value is read from stdin")
		}
		if term, _ := os.Stdin.Stat(); term != nil && term.Mode()&os.ModeCharDevice != 0 {
			fmt.Fprintf(os.Stderr, "Value for %s (then Enter): ", fs.Arg(0))
		}
		raw, err := io.ReadAll(io.LimitReader(os.Stdin, 64<<10))
		if err != nil {
			return err
		}
		value := strings.TrimRight(string(raw), "\r\n")
		if value == "" {
			return errors.New("no value on stdin")
		}
		if err := c.Do("PUT", "/admin/secrets/"+fs.Arg(0), map[string]string{"value": value, "for": *forRuntime}, nil); err != nil {
			return err
		}
		who := "turns"
		if *forRuntime != "all" {
			who = "turns of the " + *forRuntime + " runtime"
		}
		fmt.Printf("stored %s: %s get it in their credentials file, never in their environment\n", fs.Arg(0), who)
	case "list":
		var list []struct{ Name, For string }
		if err := c.Do("GET", "/admin/secrets", nil, &list); err != nil {
			return err
		}
		for _, s := range list {
			fmt.Printf("%s\tfor %s\n", s.Name, s.For)
		}
	case "rm":
		if fs.NArg() != 1 {
			return errors.New("secrets rm takes one NAME")
		}
		if err := c.Do("DELETE", "/admin/secrets/"+fs.Arg(0), nil, nil); err != nil {
			return err
		}
		fmt.Printf("removed %s\n", fs.Arg(0))
	default:
		return fmt.Errorf("unknown secrets subcommand %q: use set, list or rm", sub)
	}
	return nil
}

func runBackup(args []string) error {
	fs := newFlags("backup", "lowkey backup [--data DIR] FILE")
	c, err := adminClient(fs, args)
	if err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("backup takes one FILE to write")
	}
	tmp := fs.Arg(0) + ".partial"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	err = c.Download("/admin/backup", f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	// "Backed up" only for an archive that is whole.
	if err := verifyFile(tmp); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("backup not written: %w", err)
	}
	if err := os.Rename(tmp, fs.Arg(0)); err != nil {
		return err
	}
	fi, err := os.Stat(fs.Arg(0))
	if err != nil {
		return err
	}
	fmt.Printf("backed up to %s (%d bytes, verified); it holds the box's keys: keep it private\n", fs.Arg(0), fi.Size())
	return nil
}

// verifyFile checks a backup archive is complete.
func verifyFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return hub.VerifyBackup(f)
}

func runRestore(args []string) error {
	fs := newFlags("restore", "lowkey restore [--data DIR] FILE")
	data := fs.String("data", defaultData(), "the empty data directory to fill")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("restore takes one backup FILE")
	}
	if err := verifyFile(fs.Arg(0)); err != nil {
		return fmt.Errorf("not restored: %w", err)
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		return err
	}
	defer f.Close()
	if err := hub.Restore(*data, f); err != nil {
		return err
	}
	fmt.Printf("restored into %s: start it with \"lowkey hub --data %s\"\n", *data, *data)
	return nil
}
