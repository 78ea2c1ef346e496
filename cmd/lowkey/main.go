package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kong"
	"github.com/dustin/go-humanize"

	"github.com/lowkeyhq/lowkey/devicectl"
	"github.com/lowkeyhq/lowkey/hub"
	"github.com/lowkeyhq/lowkey/internal/admin"
	"github.com/lowkeyhq/lowkey/internal/bench"
	"github.com/lowkeyhq/lowkey/internal/cli"
	"github.com/lowkeyhq/lowkey/sessions"
	"github.com/lowkeyhq/lowkey/sessions/agent"
	"github.com/lowkeyhq/lowkey/sessions/cgroup"
	"github.com/lowkeyhq/lowkey/sessions/sandbox"
)

var version = "0.1.0-dev"

const description = `lowkey — the box: agents with a real shell, computers paired to it, a web app.

The data directory is --data, else $LOWKEY_DATA, else ~/.local/share/lowkey.
Admin commands talk to the running hub over DIR/hub.sock.`

// lowkey is the whole command line of the box's program.
type lowkey struct {
	Data string `name:"data" env:"LOWKEY_DATA" default:"${data}" placeholder:"DIR" help:"Data directory (store, identity, hub.sock) (default: ${default})."`

	Hub      hubCmd      `cmd:"" help:"Run the hub: the web app, the API, the links to paired computers."`
	PairCode pairCodeCmd `cmd:"" name:"pair-code" help:"Open a pairing window and print its code."`
	Devices  devicesCmd  `cmd:"" help:"List paired computers, or revoke one."`
	Token    tokenCmd    `cmd:"" help:"Print the bearer token for the HTTP API."`
	Secrets  secretsCmd  `cmd:"" help:"Credentials for agents: set (value from stdin), list, rm."`
	Backup   backupCmd   `cmd:"" help:"Back the running box up (identity and store) into FILE."`
	Restore  restoreCmd  `cmd:"" help:"Fill an empty data directory from a backup."`
	Doctor   doctorCmd   `cmd:"" help:"Check the box the way a person would ask, and say what to fix."`
	Bench    benchCmd    `cmd:"" help:"Measurements, each beside its baseline in one run."`
	Demo     demoCmd     `cmd:"" help:"A box and a paired computer on this machine: pairing, the link, the browser under a toggle, the web app."`

	cli.Common
}

func main() {
	// The box runs these two for a turn's worker, not people: they start
	// before any parsing, as they start every turn.
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "worker-init":
			os.Exit(sandbox.Init(os.Stderr))
		case "agent":
			os.Exit(agent.Main(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
		}
	}
	os.Exit(run(os.Args[1:], cli.IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}))
}

// run is the program, minus the process: tests call it.
func run(args []string, o cli.IO) int {
	var g lowkey
	return cli.Run("lowkey", description, &g, args, o, kong.Vars{
		"version":        version,
		"data":           defaultData(),
		"agent_user":     sandbox.DefaultAgentUser,
		"runtimes":       strings.Join(sessions.Runtimes, ","),
		"link_rounds":    strconv.Itoa(bench.DefaultLinkRounds),
		"link_bulk_runs": strconv.Itoa(bench.DefaultLinkBulkRuns),
		"link_isolated":  strconv.Itoa(bench.DefaultLinkIsolated),
		"browser_rounds": strconv.Itoa(bench.DefaultBrowserRounds),
	}, &g)
}

// size is a byte count given in human units: 512MiB, 1.5GB, 1048576.
type size int64

func (s size) String() string { return humanize.IBytes(uint64(s)) }

// UnmarshalText reads a size the way people write one.
func (s *size) UnmarshalText(b []byte) error {
	v := string(b)
	n, err := humanize.ParseBytes(v)
	if err != nil {
		return fmt.Errorf("%q is not a size: use a number of bytes or units like 512MiB or 2GiB", v)
	}
	if n > 1<<62 {
		return fmt.Errorf("%q is too large", v)
	}
	*s = size(n)
	return nil
}

// packageData is where the package's box keeps its data.
const packageData = "/var/lib/lowkey"

// defaultData is ~/.local/share/lowkey; where there is none and the
// package's box is installed, that box's (so "sudo lowkey pair-code"
// reaches it).
func defaultData() string {
	home, err := os.UserHomeDir()
	if err != nil {
		return ".lowkey"
	}
	own := filepath.Join(home, ".local", "share", "lowkey")
	if _, err := os.Stat(own); err != nil {
		if fi, err := os.Stat(packageData); err == nil && fi.IsDir() {
			return packageData
		}
	}
	return own
}

func logger(w io.Writer) *slog.Logger { return cli.Logger(w, "text") }

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

type hubCmd struct {
	Listen        string            `default:"127.0.0.1:7780" placeholder:"ADDR" help:"Web app and API address (default: ${default})."`
	PagesListen   string            `default:"127.0.0.1:7781" placeholder:"ADDR" help:"Published pages address, their own origin (\"\" serves none) (default: ${default})."`
	PagesOrigin   string            `placeholder:"URL" help:"URL people reach published pages at, when it is another host name (must not be the hub's origin)."`
	Name          string            `placeholder:"NAME" help:"The box's name on the LAN (default: host name)."`
	TLSCert       string            `name:"tls-cert" type:"existingfile" placeholder:"FILE" help:"HTTPS certificate file (default beyond loopback: one made from the box's identity)."`
	TLSKey        string            `name:"tls-key" type:"existingfile" placeholder:"FILE" help:"HTTPS key file, with --tls-cert."`
	NoMDNS        bool              `name:"no-mdns" help:"Do not advertise on the LAN."`
	SessionMemory size              `default:"512MiB" placeholder:"SIZE" help:"Default memory budget of a session (512MiB, 2GiB, or bytes) (default: ${default})."`
	AgentUser     string            `default:"${agent_user}" placeholder:"NAME" help:"The account turns and jobs run as when the hub runs as root (made when it is the default and missing) (default: ${default})."`
	AgentPath     string            `placeholder:"DIRS" help:"Where agent CLIs (claude) are found: the PATH of turns and jobs (default: the system's directories)."`
	AgentBin      map[string]string `placeholder:"PRESET=PATH" help:"A preset's CLI at a path of its own (--agent-bin claude=/opt/claude/bin/claude); repeatable."`
	WorkDir       string            `placeholder:"DIR" help:"Where the sessions' working directories go, outside --data (default: /var/lib/lowkey-work as root, DATA-work otherwise)."`
	ICEServer     []string          `name:"ice-server" sep:"none" placeholder:"URL" help:"A STUN server to find paths with (stun:HOST:PORT); repeatable. TURN servers, which need credentials, go in --ice-servers."`
	ICEServers    string            `name:"ice-servers" type:"existingfile" placeholder:"FILE" help:"STUN/TURN servers with their credentials, as WebRTC writes them: [{\"urls\":[\"turn:HOST:3478?transport=tcp\"],\"username\":\"…\",\"credential\":\"…\"}] (owner-only file)."`
	NoRelay       bool              `name:"no-relay" help:"Do not relay links through the box itself (TURN over TCP on the web port)."`
	BackupEvery   time.Duration     `name:"backup-every" default:"24h" placeholder:"DURATION" help:"Back the box up this often, checking each archive (0: never; at least 1m) (default: ${default})."`
	BackupDir     string            `name:"backup-dir" type:"path" placeholder:"DIR" help:"Where timed backups go, owner-only: they hold the box's keys (default: DATA/backups)."`
	BackupKeep    int               `name:"backup-keep" default:"7" placeholder:"N" help:"How many timed backups to keep, the newest (default: ${default})."`
	LogFormat     string            `name:"log-format" enum:"text,json" default:"text" help:"The log on stderr: text lines, or one JSON object a line (text, json) (default: ${default})."`
}

func (c *hubCmd) Run(g *lowkey, o *cli.IO) error {
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return &cli.UsageError{Msg: "--tls-cert and --tls-key go together"}
	}
	for name := range c.AgentBin {
		if agent.Presets[name] == nil {
			return &cli.UsageError{Msg: fmt.Sprintf("--agent-bin %s=…: there is no preset %q", name, name)}
		}
	}
	if c.BackupEvery != 0 && c.BackupEvery < time.Minute {
		return &cli.UsageError{Msg: fmt.Sprintf("--backup-every %s: at least 1m, or 0 for no timed backups", c.BackupEvery)}
	}
	if c.BackupKeep < 1 {
		return &cli.UsageError{Msg: fmt.Sprintf("--backup-keep %d: keep at least 1", c.BackupKeep)}
	}
	servers, err := c.iceServers()
	if err != nil {
		return err
	}
	cfg := hub.Config{
		BackupEvery: c.BackupEvery, BackupDir: c.BackupDir, BackupKeep: c.BackupKeep,
		ICEServers: servers, NoRelay: c.NoRelay,
		DataDir: g.Data, Listen: c.Listen, PagesListen: c.PagesListen, PagesOrigin: c.PagesOrigin,
		Name: c.Name, TLSCert: c.TLSCert, TLSKey: c.TLSKey, NoMDNS: c.NoMDNS,
		SessionMemory: int64(c.SessionMemory), AgentUser: c.AgentUser, AgentPath: c.AgentPath, AgentBins: c.AgentBin, WorkDir: c.WorkDir,
		Version: version, Logger: cli.Logger(o.Err, c.LogFormat),
	}
	h, err := hub.Start(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "Lowkey hub is ready: %s\n", h.URL())
	switch mode, account, missing := h.Separation(); {
	case missing != "":
		fmt.Fprintf(o.Out, "Warning: agents are not fully separated from the box: %s\n", missing)
	case mode == sandbox.ModeAgentUser:
		fmt.Fprintf(o.Out, "Agents run as %s, apart from the hub's data and process\n", account)
	default:
		fmt.Fprintf(o.Out, "Agents run in namespaces of their own, apart from the hub's data and process\n")
	}
	if fp := h.TLSFingerprint(); fp != "" {
		fmt.Fprintf(o.Out, "HTTPS certificate fingerprint (check it when your browser asks): %s\n", fp)
	}
	if u := h.SetupURL(); u != "" {
		fmt.Fprintf(o.Out, "Create the owner (this link works once): %s\n", u)
	}
	if b := h.BackupState(); b.Dir != "" {
		fmt.Fprintf(o.Out, "Backing up every %s into %s (keeping %d)\n", hub.ShortDuration(b.Every), b.Dir, c.BackupKeep)
	}
	if origin := h.PagesOrigin(); origin != "" {
		fmt.Fprintf(o.Out, "Published pages are served at %s\n", origin)
	}
	ctx, stop := signalContext()
	defer stop()
	<-ctx.Done()
	fmt.Fprintln(o.Out, "stopping")
	return h.Close()
}

// iceServers are the --ice-server URLs and the --ice-servers file's.
func (c *hubCmd) iceServers() ([]devicectl.ICEServer, error) {
	var servers []devicectl.ICEServer
	for _, u := range c.ICEServer {
		if !strings.HasPrefix(u, "stun:") && !strings.HasPrefix(u, "stuns:") {
			return nil, &cli.UsageError{Msg: fmt.Sprintf("--ice-server %s: give a STUN server (stun:HOST:PORT); a TURN server and its credentials go in --ice-servers FILE, so they are not on the command line", u)}
		}
		servers = append(servers, devicectl.ICEServer{URLs: []string{u}})
	}
	if c.ICEServers != "" {
		more, err := hub.LoadICEServers(c.ICEServers)
		if err != nil {
			return nil, err
		}
		servers = append(servers, more...)
	}
	if err := devicectl.CheckICEServers(servers); err != nil {
		return nil, &cli.UsageError{Msg: err.Error()}
	}
	return servers, nil
}

// call does one admin request against the running hub of g.Data.
func call(g *lowkey, method, path string, body, out any) error {
	err := admin.New(hub.SocketPath(g.Data)).Do(method, path, body, out)
	if errors.Is(err, admin.ErrNoHub) {
		return &cli.Unreachable{Err: err}
	}
	return err
}

type pairCodeCmd struct {
	TTL time.Duration `name:"ttl" default:"5m" placeholder:"DURATION" help:"How long the code stays valid (at most 5m) (default: ${default})."`
}

func (c *pairCodeCmd) Run(g *lowkey, o *cli.IO) error {
	if c.TTL <= 0 || c.TTL > 5*time.Minute {
		return &cli.UsageError{Msg: fmt.Sprintf("--ttl %s: a code lasts more than 0s and at most 5m", c.TTL)}
	}
	var out struct {
		Code      string    `json:"code"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if err := call(g, "POST", "/admin/pair-code?ttl="+c.TTL.String(), nil, &out); err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "Pairing code: %s (valid until %s, %s from now)\n", out.Code, out.ExpiresAt.Local().Format("15:04:05"), time.Until(out.ExpiresAt).Round(time.Second))
	fmt.Fprintf(o.Out, "On the computer: lowkey-companion pair --code %s\n", out.Code)
	return nil
}

type devicesCmd struct {
	List   devicesListCmd   `cmd:"" default:"1" help:"List paired computers (the default)."`
	Revoke devicesRevokeCmd `cmd:"" help:"Unpair a computer now: its link closes and it cannot connect again."`
}

type devicesListCmd struct{}

func (devicesListCmd) Run(g *lowkey, o *cli.IO) error {
	var ds []hub.DeviceView
	if err := call(g, "GET", "/api/v1/devices", nil, &ds); err != nil {
		return err
	}
	printDevices(o.Out, ds)
	return nil
}

type devicesRevokeCmd struct {
	ID string `arg:"" help:"The computer's ID (see \"lowkey devices\")."`
}

func (c *devicesRevokeCmd) Run(g *lowkey, o *cli.IO) error {
	if err := call(g, "DELETE", "/api/v1/devices/"+c.ID, nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "revoked %s: its link is closed and it cannot connect again\n", c.ID)
	return nil
}

func printDevices(w io.Writer, ds []hub.DeviceView) {
	if len(ds) == 0 {
		fmt.Fprintln(w, "no paired computers: run \"lowkey pair-code\" to pair one")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tONLINE\tRTT\tPATH\tPLATFORM\tLAST SEEN\tCAN DRIVE")
	for _, d := range ds {
		online, rtt, path := "no", "-", "-"
		if d.Path != "" {
			path = devicectl.PathLabel(d.Path)
		}
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
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, d.Name, online, rtt, path, d.Platform, seen, canDo(d.Capabilities))
	}
	tw.Flush()
	for _, d := range ds {
		for _, name := range []string{"browser", "desktop"} {
			if c, ok := capabilities(d.Capabilities)[name]; ok && !c.Available {
				fmt.Fprintf(w, "%s: no %s control: %s\n", d.Name, name, c.Reason)
			}
		}
	}
}

// capabilities reads what a computer reported it can do; nothing when it
// reported nothing readable.
func capabilities(raw json.RawMessage) map[string]devicectl.Availability {
	var caps map[string]devicectl.Availability
	if json.Unmarshal(raw, &caps) != nil {
		return nil
	}
	return caps
}

// canDo names the capabilities a computer reported, or "-".
func canDo(raw json.RawMessage) string {
	caps := capabilities(raw)
	if len(caps) == 0 {
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

type tokenCmd struct {
	Rotate bool `help:"Replace the token: the old one stops working at once."`
}

func (c *tokenCmd) Run(g *lowkey, o *cli.IO) error {
	var out struct {
		Token string `json:"token"`
	}
	method := "GET"
	if c.Rotate {
		method = "POST"
	}
	if err := call(g, method, "/admin/token", nil, &out); err != nil {
		return err
	}
	fmt.Fprintln(o.Out, out.Token)
	if c.Rotate {
		fmt.Fprintln(o.Err, "the old token no longer works")
	}
	return nil
}

type secretsCmd struct {
	Set  secretsSetCmd  `cmd:"" help:"Store a credential for agents; the value is read from stdin."`
	List secretsListCmd `cmd:"" help:"List the stored names and who gets each."`
	Rm   secretsRmCmd   `cmd:"" help:"Remove one."`
}

type secretsSetCmd struct {
	Name string `arg:"" help:"The credential's name (agents see it by this name)."`
	For  string `name:"for" default:"all" enum:"${runtimes},all" help:"The runtime that gets it: ${runtimes} or all (default: ${default})."`
}

func (c *secretsSetCmd) Run(g *lowkey, o *cli.IO) error {
	if f, ok := o.In.(*os.File); ok {
		if term, err := f.Stat(); err == nil && term.Mode()&os.ModeCharDevice != 0 {
			fmt.Fprintf(o.Err, "Value for %s (then Enter): ", c.Name)
		}
	}
	raw, err := io.ReadAll(io.LimitReader(o.In, 64<<10))
	if err != nil {
		return err
	}
	value := strings.TrimRight(string(raw), "\r\n")
	if value == "" {
		return errors.New("no value on stdin")
	}
	if err := call(g, "PUT", "/admin/secrets/"+c.Name, map[string]string{"value": value, "for": c.For}, nil); err != nil {
		return err
	}
	who := "turns"
	if c.For != "all" {
		who = "turns of the " + c.For + " runtime"
	}
	fmt.Fprintf(o.Out, "stored %s: %s get it in their credentials file, never in their environment\n", c.Name, who)
	return nil
}

type secretsListCmd struct{}

func (secretsListCmd) Run(g *lowkey, o *cli.IO) error {
	var list []struct{ Name, For string }
	if err := call(g, "GET", "/admin/secrets", nil, &list); err != nil {
		return err
	}
	for _, s := range list {
		fmt.Fprintf(o.Out, "%s\tfor %s\n", s.Name, s.For)
	}
	return nil
}

type secretsRmCmd struct {
	Name string `arg:"" help:"The credential to remove."`
}

func (c *secretsRmCmd) Run(g *lowkey, o *cli.IO) error {
	if err := call(g, "DELETE", "/admin/secrets/"+c.Name, nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "removed %s\n", c.Name)
	return nil
}

type backupCmd struct {
	File string `arg:"" type:"path" help:"The archive to write (it holds the box's keys: keep it private)."`
}

func (c *backupCmd) Run(g *lowkey, o *cli.IO) error {
	// "Backed up" only for an archive that is whole.
	err := hub.WriteVerifiedBackup(c.File, func(f *os.File) error {
		return admin.New(hub.SocketPath(g.Data)).Download("/admin/backup", f)
	})
	if errors.Is(err, admin.ErrNoHub) {
		return &cli.Unreachable{Err: err}
	}
	if err != nil {
		return err
	}
	fi, err := os.Stat(c.File)
	if err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "backed up to %s (%d bytes, verified); it holds the box's keys: keep it private\n", c.File, fi.Size())
	return nil
}

type restoreCmd struct {
	File string `arg:"" type:"existingfile" help:"The backup archive to restore from."`
}

func (c *restoreCmd) Run(g *lowkey, o *cli.IO) error {
	if err := hub.VerifyBackupFile(c.File); err != nil {
		return fmt.Errorf("not restored: %w", err)
	}
	f, err := os.Open(c.File)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := hub.Restore(g.Data, f); err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "restored into %s: start it with \"lowkey hub --data %s\"\n", g.Data, g.Data)
	return nil
}

type doctorCmd struct {
	JSON bool `name:"json" help:"Print one JSON object: {\"ok\": bool, \"checks\": [{\"name\",\"status\",\"detail\",\"fix\"}]}."`
}

// Run asks the running hub (it checks with its own account and view);
// with none running, it checks what it can from here and says so.
func (c *doctorCmd) Run(g *lowkey, o *cli.IO) error {
	var out struct {
		Checks []hub.Check `json:"checks"`
	}
	err := call(g, "GET", "/admin/doctor", nil, &out)
	var unreachable *cli.Unreachable
	switch {
	case errors.As(err, &unreachable):
		out.Checks = append([]hub.Check{{Name: "hub", Status: hub.CheckFail,
			Detail: "no hub runs on " + g.Data + ": the rest is checked from here, as " + currentUser(),
			Fix:    "start it: systemctl start lowkey (the package), or lowkey hub --data " + g.Data}}, localChecks(g.Data)...)
	case err != nil:
		return err
	}
	bad := 0
	for _, ch := range out.Checks {
		if ch.Status == hub.CheckFail {
			bad++
		}
	}
	if c.JSON {
		enc := json.NewEncoder(o.Out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(map[string]any{"ok": bad == 0, "checks": out.Checks}); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(o.Out, 0, 4, 2, ' ', 0)
		for _, ch := range out.Checks {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", strings.ToUpper(ch.Status), ch.Name, ch.Detail)
			if ch.Fix != "" {
				fmt.Fprintf(tw, "\t\t→ %s\n", ch.Fix)
			}
		}
		tw.Flush()
	}
	if bad > 0 {
		return fmt.Errorf("%d of %d checks failed", bad, len(out.Checks))
	}
	return nil
}

// localChecks are what can be checked without the hub.
func localChecks(data string) []hub.Check {
	dir := data
	if _, err := os.Stat(dir); err != nil {
		dir = filepath.Dir(dir)
	}
	return []hub.Check{hub.CheckBudgets(cgroup.Detect("lowkey")), hub.CheckChromium(), hub.CheckDisplay(os.Getenv("DISPLAY")),
		hub.CheckClock(nil), hub.CheckDisk(dir)}
}

func currentUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "uid " + strconv.Itoa(os.Getuid())
}
