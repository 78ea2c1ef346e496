package devicectl

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestRedactNeverKeepsSecrets(t *testing.T) {
	cases := []struct {
		action, args, result string
		keeps, drops         string
	}{
		{"browser.type", `{"ref":"e3","text":"hunter2"}`, `{"password_field":true}`, "e3", "hunter2"},
		// No word from the computer about the field: assume a password.
		{"browser.type", `{"ref":"e3","text":"hunter2"}`, ``, "e3", "hunter2"},
		{"browser.type", `{"ref":"e3","text":"ada"}`, `{"password_field":false}`, "ada", Redacted + "x"},
		{"screen.type", `{"text":"hunter2"}`, `{}`, "7 characters", "hunter2"},
		{"browser.navigate", `{"url":"https://x","headers":{"Authorization":"Bearer abc"}}`, `{}`, "https://x", "abc"},
		{"browser.upload", `{"ref":"e1","file":{"name":"a.txt","data_base64":"c2VjcmV0"}}`, `{}`, "a.txt", "c2VjcmV0"},
		// Several fields: each kept only where it went into an ordinary one.
		{"browser.fill", `{"fields":[{"ref":"e1","text":"ada"},{"ref":"e2","text":"hunter2"}]}`, `{"fields":[{"ref":"e1","password_field":false},{"ref":"e2","password_field":true}]}`, "ada", "hunter2"},
		{"browser.fill", `{"fields":[{"ref":"e1","text":"ada"},{"ref":"e2","text":"hunter2"}]}`, `{"fields":[{"ref":"e1","password_field":false}]}`, "ada", "hunter2"},
		{"browser.fill", `{"fields":[{"ref":"e1","text":"hunter2"}]}`, ``, "e1", "hunter2"},
	}
	for _, c := range cases {
		got := string(Redact(c.action, json.RawMessage(c.args), json.RawMessage(c.result)))
		if !strings.Contains(got, c.keeps) || strings.Contains(got, c.drops) {
			t.Errorf("%s %s → %s", c.action, c.args, got)
		}
	}
}

func TestDefaultPolicy(t *testing.T) {
	p := DefaultPolicy()
	for action, want := range map[string]Decision{"browser.navigate": Allow, "screen.click": Allow, "browser.eval": Ask, "browser.upload": Ask, "browser.downloads": Allow} {
		if _, got := p.Decide(action, json.RawMessage(`{}`)); got != want {
			t.Errorf("%s: %s, want %s", action, got, want)
		}
	}
	if key, d := p.Decide("browser.downloads", json.RawMessage(`{"fetch":"x"}`)); key != "browser.downloads.fetch" || d != Ask {
		t.Errorf("fetching a download: %s %s", key, d)
	}
	if _, d := p.Decide("browser.nothing", nil); d != Deny {
		t.Errorf("unknown action: %s", d)
	}
	if err := p.Merge(map[string]Decision{"browser.eval": "maybe"}); err == nil {
		t.Error("a bad decision was accepted")
	}
	if err := p.Merge(map[string]Decision{"browser.evil": Allow}); err == nil {
		t.Error("an unknown action was accepted")
	}
}

func TestLiveFramesReassemble(t *testing.T) {
	frame := bytes.Repeat([]byte("0123456789"), LivePart/4)
	var a LiveAssembler
	parts := LiveParts(7, frame)
	if len(parts) != 3 {
		t.Fatalf("%d parts", len(parts))
	}
	// Out of order, with a duplicate.
	for _, i := range []int{2, 0, 0} {
		if _, ok := a.Add(parts[i]); ok {
			t.Fatal("a frame completed early")
		}
	}
	got, ok := a.Add(parts[1])
	if !ok || !bytes.Equal(got, frame) {
		t.Fatal("the frame did not come back whole")
	}
	// A newer frame drops an incomplete older one; an older one is ignored.
	a.Add(LiveParts(9, frame)[0])
	if _, ok := a.Add(LiveParts(8, []byte("x"))[0]); ok {
		t.Fatal("an older frame was delivered")
	}
}
