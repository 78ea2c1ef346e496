package devicectl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lowkeyhq/lowkey/errcode"
)

// Grant is one conversation's control of one computer: the two toggles.
type Grant struct {
	Conversation string    `json:"conversation"`
	Device       string    `json:"device"`
	Browser      bool      `json:"browser"`
	Desktop      bool      `json:"desktop"`
	By           string    `json:"by,omitempty"`
	At           time.Time `json:"at"`
}

// Allows reports whether the grant covers a capability.
func (g Grant) Allows(c Capability) bool {
	switch c {
	case CapSys:
		return true
	case CapBrowser:
		return g.Browser
	case CapDesktop:
		return g.Desktop
	}
	return false
}

// Any reports whether either toggle is on.
func (g Grant) Any() bool { return g.Browser || g.Desktop }

// GrantNotice is what the box sends a computer whenever its grants
// change: the whole set, so a lost notice is repaired by the next one.
type GrantNotice struct {
	Grants []Grant `json:"grants"`
}

// Decision is what the policy says about an action.
type Decision string

const (
	Allow Decision = "allow"
	Ask   Decision = "ask"
	Deny  Decision = "deny"
)

// Policy maps actions to decisions. Keys are action names, or the
// pseudo-action "browser.downloads.fetch" for fetching a file back.
type Policy map[string]Decision

// DefaultPolicy: observing and input run under a grant; sending a file
// to the computer, taking one from it and running script ask first.
func DefaultPolicy() Policy {
	p := Policy{}
	for a := range Actions {
		p[a] = Allow
	}
	p["browser.upload"] = Ask
	p["browser.downloads.fetch"] = Ask
	p["browser.eval"] = Ask
	return p
}

// Decide returns the decision for one request.
func (p Policy) Decide(action string, args json.RawMessage) (string, Decision) {
	key := action
	if action == "browser.downloads" {
		var a struct {
			Fetch string `json:"fetch"`
		}
		if json.Unmarshal(args, &a) == nil && a.Fetch != "" {
			key = "browser.downloads.fetch"
		}
	}
	if d, ok := p[key]; ok {
		return key, d
	}
	return key, Deny
}

// Merge overrides decisions, refusing unknown actions and decisions.
func (p Policy) Merge(over map[string]Decision) error {
	for k, d := range over {
		if _, ok := Actions[k]; !ok && k != "browser.downloads.fetch" {
			return fmt.Errorf("policy: unknown action %q", k)
		}
		if d != Allow && d != Ask && d != Deny {
			return fmt.Errorf("policy: %s: %q is not allow, ask or deny", k, d)
		}
		p[k] = d
	}
	return nil
}

// Reply is a person's answer to a confirmation.
type Reply string

const (
	Yes    Reply = "yes"
	No     Reply = "no"
	Cancel Reply = "cancel"
)

// Question is what a confirmation asks.
type Question struct {
	Conversation string
	Device       string
	Action       string
	Summary      string
	Timeout      time.Duration
}

// AuditRecord is one device action as it happened.
type AuditRecord struct {
	ID           string          `json:"id"`
	Time         time.Time       `json:"time"`
	Who          string          `json:"who"`
	Conversation string          `json:"conversation"`
	Device       string          `json:"device"`
	Action       string          `json:"action"`
	Args         json.RawMessage `json:"args,omitempty"`
	Decision     Decision        `json:"decision,omitempty"`
	Reply        Reply           `json:"answer,omitempty"`
	Outcome      string          `json:"outcome"` // done, refused, declined, failed, cancelled
	Detail       string          `json:"detail,omitempty"`
	DurationMS   float64         `json:"duration_ms"`
}

// Gate is the box's side of every device action: grant, policy,
// confirmation, audit, then the link.
type Gate struct {
	Grant   func(conversation, device string) (Grant, bool)
	Policy  Policy
	Confirm func(ctx context.Context, q Question) (Reply, error)
	Audit   func(AuditRecord)
	Call    func(ctx context.Context, device, action, conversation string, args json.RawMessage) (*Result, error)
	// ConfirmTimeout bounds an unanswered question (default 2 minutes).
	ConfirmTimeout time.Duration
	// SkipGrantCheck turns the box's own check off: only tests use it,
	// to show the computer enforces grants by itself.
	SkipGrantCheck bool
}

// Request is one action asked of a computer.
type GateRequest struct {
	Who          string
	Conversation string
	Device       string
	Action       string
	Args         json.RawMessage
}

// Do runs one action through the gate. Every path leaves an audit record.
func (g *Gate) Do(ctx context.Context, r GateRequest) (res *Result, err error) {
	start := time.Now()
	rec := AuditRecord{Time: start.UTC(), Who: r.Who, Conversation: r.Conversation, Device: r.Device, Action: r.Action}
	defer func() {
		rec.DurationMS = float64(time.Since(start).Microseconds()) / 1000
		var rj json.RawMessage
		if res != nil {
			rj = res.JSON
		}
		rec.Args = Redact(r.Action, r.Args, rj)
		if rec.Outcome == "" {
			rec.Outcome = "done"
			if err != nil {
				rec.Outcome, rec.Detail = "failed", err.Error()
				var ae *errcode.Error
				if errors.As(err, &ae) && (ae.Code == "no_grant" || ae.Code == "paused") {
					rec.Outcome = "refused"
				}
				if errors.Is(err, context.Canceled) {
					rec.Outcome = "cancelled"
				}
			}
		}
		if g.Audit != nil {
			g.Audit(rec)
		}
	}()
	capability, ok := Lookup(r.Action)
	if !ok {
		rec.Outcome, rec.Detail = "refused", "unknown action"
		return nil, &errcode.Error{Code: errcode.UnknownAction, Message: "unknown action " + r.Action}
	}
	if capability != CapSys && !g.SkipGrantCheck {
		grant, _ := g.Grant(r.Conversation, r.Device)
		if !grant.Allows(capability) {
			rec.Outcome, rec.Detail = "refused", toggleName(capability)+" is off"
			return nil, &errcode.Error{Code: errcode.ToggleOff, Message: fmt.Sprintf("%s is off for this conversation on this computer: turn it on to let %s run", toggleName(capability), r.Action)}
		}
	}
	key, decision := g.Policy.Decide(r.Action, r.Args)
	rec.Decision = decision
	switch decision {
	case Deny:
		rec.Outcome, rec.Detail = "refused", "the policy denies "+key
		return nil, &errcode.Error{Code: errcode.Denied, Message: "the policy on this box does not allow " + key}
	case Ask:
		timeout := g.ConfirmTimeout
		if timeout <= 0 {
			timeout = 2 * time.Minute
		}
		answer := No
		if g.Confirm != nil {
			a, err := g.Confirm(ctx, Question{Conversation: r.Conversation, Device: r.Device, Action: key, Summary: summary(key, r.Args), Timeout: timeout})
			// Any failure to get an answer is a No.
			if err == nil {
				answer = a
			}
		}
		rec.Reply = answer
		switch answer {
		case Yes:
		case Cancel:
			rec.Outcome = "cancelled"
			return nil, &errcode.Error{Code: errcode.Cancelled, Message: "the person cancelled " + key}
		default:
			rec.Outcome = "declined"
			return nil, &errcode.Error{Code: errcode.Declined, Message: "the person did not allow " + key + " (no answer counts as no)"}
		}
	}
	return g.Call(ctx, r.Device, r.Action, r.Conversation, r.Args)
}

func toggleName(c Capability) string {
	if c == CapDesktop {
		return "desktop access"
	}
	return "browser access"
}

// summary says in one line what a confirmation is about, without secrets.
func summary(key string, args json.RawMessage) string {
	var a map[string]any
	_ = json.Unmarshal(args, &a)
	switch key {
	case "browser.upload":
		if f, ok := a["file"].(map[string]any); ok {
			return fmt.Sprintf("send the file %v from the box to the computer's browser", f["name"])
		}
	case "browser.downloads.fetch":
		return fmt.Sprintf("copy the download %v from the computer to the box", a["fetch"])
	case "browser.eval":
		js, _ := a["js"].(string)
		if len(js) > 200 {
			js = js[:200] + "…"
		}
		return "run script in the computer's browser: " + js
	}
	return key
}

// Redacted replaces what an audit record must never hold.
const Redacted = "[redacted]"

var secretKeys = []string{"password", "passwd", "secret", "token", "api_key", "apikey", "authorization", "cookie", "credential"}

// Redact returns the arguments fit for the audit log: text typed into a
// password field (or on the screen, where the field cannot be known)
// and anything under a secret-looking key is replaced; file contents
// are reduced to their size.
func Redact(action string, args json.RawMessage, result json.RawMessage) json.RawMessage {
	if len(args) == 0 {
		return nil
	}
	var a map[string]any
	if json.Unmarshal(args, &a) != nil {
		return json.RawMessage(`"` + Redacted + `: not a JSON object"`)
	}
	redactKeys(a)
	switch action {
	case "browser.type":
		var r struct {
			Password *bool `json:"password_field"`
		}
		_ = json.Unmarshal(result, &r)
		// Only text the computer said went into an ordinary field is kept.
		if r.Password == nil || *r.Password {
			if _, ok := a["text"]; ok {
				a["text"] = Redacted
			}
		}
	case "browser.fill":
		// Each field's text stays only where the computer said it went
		// into an ordinary field.
		var r struct {
			Fields []struct {
				Password bool `json:"password_field"`
			} `json:"fields"`
		}
		_ = json.Unmarshal(result, &r)
		fields, _ := a["fields"].([]any)
		for i, f := range fields {
			if m, ok := f.(map[string]any); ok {
				if _, has := m["text"]; has && (i >= len(r.Fields) || r.Fields[i].Password) {
					m["text"] = Redacted
				}
			}
		}
	case "screen.type":
		if t, ok := a["text"].(string); ok {
			a["text"] = fmt.Sprintf("%s (%d characters)", Redacted, len([]rune(t)))
		}
	case "browser.upload":
		if f, ok := a["file"].(map[string]any); ok {
			if d, ok := f["data_base64"].(string); ok {
				f["data_base64"] = fmt.Sprintf("(%d bytes of base64)", len(d))
			}
		}
	}
	b, _ := json.Marshal(a)
	return b
}

func redactKeys(m map[string]any) {
	for k, v := range m {
		lk := strings.ToLower(k)
		for _, s := range secretKeys {
			if strings.Contains(lk, s) {
				m[k] = Redacted
			}
		}
		if sub, ok := v.(map[string]any); ok {
			redactKeys(sub)
		}
	}
}
