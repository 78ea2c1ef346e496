package hub_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/lowkeyhq/lowkey/companion"
	"github.com/lowkeyhq/lowkey/hub"
	"github.com/lowkeyhq/lowkey/internal/local"
)

// A computer that may use no address of the box but its web port (here:
// relayed candidates only) links through the box's own relay on that port,
// with the credential the box minted for this link; the box says the path
// is relayed and calls and a 3 MiB result go through.
func TestLinkThroughTheBoxsOwnRelay(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := local.Start(ctx, t.TempDir(), local.Options{Logger: quiet(), Companion: func(c *companion.Config) { c.RelayOnly = true }})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	a := ownerAPI(t, p)
	sid := newSession(t, a)
	code, m, raw := a.do("POST", "/api/v1/sessions/"+sid+"/devices/"+p.DeviceID+"/actions", map[string]any{"action": "sys.echo", "args": map[string]int{"bytes": 3 << 20}})
	if code != 200 || m["data_bytes"].(float64) != 3<<20 {
		t.Fatalf("sys.echo through the box's relay: %d %.200s", code, raw)
	}
	var ds []hub.DeviceView
	_, _, raw = a.do("GET", "/api/v1/devices", nil)
	if err := json.Unmarshal(raw, &ds); err != nil || len(ds) != 1 || ds[0].Path != "relayed" {
		t.Fatalf("the box does not say the link is relayed: %s", raw)
	}
}

// Without the box's relay (--no-relay) and with nothing else to relay
// through, a computer that may only be relayed does not link.
func TestNoRelayMeansNoRelayedLink(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Second)
	defer cancel()
	_, err := local.Start(ctx, t.TempDir(), local.Options{Logger: quiet(),
		Hub:       func(c *hub.Config) { c.NoRelay = true },
		Companion: func(c *companion.Config) { c.RelayOnly = true }})
	if err == nil {
		t.Fatal("a relayed link came up on a box whose relay is off")
	}
}
