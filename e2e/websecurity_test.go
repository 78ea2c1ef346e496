package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestWebSecurity checks the web app's guards from outside a browser.
func TestWebSecurity(t *testing.T) {
	b := startBox(t, "", t.TempDir(), "127.0.0.1:0", "--no-mdns")
	setup := b.waitFor(`Create the owner \(this link works once\): (\S+)`, 5*time.Second)
	token := setup[strings.Index(setup, "/#/setup/")+len("/#/setup/"):]
	base := "http://" + b.addr
	// A browser, reduced to its cookie and its CSRF token.
	type client struct {
		cookie *http.Cookie
		csrf   string
	}
	newClient := func() *client { return &client{} }
	do := func(c *client, method, path string, body any, withCSRF bool) (int, map[string]any) {
		var rd io.Reader
		if body != nil {
			raw, _ := json.Marshal(body)
			rd = bytes.NewReader(raw)
		}
		req, _ := http.NewRequest(method, base+path, rd)
		if withCSRF && c.csrf != "" {
			req.Header.Set("X-CSRF-Token", c.csrf)
		}
		if c.cookie != nil {
			req.AddCookie(&http.Cookie{Name: c.cookie.Name, Value: c.cookie.Value})
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		for _, ck := range resp.Cookies() {
			if ck.Name == "__Host-lowkey" {
				c.cookie = ck
			}
		}
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		if cs, ok := m["csrf"].(string); ok && cs != "" {
			c.csrf = cs
		}
		return resp.StatusCode, m
	}
	owner := newClient()
	if st, m := do(owner, "POST", "/api/v1/setup", map[string]string{"token": "wrong", "name": "ada", "password": "correct horse battery"}, false); st != 403 {
		t.Fatalf("setup with a wrong token: %d %v", st, m)
	}
	if st, m := do(owner, "POST", "/api/v1/setup", map[string]string{"token": token, "name": "ada", "password": "correct horse battery"}, false); st != 200 {
		t.Fatalf("setup: %d %v", st, m)
	}
	if st, _ := do(newClient(), "POST", "/api/v1/setup", map[string]string{"token": token, "name": "eve", "password": "correct horse battery"}, false); st != 409 {
		t.Fatalf("a second setup: %d", st)
	}
	// No state change without the CSRF token.
	if st, m := do(owner, "POST", "/api/v1/sessions", map[string]string{}, false); st != 403 || m["error"].(map[string]any)["code"] != "csrf" {
		t.Fatalf("without CSRF: %d %v", st, m)
	}
	if st, _ := do(owner, "POST", "/api/v1/sessions", map[string]string{}, true); st != 201 {
		t.Fatalf("with CSRF: %d", st)
	}
	// A member can chat but not manage people or devices.
	if st, _ := do(owner, "POST", "/api/v1/users", map[string]string{"name": "bob", "password": "another long password"}, true); st != 201 {
		t.Fatalf("add member: %d", st)
	}
	member := newClient()
	if st, _ := do(member, "POST", "/api/v1/login", map[string]string{"name": "bob", "password": "wrong password!!"}, false); st != 401 {
		t.Fatalf("wrong password: %d", st)
	}
	if st, _ := do(member, "POST", "/api/v1/login", map[string]string{"name": "bob", "password": "another long password"}, false); st != 200 {
		t.Fatalf("member login: %d", st)
	}
	if st, _ := do(member, "POST", "/api/v1/sessions", map[string]string{}, true); st != 201 {
		t.Fatalf("member chat: %d", st)
	}
	for _, c := range []struct{ method, path string }{
		{"POST", "/api/v1/users"}, {"DELETE", "/api/v1/users/ada"}, {"GET", "/api/v1/users"},
		{"POST", "/api/v1/pairing/codes"}, {"DELETE", "/api/v1/devices/x"},
	} {
		if st, m := do(member, c.method, c.path, map[string]string{"name": "mallory", "password": "yet another password"}, true); st != 403 {
			t.Fatalf("member %s %s: %d %v", c.method, c.path, st, m)
		}
	}
	// Removing a member stops their access at once.
	if st, _ := do(owner, "DELETE", "/api/v1/users/bob", nil, true); st != 200 {
		t.Fatalf("remove: %d", st)
	}
	if st, _ := do(member, "GET", "/api/v1/sessions", nil, false); st != 401 {
		t.Fatalf("removed member still in: %d", st)
	}
	// Ten wrong passwords in a minute lock the name out for a while.
	for range 10 {
		do(newClient(), "POST", "/api/v1/login", map[string]string{"name": "ada", "password": "not the password"}, false)
	}
	if st, _ := do(newClient(), "POST", "/api/v1/login", map[string]string{"name": "ada", "password": "correct horse battery"}, false); st != 429 {
		t.Fatalf("after 10 failures: %d", st)
	}
}
