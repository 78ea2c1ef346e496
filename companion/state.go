package companion

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/lowkeyhq/lowkey/pairing"
)

// ErrNotPaired means the state directory holds no box.
var ErrNotPaired = errors.New(`this computer is not paired with a box: run "lowkey-companion pair --code CODE" first`)

// HubRecord is the pinned box.
type HubRecord struct {
	Peer pairing.Peer `json:"peer"`
	// Addr is the last address the box answered on (host:port).
	Addr     string    `json:"addr"`
	PairedAt time.Time `json:"paired_at"`
	// TLS says the box serves HTTPS with the pinned certificate: never
	// fall back to plain HTTP with it.
	TLS bool `json:"tls,omitempty"`
}

// State is the companion's directory: its identity and the pinned box,
// every file owner-only.
type State struct{ Dir string }

// DefaultStateDir is ~/.config/lowkey-companion.
func DefaultStateDir() string {
	if d, err := os.UserConfigDir(); err == nil {
		return filepath.Join(d, "lowkey-companion")
	}
	return ".lowkey-companion"
}

func (s State) path(name string) string { return filepath.Join(s.Dir, name) }

// Identity loads or creates this computer's identity.
func (s State) Identity() (*pairing.Identity, error) {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	return pairing.LoadOrCreateIdentity(s.path("identity.json"))
}

// Hub returns the pinned box.
func (s State) Hub() (*HubRecord, error) {
	b, err := os.ReadFile(s.path("hub.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotPaired
	}
	if err != nil {
		return nil, err
	}
	var h HubRecord
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, fmt.Errorf("%s is damaged: %w", s.path("hub.json"), err)
	}
	return &h, nil
}

// SaveHub pins a box.
func (s State) SaveHub(h *HubRecord) error {
	b, err := json.MarshalIndent(h, "", "  ")
	if err != nil {
		return err
	}
	return pairing.WriteFileAtomic(s.path("hub.json"), b)
}

// Forget drops the pinned box; the identity stays.
func (s State) Forget() error {
	err := os.Remove(s.path("hub.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// Paused says whether the local kill switch is on.
func (s State) Paused() (bool, error) {
	_, err := os.Stat(s.path("paused"))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// SetPaused turns the local kill switch on or off. A running companion
// checks it before every action.
func (s State) SetPaused(on bool) error {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	if on {
		return pairing.WriteFileAtomic(s.path("paused"), []byte(time.Now().UTC().Format(time.RFC3339)+"\n"))
	}
	err := os.Remove(s.path("paused"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}
