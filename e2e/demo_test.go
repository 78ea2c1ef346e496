package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lowkeyhq/lowkey/internal/bench"
	"github.com/lowkeyhq/lowkey/internal/testenv"
)

func TestDemoRunsTheRealFlow(t *testing.T) {
	out := mustRun(t, "", "lowkey", "demo", "--once")
	host, _ := os.Hostname()
	for _, want := range []string{"companion paired", "link up", `"hostname": "` + host + `"`} {
		if !strings.Contains(out, want) {
			t.Fatalf("demo output lacks %q:\n%s", want, out)
		}
	}
}

// The benchmark command works end to end and reports every figure; the
// figures themselves are for people, not assertions.
func TestBenchLinkReportsEveryFigure(t *testing.T) {
	out, code := run(t, "", "lowkey", "bench", "link", "--json", "--rounds", "50", "--bulk-runs", "1", "--path", "relayed")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	line := out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:]
	var rep map[string]any
	if err := json.Unmarshal([]byte(line), &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for _, k := range []string{"raw_rtt_p50_us", "raw_rtt_p99_us", "link_rtt_p50_us", "link_rtt_p99_us", "raw_5mib_ms", "link_5mib_ms", "link_rpc_during_bulk_p99_ms",
		"relayed_rtt_p50_us", "relayed_5mib_ms", "relayed_rtt_p50_ratio", "relayed_5mib_ratio"} {
		if v, _ := rep[k].(float64); v <= 0 {
			t.Fatalf("%s missing or zero in %s", k, line)
		}
	}
	// The relayed figures are a relayed link's.
	if rep["relayed_path"] != "relayed" {
		t.Fatalf("the relayed link went %v: %s", rep["relayed_path"], line)
	}
}

func TestBenchBrowserAndLiveReportTheirFigures(t *testing.T) {
	testenv.RequireBrowser(t)
	out, code := runWithin(t, 3*time.Minute, "", "lowkey", "bench", "browser", "--json", "--rounds", "2")
	if code != 0 {
		t.Fatalf("bench browser: exit %d\n%s", code, out)
	}
	var br map[string]any
	if err := json.Unmarshal([]byte(out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:]), &br); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	figures := []string{"direct_navigate_snapshot_ms", "link_navigate_snapshot_ms", "direct_click_ms", "link_click_ms", "direct_screenshot_ms", "link_screenshot_ms"}
	// playwright-core beside it where scripts/agent-clis installed it (CI
	// does): the same actions, and the link's ratio to each.
	if _, err := os.Stat(filepath.Join(bench.NPMDir(), "node_modules", "playwright-core")); err == nil || os.Getenv("CI") == "true" {
		figures = append(figures, "playwright_navigate_snapshot_ms", "playwright_click_ms", "playwright_screenshot_ms",
			"link_over_playwright_navigate_snapshot", "link_over_playwright_click", "link_over_playwright_screenshot")
	}
	for _, k := range figures {
		if v, _ := br[k].(float64); v <= 0 {
			t.Fatalf("%s missing in %s", k, out)
		}
	}
	var rep map[string]float64
	display := testenv.Xvfb(t, 1280, 720)
	out, code = run(t, "", "lowkey", "bench", "live", "--json", "--display", display, "--for", "1s")
	if code != 0 {
		t.Fatalf("bench live: exit %d\n%s", code, out)
	}
	if err := json.Unmarshal([]byte(out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:]), &rep); err != nil || rep["fps"] <= 0 || rep["width"] != 1280 {
		t.Fatalf("bench live: %v %s", err, out)
	}
	// Every scene's figure is there; the still page is the one that costs
	// least and whole frames the most (what sending changes is for).
	for _, k := range []string{"still_mbit_s", "typing_mbit_s", "scrolling_mbit_s", "full_frame_mbit_s"} {
		if _, ok := rep[k]; !ok {
			t.Fatalf("bench live: no %s in %s", k, out)
		}
	}
	if !(rep["still_mbit_s"] < rep["typing_mbit_s"] && rep["typing_mbit_s"] < rep["full_frame_mbit_s"] && rep["scrolling_mbit_s"] < rep["full_frame_mbit_s"]) {
		t.Fatalf("bench live: the scenes do not order as they must: %s", out)
	}
}

func TestSecretsCommandsAndBenchSessions(t *testing.T) {
	b := startBox(t, "", t.TempDir(), "127.0.0.1:0", "--no-mdns")
	cmd := command("", "lowkey", "secrets", "set", "--data", b.data, "OPENAI_API_KEY")
	cmd.Stdin = strings.NewReader("sk-e2e-hidden-value\n")
	out, err := cmd.CombinedOutput()
	if err != nil || strings.Contains(string(out), "sk-e2e") {
		t.Fatalf("secrets set: %v %s", err, out)
	}
	if out := mustRun(t, "", "lowkey", "secrets", "list", "--data", b.data); strings.TrimSpace(out) != "OPENAI_API_KEY\tfor all" {
		t.Fatalf("secrets list: %q", out)
	}
	if strings.Contains(b.out.String(), "sk-e2e") {
		t.Fatal("the secret reached the hub's log")
	}
	mustRun(t, "", "lowkey", "secrets", "rm", "--data", b.data, "OPENAI_API_KEY")
	if out := mustRun(t, "", "lowkey", "secrets", "list", "--data", b.data); strings.TrimSpace(out) != "" {
		t.Fatalf("after rm: %q", out)
	}
	out2, code := runWithin(t, 3*time.Minute, "", "lowkey", "bench", "sessions", "--json", "--rounds", "3")
	if code != 0 {
		t.Fatalf("bench sessions: exit %d\n%s", code, out2)
	}
	var rep map[string]any
	if err := json.Unmarshal([]byte(out2[strings.LastIndex(strings.TrimSpace(out2), "\n")+1:]), &rep); err != nil {
		t.Fatalf("%v: %s", err, out2)
	}
	for _, k := range []string{"fork_exec_p50_ms", "turn_start_p50_ms", "kill_100_ms"} {
		if v, _ := rep[k].(float64); v <= 0 {
			t.Fatalf("%s missing in %s", k, out2)
		}
	}
}

// Many computers and sessions at once, then all gone: nothing fails and
// nothing is left running in the box.
func TestLoadThenNothingLeaks(t *testing.T) {
	out, code := runWithin(t, 4*time.Minute, "", "lowkey", "bench", "load", "--json", "--companions", "12", "--sessions", "6")
	if code != 0 {
		t.Fatalf("bench load: exit %d\n%s", code, out)
	}
	var rep map[string]float64
	if err := json.Unmarshal([]byte(out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:]), &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if rep["errors"] != 0 || rep["turns_done"] < 6 || rep["rpc_p99_ms"] <= 0 || rep["api_p99_ms"] <= 0 {
		t.Fatalf("load: %s", out)
	}
	if rep["after_goroutines"] > rep["idle_goroutines"]+10 {
		t.Fatalf("goroutines: idle %v, after everything disconnected %v", rep["idle_goroutines"], rep["after_goroutines"])
	}
	t.Logf("load: %s", out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:])
}

// A short soak: the box's whole life over and over, with no error and
// nothing piling up.
func TestShortSoak(t *testing.T) {
	out, code := runWithin(t, 3*time.Minute, "", "lowkey", "bench", "soak", "--json", "--for", "15s", "--every", "5s")
	if code != 0 {
		t.Fatalf("soak: exit %d\n%s", code, out)
	}
	var first, last map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var s map[string]any
		if json.Unmarshal([]byte(line), &s) == nil {
			if first == nil {
				first = s
			}
			last = s
		}
	}
	if first == nil || last["errors"].(float64) != 0 || last["rounds"].(float64) < 10 {
		t.Fatalf("soak: %s", out)
	}
	if g0, g1 := first["goroutines"].(float64), last["goroutines"].(float64); g1 > g0+10 {
		t.Fatalf("goroutines grew from %v to %v during the soak", g0, g1)
	}
	t.Logf("soak: %v rounds, goroutines %v → %v, heap %.1f → %.1f MiB", last["rounds"], first["goroutines"], last["goroutines"], first["heap_mib"], last["heap_mib"])
}

// The reproduced attacks, run by the benchmark against a box of its own:
// each is refused or bounded, and nothing the people using the box do
// fails meanwhile.
func TestBenchAbuseHoldsEveryAttack(t *testing.T) {
	out, code := runWithin(t, 5*time.Minute, "", "lowkey", "bench", "abuse", "--json")
	if code != 0 {
		t.Fatalf("bench abuse: exit %d\n%s", code, out)
	}
	var rep struct {
		Attacks []struct {
			Name, Outcome string
			LegitCalls    int `json:"legit_calls"`
			LegitErrors   int `json:"legit_errors"`
		}
		PeakRSSMiB             float64 `json:"peak_rss_mib"`
		WrongPasswordsAccepted int     `json:"wrong_passwords_accepted"`
	}
	if err := json.Unmarshal([]byte(out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:]), &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	want := map[string]string{
		"login_with_20mb_names":         "map[413:5]",
		"59_wrong_passwords_at_once":    "the right one after them 429",
		"sys_echo_64mib_x6":             "64 MiB x6: map[400:6]; 8 MiB (the cap) x6: map[200:6]",
		"agent_prints_100_lines_of_1mb": "turn done",
		"pairing_hello_then_silence":    "failed attempts 0 -> 1",
	}
	for _, a := range rep.Attacks {
		if !strings.Contains(a.Outcome, want[a.Name]) {
			t.Errorf("%s: %s (want %q)", a.Name, a.Outcome, want[a.Name])
		}
		if a.LegitErrors > 0 {
			t.Errorf("%s: %d of %d calls by the box's people failed during it", a.Name, a.LegitErrors, a.LegitCalls)
		}
		delete(want, a.Name)
	}
	if len(want) > 0 || rep.WrongPasswordsAccepted != 0 || rep.PeakRSSMiB <= 0 {
		t.Fatalf("attacks not run %v, wrong passwords accepted %d, peak %v", want, rep.WrongPasswordsAccepted, rep.PeakRSSMiB)
	}
}
