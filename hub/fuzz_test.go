package hub_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/lowkeyhq/lowkey/hub"
)

// FuzzAPIBodies sends arbitrary bodies to every endpoint that reads JSON
// (or a tar): the answer is a 4xx with a message, never a 5xx or a crash.
func FuzzAPIBodies(f *testing.F) {
	h, err := hub.Start(hub.Config{DataDir: filepath.Join(f.TempDir(), "box"), Listen: "127.0.0.1:0", NoMDNS: true, Logger: quiet(), PagesListen: "127.0.0.1:0"})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { h.Close() })
	post := func(method, path string, body []byte, ctype string) (int, []byte) {
		req, _ := http.NewRequest(method, h.URL()+path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+h.Token())
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			f.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, raw
	}
	_, raw := post("POST", "/api/v1/sessions", []byte(`{}`), "")
	var s struct{ ID string }
	_ = json.Unmarshal(raw, &s)
	endpoints := []struct{ method, path, ctype string }{
		{"POST", "/api/v1/sessions", ""},
		{"PATCH", "/api/v1/sessions/" + s.ID, ""},
		{"PUT", "/api/v1/sessions/" + s.ID + "/devices/d-nope/access", ""},
		{"POST", "/api/v1/sessions/" + s.ID + "/devices/d-nope/actions", ""},
		{"POST", "/api/v1/sessions/" + s.ID + "/confirmations/c-nope", ""},
		{"POST", "/api/v1/sessions/" + s.ID + "/pages", "application/x-tar"},
		{"POST", "/api/v1/users", ""},
		{"POST", "/api/v1/login", ""},
		{"POST", "/api/v1/setup", ""},
	}
	for _, seed := range []string{`{}`, `{"title":"x"}`, `{"browser":true}`, `{"action":"sys.info"}`, `{"answer":"yes"}`,
		`{"name":"bob","password":"0123456789"}`, `[]`, `null`, `{"a":`, "\x00\xff", `{"memory_limit_bytes":-1}`} {
		for i := range endpoints {
			f.Add(uint8(i), []byte(seed))
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		e := endpoints[int(which)%len(endpoints)]
		status, raw := post(e.method, e.path, body, e.ctype)
		if status >= 500 {
			t.Fatalf("%s %s with %q: %d %s", e.method, e.path, body, status, raw)
		}
		if status >= 400 {
			var m struct {
				Error struct{ Code, Message string }
			}
			if json.Unmarshal(raw, &m) != nil || m.Error.Message == "" {
				t.Fatalf("%s %s with %q: %d without a JSON message: %s", e.method, e.path, body, status, raw)
			}
		}
	})
}
