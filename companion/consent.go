package companion

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"time"

	"github.com/lowkeyhq/lowkey/devicectl"
	"github.com/lowkeyhq/lowkey/pairing"
)

// Consent rules, chosen on this computer for each capability.
const (
	// Ask: the first action of a conversation waits for the person here.
	Ask = "ask"
	// Trust: the box's grant is enough.
	Trust = "trust"
)

// Consent is what the person at this computer decided: a rule for each
// capability (defaults: ask before desktop access, trust the box for the
// browser) and the answers they gave, which hold for one pairing only.
type Consent struct {
	Browser string `json:"browser"`
	Desktop string `json:"desktop"`
	// PairedAt is the pairing the answers belong to; a new pairing (or
	// none) starts with none.
	PairedAt time.Time  `json:"paired_at,omitzero"`
	Answers  []Approval `json:"answers,omitempty"`
}

// Approval is one "allow": a conversation may use a capability until a
// time (zero: for as long as the conversation lasts).
type Approval struct {
	Conversation string    `json:"conversation"`
	Capability   string    `json:"capability"`
	Until        time.Time `json:"until,omitzero"`
	At           time.Time `json:"at"`
}

// maxApprovals bounds the answers kept; the oldest go first.
const maxApprovals = 256

// Rule is the rule for a capability.
func (c *Consent) Rule(capability devicectl.Capability) string {
	if capability == devicectl.CapDesktop {
		return c.Desktop
	}
	return c.Browser
}

// Allows says whether an answer given here lets conversation use
// capability now.
func (c *Consent) Allows(conversation string, capability devicectl.Capability, now time.Time) bool {
	for _, a := range c.Answers {
		if a.Conversation == conversation && a.Capability == string(capability) && (a.Until.IsZero() || now.Before(a.Until)) {
			return true
		}
	}
	return false
}

// Consent reads the rules and the answers that hold for the current
// pairing.
func (s State) Consent() (*Consent, error) {
	c := &Consent{Browser: Trust, Desktop: Ask}
	b, err := os.ReadFile(s.path("consent.json"))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		if err := json.Unmarshal(b, c); err != nil {
			return nil, fmt.Errorf("%s is damaged: %w (set the rules again with \"lowkey-companion consent\")", s.path("consent.json"), err)
		}
		for _, r := range []*string{&c.Browser, &c.Desktop} {
			if *r != Trust {
				*r = Ask // anything unreadable asks
			}
		}
	}
	h, err := s.Hub()
	if err != nil || !h.PairedAt.Equal(c.PairedAt) {
		// Answers given to another pairing, or to none, do not hold.
		c.Answers = nil
		if err == nil {
			c.PairedAt = h.PairedAt
		}
	}
	return c, nil
}

// SaveConsent writes the rules and answers.
func (s State) SaveConsent(c *Consent) error {
	if len(c.Answers) > maxApprovals {
		c.Answers = slices.Clone(c.Answers[len(c.Answers)-maxApprovals:])
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	return pairing.WriteFileAtomic(s.path("consent.json"), b)
}

// SetRule sets the rule for capabilities (both when none is named).
func (s State) SetRule(rule string, capabilities ...devicectl.Capability) error {
	if rule != Ask && rule != Trust {
		return fmt.Errorf("the rule is %q or %q", Ask, Trust)
	}
	c, err := s.Consent()
	if err != nil {
		return err
	}
	if len(capabilities) == 0 {
		capabilities = []devicectl.Capability{devicectl.CapBrowser, devicectl.CapDesktop}
	}
	for _, cp := range capabilities {
		if cp == devicectl.CapDesktop {
			c.Desktop = rule
		} else {
			c.Browser = rule
		}
	}
	return s.SaveConsent(c)
}

// approve records an "allow" given here.
func (s State) approve(conversation string, capability devicectl.Capability, until time.Time) error {
	c, err := s.Consent()
	if err != nil {
		return err
	}
	c.Answers = append(c.Answers, Approval{Conversation: conversation, Capability: string(capability), Until: until, At: time.Now().UTC()})
	return s.SaveConsent(c)
}
