package hub_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/lowkeyhq/lowkey/companion"
	"github.com/lowkeyhq/lowkey/devicectl"
	"github.com/lowkeyhq/lowkey/hub"
)

// relay sits between the companion and the box on the link's WebSocket, as
// a hostile network would, and may rewrite what the box sends.
func relay(t *testing.T, hubAddr string, tamper func(msg []byte) []byte) string {
	t.Helper()
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		down, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer down.Close()
		hub, _, err := websocket.DefaultDialer.Dial("ws://"+hubAddr+r.URL.Path, nil)
		if err != nil {
			return
		}
		defer hub.Close()
		done := make(chan struct{}, 2)
		pump := func(from, to *websocket.Conn, f func([]byte) []byte) {
			defer func() { done <- struct{}{} }()
			for {
				kind, b, err := from.ReadMessage()
				if err != nil {
					return
				}
				if f != nil {
					b = f(b)
				}
				if to.WriteMessage(kind, b) != nil {
					return
				}
			}
		}
		go pump(down, hub, nil)
		go pump(hub, down, tamper)
		<-done
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// rewriteOffer applies f to the SDP of the box's signed offer, leaving the
// signature as it was.
func rewriteOffer(f func(sdp string) string) func([]byte) []byte {
	return func(b []byte) []byte {
		var env struct {
			Seq  uint64          `json:"seq"`
			Body json.RawMessage `json:"body"`
			Sig  []byte          `json:"sig"`
		}
		if json.Unmarshal(b, &env) != nil || env.Sig == nil {
			return b
		}
		var s devicectl.Signal
		if json.Unmarshal(env.Body, &s) != nil || s.Type != "offer" {
			return b
		}
		s.SDP = f(s.SDP)
		env.Body, _ = json.Marshal(s)
		out, _ := json.Marshal(env)
		return out
	}
}

var fingerprintLine = regexp.MustCompile(`a=fingerprint:sha-256 [0-9A-F:]+`)

func TestSignalingRelayCannotTamper(t *testing.T) {
	p := startPair(t)
	p.Close() // the pair stays on disk; this test runs its own links
	// A box on the same data dir, reached only through the relay.
	p2, err := hub.Start(hub.Config{DataDir: p.HubDir, Listen: "127.0.0.1:0", NoMDNS: true, LoopbackICE: true, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	attacker := strings.Repeat("AB:", 31) + "AB"
	cases := []struct {
		name   string
		tamper func([]byte) []byte
		fails  bool
	}{
		{"fingerprint swapped", rewriteOffer(func(s string) string {
			return fingerprintLine.ReplaceAllString(s, "a=fingerprint:sha-256 "+attacker)
		}), true},
		{"ICE credentials swapped", rewriteOffer(func(s string) string {
			return regexp.MustCompile(`a=ice-pwd:\S+`).ReplaceAllString(s, "a=ice-pwd:attackerattackerattacker0")
		}), true},
		{"unsigned message injected", func(b []byte) []byte {
			if strings.Contains(string(b), `"seq"`) {
				return []byte(`{"seq":1,"body":{"type":"bye","reason":"revoked"}}`)
			}
			return b
		}, true},
		{"honest relay", nil, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec, err := p.State.Hub()
			if err != nil {
				t.Fatal(err)
			}
			rec.Addr = relay(t, strings.TrimPrefix(p2.URL(), "http://"), c.tamper)
			if err := p.State.SaveHub(rec); err != nil {
				t.Fatal(err)
			}
			r := companion.NewRunner(companion.Config{State: p.State, LoopbackICE: true, NoMDNS: true, Logger: quiet()})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()
			defer func() { cancel(); <-done }()
			var up bool
			select {
			case <-r.LinkUp():
				up = true
			case <-time.After(2500 * time.Millisecond):
			}
			if up == c.fails {
				t.Fatalf("link up: %v, status %+v", up, r.Status())
			}
			a := api{t: t, base: p2.URL(), token: p2.Token()}
			// The companion sees its link up a moment before the box has
			// it in its table: wait for the box to list it online.
			for i := 0; !c.fails && i < 400; i++ {
				_, _, raw := a.do("GET", "/api/v1/devices", nil)
				var ds []struct {
					ID     string `json:"id"`
					Online bool   `json:"online"`
				}
				if json.Unmarshal(raw, &ds) == nil && len(ds) > 0 && ds[0].ID == p.DeviceID && ds[0].Online {
					break
				}
				time.Sleep(25 * time.Millisecond)
			}
			sid := newSession(t, a)
			status, _, raw := a.do("POST", "/api/v1/sessions/"+sid+"/devices/"+p.DeviceID+"/actions", `{"action":"sys.info"}`)
			if c.fails && status != http.StatusConflict {
				t.Fatalf("an action reached a device behind a tampering relay: %d %s", status, raw)
			}
			if !c.fails && status != http.StatusOK {
				t.Fatalf("honest relay: %d %s", status, raw)
			}
			if c.fails {
				st := r.Status()
				if st.Link == "online" || !strings.Contains(st.LastError, "signaling message rejected") {
					t.Fatalf("companion status %+v", st)
				}
				// A tampered link is never mistaken for a revocation.
				select {
				case err := <-done:
					t.Fatalf("companion gave up: %v", err)
				default:
				}
			}
		})
	}
}
