package companion

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"
)

// A service keeps "lowkey-companion run" going for the person signed in:
// a systemd user unit on Linux, a launchd agent on macOS, a startup entry
// (the Run key of the person's registry) on Windows. None needs
// administrator rights, and each starts the program again when it ends.
const (
	// ServiceName is the systemd user unit.
	ServiceName = "lowkey-companion.service"
	// LaunchdLabel names the launchd agent.
	LaunchdLabel = "com.lowkeyhq.companion"
	// RunValue names the Windows startup entry.
	RunValue = "Lowkey companion"
)

// Service is how one system starts the companion.
type Service struct {
	GOOS string
	// Path is the file it is written to (Windows: the registry key).
	Path string
	// Content is the unit, the plist, or the Run value's command line.
	Content []byte
	// Start and Stop are what makes it run now and stop now (empty: the
	// next sign-in starts it).
	Start, Stop [][]string
}

// ServiceFor describes the service for goos that runs exe with state.
// home and configHome are the person's home and XDG config directory.
func ServiceFor(goos, exe, state, home, configHome string) (Service, error) {
	if !isAbs(goos, exe) || !isAbs(goos, state) {
		return Service{}, fmt.Errorf("the program (%s) and the state directory (%s) must be absolute paths", exe, state)
	}
	switch goos {
	case "linux":
		if configHome == "" {
			configHome = filepath.Join(home, ".config")
		}
		return Service{GOOS: goos, Path: filepath.Join(configHome, "systemd", "user", ServiceName),
			Content: SystemdUserUnit(exe, []string{"run", "--state", state}),
			Start:   [][]string{{"systemctl", "--user", "daemon-reload"}, {"systemctl", "--user", "enable", "--now", ServiceName}},
			Stop:    [][]string{{"systemctl", "--user", "disable", "--now", ServiceName}}}, nil
	case "darwin":
		path := filepath.Join(home, "Library", "LaunchAgents", LaunchdLabel+".plist")
		plist, err := launchdPlist(exe, state, filepath.Join(state, "companion.log"))
		if err != nil {
			return Service{}, err
		}
		return Service{GOOS: goos, Path: path, Content: plist,
			Start: [][]string{{"launchctl", "load", "-w", path}},
			Stop:  [][]string{{"launchctl", "unload", "-w", path}}}, nil
	case "windows":
		return Service{GOOS: goos, Path: `HKCU\Software\Microsoft\Windows\CurrentVersion\Run`,
			Content: []byte(windowsQuote(exe) + " run --state " + windowsQuote(state))}, nil
	}
	return Service{}, fmt.Errorf("no service for %s: run \"lowkey-companion run\" from your system's start-up", goos)
}

// isAbs says whether p is an absolute path on goos.
func isAbs(goos, p string) bool {
	if goos == "windows" {
		return strings.HasPrefix(p, `\\`) || (len(p) > 2 && p[1] == ':' && (p[2] == '\\' || p[2] == '/'))
	}
	return path.IsAbs(p)
}

// SystemdUserUnit is the unit that runs exe with args for the person
// signed in (the package's, and install-service's).
func SystemdUserUnit(exe string, args []string) []byte {
	line := []string{systemdQuote(exe)}
	for _, a := range args {
		line = append(line, systemdQuote(a))
	}
	return []byte(`[Unit]
Description=Lowkey companion: this computer's link to its box
Documentation=https://github.com/lowkeyhq/lowkey
After=graphical-session.target network-online.target

[Service]
Type=simple
ExecStart=` + strings.Join(line, " ") + `
Restart=on-failure
RestartSec=5s

[Install]
WantedBy=default.target
`)
}

// systemdQuote quotes a word of ExecStart= when it needs it (systemd
// reads C-style double quotes; % and $ are its own specifiers).
func systemdQuote(s string) string {
	s = strings.ReplaceAll(s, "%", "%%")
	s = strings.ReplaceAll(s, "$", "$$")
	if s != "" && !strings.ContainsAny(s, " \t\"'\\;") {
		return s
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// windowsQuote quotes an argument as Windows' command-line parsing reads
// it back (CommandLineToArgvW).
func windowsQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\"") {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	slashes := 0
	for _, r := range s {
		switch r {
		case '\\':
			slashes++
			continue
		case '"':
			b.WriteString(strings.Repeat(`\`, 2*slashes+1))
		default:
			b.WriteString(strings.Repeat(`\`, slashes))
		}
		slashes = 0
		b.WriteRune(r)
	}
	b.WriteString(strings.Repeat(`\`, 2*slashes))
	b.WriteByte('"')
	return b.String()
}

// launchdPlist is the launchd agent: started at sign-in, started again
// when it ends, its output in the state directory.
func launchdPlist(exe, state, log string) ([]byte, error) {
	var args bytes.Buffer
	for _, a := range []string{exe, "run", "--state", state} {
		args.WriteString("\t\t<string>")
		if err := xml.EscapeText(&args, []byte(a)); err != nil {
			return nil, err
		}
		args.WriteString("</string>\n")
	}
	var logEsc bytes.Buffer
	if err := xml.EscapeText(&logEsc, []byte(log)); err != nil {
		return nil, err
	}
	return []byte(`<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>Label</key>
	<string>` + LaunchdLabel + `</string>
	<key>ProgramArguments</key>
	<array>
` + args.String() + `	</array>
	<key>RunAtLoad</key>
	<true/>
	<key>KeepAlive</key>
	<dict>
		<key>SuccessfulExit</key>
		<false/>
	</dict>
	<key>ProcessType</key>
	<string>Interactive</string>
	<key>StandardOutPath</key>
	<string>` + logEsc.String() + `</string>
	<key>StandardErrorPath</key>
	<string>` + logEsc.String() + `</string>
</dict>
</plist>
`), nil
}

// ErrNoServiceManager: the service is written but nothing here starts it
// now (no systemd user manager, or no launchctl).
var ErrNoServiceManager = errors.New("no service manager answered")

// Install writes s and starts it. A Start that fails leaves the file
// (the next sign-in starts it) and says so with ErrNoServiceManager.
func (s Service) Install() error {
	if s.GOOS == "windows" {
		return installRunKey(string(s.Content))
	}
	if err := os.MkdirAll(filepath.Dir(s.Path), 0o755); err != nil {
		return err
	}
	tmp := s.Path + ".new"
	if err := os.WriteFile(tmp, s.Content, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, s.Path); err != nil {
		return err
	}
	return s.run(s.Start)
}

// Uninstall stops s and removes it; one not installed is not an error.
func (s Service) Uninstall() error {
	if s.GOOS == "windows" {
		return removeRunKey()
	}
	if _, err := os.Stat(s.Path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	stopErr := s.run(s.Stop)
	if err := os.Remove(s.Path); err != nil {
		return err
	}
	if s.GOOS == "linux" {
		if err := s.run([][]string{{"systemctl", "--user", "daemon-reload"}}); err != nil && stopErr == nil {
			stopErr = err
		}
	}
	return stopErr
}

func (s Service) run(cmds [][]string) error {
	for _, c := range cmds {
		out, err := exec.Command(c[0], c[1:]...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: %s: %v: %s", ErrNoServiceManager, strings.Join(c, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// ThisService is the service for this computer, this program and state.
func ThisService(state string) (Service, error) {
	exe, err := os.Executable()
	if err != nil {
		return Service{}, err
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return Service{}, err
	}
	if state, err = filepath.Abs(state); err != nil {
		return Service{}, err
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return Service{}, err
	}
	return ServiceFor(runtime.GOOS, exe, state, home, os.Getenv("XDG_CONFIG_HOME"))
}
