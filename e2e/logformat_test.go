package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// --log-format json: the box's and the computer's logs are one JSON object
// a line, each with its time, level and message, for a log collector;
// what the programs print for people on stdout stays as it is.
func TestLogsAsJSONLines(t *testing.T) {
	b := startBox(t, "", t.TempDir(), "127.0.0.1:0", "--no-mdns", "--log-format", "json")
	state := t.TempDir()
	mustRun(t, "", "lowkey-companion", "pair", "--hub", b.addr, "--code", b.pairCode(t), "--state", state, "--name", "laptop")
	id := b.devices(t)[0].ID
	c := start(t, "", "lowkey-companion", "run", "--state", state, "--no-mdns", "--headless", "--log-format", "json")
	b.waitOnline(t, id, 30*time.Second)
	c.waitFor(`"msg":"link up"`, 10*time.Second)
	b.waitFor(`"msg":"device online"`, 10*time.Second)
	for _, p := range []*proc{b.proc, c} {
		n := 0
		for _, line := range strings.Split(p.out.String(), "\n") {
			if !strings.HasPrefix(line, "{") {
				continue
			}
			var rec map[string]any
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatalf("%s: a log line that is not JSON: %v\n%s", p.name, err, line)
			}
			if rec["time"] == nil || rec["level"] == nil || rec["msg"] == nil {
				t.Fatalf("%s: a log line without time, level or msg: %s", p.name, line)
			}
			n++
		}
		if n < 2 {
			t.Fatalf("%s logged %d JSON lines:\n%s", p.name, n, p.out)
		}
		if strings.Contains(p.out.String(), "level=INFO") {
			t.Fatalf("%s still logs text lines:\n%s", p.name, p.out)
		}
	}
	// The people's lines are still there.
	b.waitFor(`Lowkey hub is ready: http://`, time.Second)
}
