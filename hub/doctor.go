package hub

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/jezek/xgb"
	"golang.org/x/sys/unix"

	"github.com/lowkeyhq/lowkey/devicectl/browser"
	"github.com/lowkeyhq/lowkey/pairing"
	"github.com/lowkeyhq/lowkey/sessions/cgroup"
	"github.com/lowkeyhq/lowkey/sessions/sandbox"
)

// Check is one thing "lowkey doctor" looks at, as a person would ask it.
type Check struct {
	Name string `json:"name"`
	// Status is ok, warn (works, but not as it could) or fail (something
	// the box needs is missing).
	Status string `json:"status"`
	Detail string `json:"detail"`
	// Fix is what to do, when it is not ok.
	Fix string `json:"fix,omitempty"`
}

// Check statuses.
const (
	CheckOK   = "ok"
	CheckWarn = "warn"
	CheckFail = "fail"
)

func ok(name, detail string) Check { return Check{Name: name, Status: CheckOK, Detail: detail} }
func warn(name, detail, fix string) Check {
	return Check{Name: name, Status: CheckWarn, Detail: detail, Fix: fix}
}
func failed(name, detail, fix string) Check {
	return Check{Name: name, Status: CheckFail, Detail: detail, Fix: fix}
}

// Doctor checks the running box from inside, with the hub's own account
// and view: what it could set up, how it listens, whether the LAN sees it,
// and what the machine gives it.
func (h *Hub) Doctor(ctx context.Context) []Check {
	checks := []Check{ok("hub", fmt.Sprintf("lowkey %s runs on %s (store version %d)", h.cfg.Version, h.cfg.DataDir, SchemaVersion))}
	checks = append(checks, CheckBudgets(h.groups))
	mode, account, missing := h.Separation()
	checks = append(checks, CheckSeparation(mode, account, missing))
	checks = append(checks, CheckChromium(), CheckDisplay(os.Getenv("DISPLAY")))
	checks = append(checks, h.checkListen(), h.checkCertificate(), h.checkMDNS(ctx), h.checkReach())
	checks = append(checks, CheckClock(nil), CheckDisk(h.cfg.DataDir), h.checkBackups())
	return checks
}

// CheckBudgets: can sessions have memory budgets here.
func CheckBudgets(m *cgroup.Manager) Check {
	if reason := m.Unavailable(); reason != "" {
		return failed("memory budgets", "sessions get no memory budget: "+reason,
			"run the hub as root, or from the lowkey package's systemd unit (lowkey.service, with its capabilities)")
	}
	return ok("memory budgets", "each session has its own memory and process budget (cgroup "+m.Mode()+")")
}

// CheckSeparation: are agents kept from the hub.
func CheckSeparation(mode, account, missing string) Check {
	switch {
	case missing != "":
		return failed("agent separation", "agents are not fully separated from the box: "+missing,
			"run the hub from the lowkey package's unit (agents then run as lowkey-agent), or as root, or where unprivileged user namespaces are allowed")
	case mode == sandbox.ModeAgentUser:
		return ok("agent separation", "agents run as "+account+", in namespaces of their own, apart from the hub's data and process")
	}
	return ok("agent separation", "agents run as "+account+" in namespaces of their own, apart from the hub's data and process (the agent account needs the hub run as root or from its unit)")
}

// CheckChromium: can a companion on this machine drive a browser.
func CheckChromium() Check {
	if p := browser.Find(""); p != "" {
		return ok("chromium", "found "+p)
	}
	return warn("chromium", "no Chromium here: a companion on this machine (and lowkey demo) cannot drive a browser",
		"install it (apt-get install chromium), or give the companion --browser PATH")
}

// CheckDisplay: is there a screen for a companion on this machine.
func CheckDisplay(display string) Check {
	if display == "" {
		return warn("display", "no display ($DISPLAY is not set): a companion on this machine cannot see or drive a screen; the browser runs headless",
			"run the companion in a desktop session, or give it --display :N (Xvfb gives one)")
	}
	c, err := xgb.NewConnDisplay(display)
	if err != nil {
		return warn("display", "the display "+display+" does not answer: "+err.Error(), "start the X server, or point $DISPLAY at one that runs")
	}
	defer c.Close()
	return ok("display", "the X display "+display+" answers")
}

// adjtimexStatus reads the kernel's clock status.
func adjtimexStatus() (int, error) {
	var tx unix.Timex
	return unix.Adjtimex(&tx)
}

// CheckClock: is the clock kept right (certificates, pairing windows and
// sign-ins go by it). clock reads the kernel's state (nil: adjtimex).
func CheckClock(clock func() (int, error)) Check {
	if clock == nil {
		clock = adjtimexStatus
	}
	if time.Now().Year() < 2025 {
		return failed("clock", "the clock says "+time.Now().UTC().Format(time.RFC3339)+", which is before this lowkey was made",
			"set the time (timedatectl set-ntp true)")
	}
	state, err := clock()
	if err != nil {
		return warn("clock", "the kernel does not say whether the clock is synchronized: "+err.Error(), "")
	}
	if state == unix.TIME_ERROR {
		return warn("clock", "the clock is not synchronized (no NTP): certificates, pairing windows and sign-ins go by it",
			"turn on time synchronization (timedatectl set-ntp true, or install chrony)")
	}
	return ok("clock", "synchronized ("+time.Now().UTC().Format(time.RFC3339)+")")
}

// CheckDisk: is there room where the box keeps its data.
func CheckDisk(dir string) Check {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return failed("disk", "cannot read the free space of "+dir+": "+err.Error(), "make the data directory (lowkey hub makes it at start)")
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	where := fmt.Sprintf("%s free where the box keeps its data (%s)", humanize.IBytes(uint64(free)), dir)
	switch {
	case free < diskReserve:
		return failed("disk", where+": the store stops writing below "+humanize.IBytes(diskReserve), "free some space there")
	case free < 1<<30:
		return warn("disk", where, "free some space: the store stops writing below "+humanize.IBytes(diskReserve))
	}
	return ok("disk", where)
}

func (h *Hub) checkListen() Check {
	addr := h.ln.Addr().(*net.TCPAddr)
	if addr.IP.IsLoopback() {
		return warn("listening", "the web app and the API listen on "+addr.String()+": only this machine reaches the box",
			"to reach it from the LAN: --listen 0.0.0.0:"+strconv.Itoa(addr.Port)+" (for the package: LOWKEY_OPTS in /etc/default/lowkey, then systemctl restart lowkey)")
	}
	pages := "no published pages"
	if o := h.PagesOrigin(); o != "" {
		pages = "published pages at " + o
	}
	return ok("listening", "the web app, the API, ICE over TCP and the relay on "+addr.String()+"; "+pages)
}

func (h *Hub) checkCertificate() Check {
	if h.tlsFP == "" {
		return ok("certificate", "plain HTTP on loopback (browsers treat it as secure)")
	}
	if h.cfg.TLSCert == "" {
		return ok("certificate", "HTTPS with the box's own certificate, fingerprint "+h.tlsFP+" (browsers ask once; companions pin it)")
	}
	cert, err := tls.LoadX509KeyPair(h.cfg.TLSCert, h.cfg.TLSKey)
	if err != nil {
		return failed("certificate", "the certificate "+h.cfg.TLSCert+" no longer loads: "+err.Error(), "renew it, then restart the hub")
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return failed("certificate", "the certificate "+h.cfg.TLSCert+" does not parse: "+err.Error(), "renew it")
	}
	names := strings.Join(leaf.DNSNames, ", ")
	left := time.Until(leaf.NotAfter)
	switch {
	case left <= 0:
		return failed("certificate", fmt.Sprintf("%s (%s) expired on %s: browsers refuse the box", h.cfg.TLSCert, names, leaf.NotAfter.Format("2006-01-02")),
			"renew it (the hub reads it at start: restart it after)")
	case time.Now().Before(leaf.NotBefore):
		return failed("certificate", fmt.Sprintf("%s is not valid before %s", h.cfg.TLSCert, leaf.NotBefore.Format(time.RFC3339)), "check the clock, or the certificate")
	case left < 30*24*time.Hour:
		return warn("certificate", fmt.Sprintf("%s (%s) expires in %d days", h.cfg.TLSCert, names, int(left.Hours()/24)), "renew it soon")
	}
	return ok("certificate", fmt.Sprintf("%s (%s) until %s", h.cfg.TLSCert, names, leaf.NotAfter.Format("2006-01-02")))
}

// checkMDNS looks for the box's own advertisement, as a computer on the
// LAN would.
func (h *Hub) checkMDNS(ctx context.Context) Check {
	switch {
	case h.cfg.NoMDNS:
		return warn("mdns", "the box does not advertise itself (--no-mdns): computers pair with --hub HOST:PORT", "")
	case h.advert == nil:
		return warn("mdns", "not advertised on the LAN (the hub listens on loopback, or the advertisement failed: see its log)",
			"listen beyond loopback; computers can always pair with --hub HOST:PORT")
	}
	found, err := pairing.Browse(ctx, 3*time.Second)
	if err != nil {
		return failed("mdns", "cannot look on the LAN: "+err.Error(), "computers can still pair with --hub HOST:PORT")
	}
	me := pairing.KeyFingerprintPrefix(h.id.Public())
	for _, f := range found {
		if f.KeyPrefix == me {
			return ok("mdns", "seen on the LAN as "+f.Name+" at "+f.Addr)
		}
	}
	return failed("mdns", "the box advertises itself, but its own advertisement is not seen on the LAN (multicast blocked?)",
		"allow UDP 5353 multicast on the box's network, or pair computers with --hub HOST:PORT")
}

// checkReach tries the box's web port on each of its own addresses: what
// answers there is what a router can forward to for computers outside.
func (h *Hub) checkReach() Check {
	addr := h.ln.Addr().(*net.TCPAddr)
	relay := "the box's relay (TURN over TCP) is on the same port"
	if h.cfg.NoRelay {
		relay = "the box's relay is off (--no-relay)"
	}
	if addr.IP.IsLoopback() {
		return warn("reachability", "only on loopback: no computer elsewhere can link", "listen beyond loopback; from outside, forward TCP "+strconv.Itoa(addr.Port)+" (one port: web, ICE, relay)")
	}
	ips, err := localAddrs(addr.IP)
	if err != nil {
		return warn("reachability", "cannot list the box's addresses: "+err.Error(), "")
	}
	var answered, silent []string
	for _, ip := range ips {
		a := net.JoinHostPort(ip.String(), strconv.Itoa(addr.Port))
		c, err := net.DialTimeout("tcp", a, time.Second)
		if err != nil {
			silent = append(silent, a)
			continue
		}
		c.Close()
		answered = append(answered, a)
	}
	if len(answered) == 0 {
		return failed("reachability", "the web port answers on none of the box's addresses ("+strings.Join(silent, ", ")+")", "check the firewall on the box")
	}
	return ok("reachability", "answers at "+strings.Join(answered, ", ")+"; "+relay+"; from outside this network, forward TCP "+strconv.Itoa(addr.Port)+" to one of those (or use a tunnel)")
}

// localAddrs are the box's non-loopback addresses the listener covers.
func localAddrs(listen net.IP) ([]net.IP, error) {
	if !listen.IsUnspecified() {
		return []net.IP{listen}, nil
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var out []net.IP
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok || n.IP.IsLoopback() || n.IP.IsLinkLocalUnicast() || n.IP.To4() == nil {
			continue
		}
		out = append(out, n.IP)
	}
	return out, nil
}

func (h *Hub) checkBackups() Check {
	st := h.BackupState()
	switch {
	case st.Dir == "":
		return warn("backups", "no timed backups (--backup-every 0)", "back up on a timer with --backup-every 24h, or run \"lowkey backup FILE\" yourself")
	case st.Err != "":
		return failed("backups", "the last timed backup failed at "+st.ErrTime.Format(time.RFC3339)+": "+st.Err, "fix what it says; the next try is at "+st.Next.Format(time.RFC3339))
	case st.Last == "":
		return warn("backups", "every "+ShortDuration(st.Every)+" into "+st.Dir+"; none made yet", "")
	case time.Since(st.LastTime) > 2*st.Every:
		return warn("backups", "the last backup ("+st.Last+") is from "+st.LastTime.Format(time.RFC3339)+", more than twice --backup-every ago", "check the hub's log")
	}
	return ok("backups", "every "+ShortDuration(st.Every)+" into "+st.Dir+"; last "+st.Last+" at "+st.LastTime.Format(time.RFC3339))
}
