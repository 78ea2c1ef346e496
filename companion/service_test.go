package companion_test

import (
	"encoding/xml"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lowkeyhq/lowkey/companion"
)

// The three systems' services, written for a state directory whose name
// needs quoting: systemd's check passes the unit, the plist reads back as
// the same program and arguments, the Windows entry is quoted as Windows
// splits a command line.
func TestServicesForEachSystem(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	state := "/home/ana b/100% & more/lowkey-companion"

	linux, err := companion.ServiceFor("linux", exe, state, "/home/ana", "")
	if err != nil {
		t.Fatal(err)
	}
	if linux.Path != "/home/ana/.config/systemd/user/lowkey-companion.service" {
		t.Fatalf("the user unit goes to %s", linux.Path)
	}
	if !strings.Contains(string(linux.Content), `ExecStart=`+exe+` run --state "/home/ana b/100%% & more/lowkey-companion"`) {
		t.Fatalf("the unit's command line:\n%s", linux.Content)
	}
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI needs systemd-analyze to check the unit")
		}
		t.Log("no systemd-analyze here: the unit is not checked by systemd")
	} else {
		unit := filepath.Join(t.TempDir(), companion.ServiceName)
		if err := os.WriteFile(unit, linux.Content, 0o644); err != nil {
			t.Fatal(err)
		}
		verify := exec.Command("systemd-analyze", "verify", "--user", unit)
		verify.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+t.TempDir())
		if out, err := verify.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "" {
			t.Fatalf("systemd-analyze verify --user: %v\n%s\n%s", err, out, linux.Content)
		}
	}

	mac, err := companion.ServiceFor("darwin", "/Applications/Lowkey.app/Contents/MacOS/lowkey-companion", state, "/Users/ana", "")
	if err != nil {
		t.Fatal(err)
	}
	if mac.Path != "/Users/ana/Library/LaunchAgents/com.lowkeyhq.companion.plist" {
		t.Fatalf("the launchd agent goes to %s", mac.Path)
	}
	var plist struct {
		Dict struct {
			Items []struct {
				XMLName xml.Name
				Text    string   `xml:",chardata"`
				Strings []string `xml:"string"`
			} `xml:",any"`
		} `xml:"dict"`
	}
	if err := xml.Unmarshal(mac.Content, &plist); err != nil {
		t.Fatalf("the plist does not parse: %v\n%s", err, mac.Content)
	}
	var label string
	var args []string
	items := plist.Dict.Items
	for i := 0; i+1 < len(items); i++ {
		if items[i].XMLName.Local != "key" {
			continue
		}
		switch items[i].Text {
		case "Label":
			label = items[i+1].Text
		case "ProgramArguments":
			args = items[i+1].Strings
		}
	}
	if label != companion.LaunchdLabel || strings.Join(args, "|") != "/Applications/Lowkey.app/Contents/MacOS/lowkey-companion|run|--state|"+state {
		t.Fatalf("the plist reads back as %q %q:\n%s", label, args, mac.Content)
	}

	win, err := companion.ServiceFor("windows", `C:\Program Files\Lowkey\lowkey-companion.exe`, `C:\Users\Ana "B"\state\`, `C:\Users\Ana`, "")
	if err != nil {
		t.Fatal(err)
	}
	// As CommandLineToArgvW reads it: a quote inside is \", backslashes
	// before the closing quote are doubled, the others stay single.
	if want := `"C:\Program Files\Lowkey\lowkey-companion.exe" run --state "C:\Users\Ana \"B\"\state\\"`; string(win.Content) != want {
		t.Fatalf("the Windows startup entry:\n%s\nwant\n%s", win.Content, want)
	}
	if _, err := companion.ServiceFor("windows", `lowkey-companion.exe`, `C:\state`, `C:\Users\Ana`, ""); err == nil {
		t.Fatal("a relative program path was taken")
	}
	if _, err := companion.ServiceFor("plan9", exe, state, "/home/ana", ""); err == nil || !strings.Contains(err.Error(), "no service for plan9") {
		t.Fatalf("an unknown system: %v", err)
	}
}

// install-service where no user service manager answers (no systemd as
// PID 1 here): the unit is written, the person is told it starts at the
// next sign-in; uninstall-service removes it.
func TestInstallServiceWithoutAServiceManager(t *testing.T) {
	config := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", config)
	state := filepath.Join(t.TempDir(), "state")
	svc, err := companion.ThisService(state)
	if err != nil {
		t.Fatal(err)
	}
	if svc.Path != filepath.Join(config, "systemd", "user", companion.ServiceName) {
		t.Fatalf("the unit goes to %s", svc.Path)
	}
	err = svc.Install()
	if err != nil && !errors.Is(err, companion.ErrNoServiceManager) {
		t.Fatal(err)
	}
	got, rerr := os.ReadFile(svc.Path)
	if rerr != nil || string(got) != string(svc.Content) || !strings.Contains(string(got), "--state "+state) {
		t.Fatalf("the unit written: %v\n%s", rerr, got)
	}
	if err := svc.Uninstall(); err != nil && !errors.Is(err, companion.ErrNoServiceManager) {
		t.Fatal(err)
	}
	if _, err := os.Stat(svc.Path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("uninstall left %s: %v", svc.Path, err)
	}
	// Removing one that is not there is no error.
	if err := svc.Uninstall(); err != nil {
		t.Fatal(err)
	}
}
