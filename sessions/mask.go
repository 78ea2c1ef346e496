package sessions

import (
	"bytes"
	"encoding/json"
	"sort"
	"strings"
	"sync"
)

// Masker replaces the box's secret values wherever they would be kept or
// shown: events, turn and job records, the audit, logs. The box knows
// every value, so whatever printed one (an agent, a job, a person typing
// it into the chat), it is stored as [secret NAME].
type Masker struct {
	mu    sync.RWMutex
	pairs []maskPair
}

type maskPair struct {
	name  string
	plain []byte
	// quoted is the value as it appears inside a JSON string.
	quoted []byte
}

// minMasked: shorter values would mask ordinary words.
const minMasked = 4

// Set replaces the values to mask (name → value).
func (m *Masker) Set(secrets map[string]string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pairs = nil
	for name, v := range secrets {
		m.add(name, v)
	}
}

// Add masks one more value (a secret just stored).
func (m *Masker) Add(name, value string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.add(name, value)
}

func (m *Masker) add(name, value string) {
	if len(value) < minMasked {
		return
	}
	q, _ := json.Marshal(value)
	m.pairs = append(m.pairs, maskPair{name: name, plain: []byte(value), quoted: q[1 : len(q)-1]})
	// Longest first: a value that contains another is masked whole.
	sort.Slice(m.pairs, func(i, j int) bool { return len(m.pairs[i].plain) > len(m.pairs[j].plain) })
}

// String masks plain text.
func (m *Masker) String(s string) string {
	if m == nil {
		return s
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, p := range m.pairs {
		if strings.Contains(s, string(p.plain)) {
			s = strings.ReplaceAll(s, string(p.plain), "[secret "+p.name+"]")
		}
	}
	return s
}

// JSON masks encoded JSON: values inside strings, escaped as JSON has
// them.
func (m *Masker) JSON(b []byte) []byte {
	if m == nil {
		return b
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, p := range m.pairs {
		if bytes.Contains(b, p.quoted) {
			b = bytes.ReplaceAll(b, p.quoted, []byte("[secret "+p.name+"]"))
		}
	}
	return b
}
