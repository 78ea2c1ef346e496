package hub_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/lowkeyhq/lowkey/sessions"
)

// scrape reads /metrics as Prometheus would and parses it with its parser.
func scrape(t *testing.T, a api) map[string]*dto.MetricFamily {
	t.Helper()
	status, _, raw := a.do("GET", "/metrics", nil)
	if status != http.StatusOK {
		t.Fatalf("/metrics: %d %s", status, raw)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("/metrics is not Prometheus text: %v\n%s", err, raw)
	}
	return fams
}

// value is the sample of name whose labels include want (0 when none).
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f, ok := fams[name]
	if !ok {
		return -1
	}
next:
	for _, m := range f.Metric {
		for k, v := range want {
			found := false
			for _, l := range m.Label {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Untyped != nil:
			return m.Untyped.GetValue()
		}
	}
	return 0
}

// The box's metrics: the Go runtime's and the process's, and its own
// (links by path, actions by outcome, the store's size), each named
// lowkey_*, and parseable by Prometheus.
func TestMetricsAreTheBoxsOwnAndPrometheusReadsThem(t *testing.T) {
	p := startPair(t)
	a := ownerAPI(t, p)
	sid := newSession(t, a)
	act := "/api/v1/sessions/" + sid + "/devices/" + p.DeviceID + "/actions"
	if status, _, raw := a.do("POST", act, `{"action":"sys.info"}`); status != 200 {
		t.Fatalf("sys.info: %d %s", status, raw)
	}
	if status, _, raw := a.do("POST", act, `{"action":"browser.navigate","args":{"url":"http://127.0.0.1/"}}`); status != 409 {
		t.Fatalf("navigate with the toggle off: %d %s", status, raw)
	}
	// The link's round trip is measured by its first ping.
	var fams map[string]*dto.MetricFamily
	deadline := time.Now().Add(30 * time.Second)
	for {
		fams = scrape(t, a)
		if value(fams, "lowkey_link_rtt_seconds", map[string]string{"device": p.DeviceID}) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		check  func(float64) bool
		want   string
	}{
		{"go_goroutines", nil, func(v float64) bool { return v > 0 }, "> 0"},
		{"process_resident_memory_bytes", nil, func(v float64) bool { return v > 1<<20 }, "> 1 MiB"},
		{"lowkey_devices_paired", nil, func(v float64) bool { return v == 1 }, "1"},
		{"lowkey_links", map[string]string{"path": "direct", "state": "online"}, func(v float64) bool { return v == 1 }, "1 (loopback UDP)"},
		{"lowkey_links", map[string]string{"path": "relayed"}, func(v float64) bool { return v == 0 }, "0"},
		{"lowkey_links", map[string]string{"state": "offline"}, func(v float64) bool { return v == 0 }, "0"},
		{"lowkey_link_rtt_seconds", map[string]string{"device": p.DeviceID}, func(v float64) bool { return v > 0 && v < 5 }, "a round trip"},
		{"lowkey_device_actions_total", map[string]string{"outcome": "done"}, func(v float64) bool { return v >= 1 }, ">= 1"},
		{"lowkey_device_actions_total", map[string]string{"outcome": "refused"}, func(v float64) bool { return v >= 1 }, ">= 1"},
		{"lowkey_store_disk_bytes", nil, func(v float64) bool { return v > 0 }, "> 0"},
		{"lowkey_http_requests_total", nil, func(v float64) bool { return v >= 3 }, ">= 3"},
		{"lowkey_pairing_locked", nil, func(v float64) bool { return v == 0 }, "0"},
	} {
		if v := value(fams, c.name, c.labels); !c.check(v) {
			t.Errorf("%s%v = %g, want %s", c.name, c.labels, v, c.want)
		}
	}
	for name := range fams {
		if !strings.HasPrefix(name, "lowkey_") && !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") {
			t.Errorf("metric %s is neither the box's (lowkey_*) nor the Go runtime's or the process's", name)
		}
	}
}

// Turns are counted by how they end, and an OOM kill is counted.
func TestMetricsCountTurnEndsAndOOMKills(t *testing.T) {
	_, a := startBox(t, nil)
	small := newAgentSession(t, a, map[string]any{"memory_limit_bytes": 64 << 20})
	es := follow(t, a, small, 0)
	hog := say(t, a, small, "allocate 400")
	es.until(30*time.Second, turnState(hog, sessions.StateOOM))
	calm := say(t, a, small, "echo fine")
	es.until(30*time.Second, turnState(calm, sessions.StateDone))
	fams := scrape(t, a)
	if v := value(fams, "lowkey_turns_ended_total", map[string]string{"state": sessions.StateOOM}); v != 1 {
		t.Errorf("turns ended out of memory: %g, want 1", v)
	}
	if v := value(fams, "lowkey_turns_ended_total", map[string]string{"state": sessions.StateDone}); v != 1 {
		t.Errorf("turns done: %g, want 1", v)
	}
	if v := value(fams, "lowkey_oom_kills_total", nil); v < 1 {
		t.Errorf("OOM kills: %g, want at least 1", v)
	}
}
