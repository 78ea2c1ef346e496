package hub

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/lowkeyhq/lowkey/devicectl"
)

// SchemaVersion is the format of the store this hub writes. A store from
// before versions were kept (no meta/schema) is version 1.
//
//	1: the records as the first releases wrote them.
//	2: an audit index by conversation (auditconv/CONVERSATION/ID), so a
//	   conversation's audit is read without the whole box's.
const SchemaVersion = 2

const schemaKey = "meta/schema"

type schemaRecord struct {
	Version int       `json:"version"`
	Since   time.Time `json:"since"`
}

// A migration brings the store from version to-1 to version to. Each is
// safe to run again: a hub that dies in one runs it again at its next
// start, and the version moves only once it is done.
type migration struct {
	to   int
	what string
	run  func(*Store) error
}

var migrations = []migration{
	{to: 2, what: "index the audit by conversation", run: indexAuditByConversation},
}

// ErrNewerStore: the data was written by a newer Lowkey than this one.
var ErrNewerStore = errors.New("the box's data was written by a newer version of lowkey")

// StoreVersion reads the store's schema version: 1 for data from before
// versions were kept, 0 for an empty store.
func (s *Store) StoreVersion() (int, error) {
	var rec schemaRecord
	err := s.Get(schemaKey, &rec)
	if err == nil {
		return rec.Version, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return 0, err
	}
	empty := true
	if err := s.Each("", func(string, []byte) error {
		empty = false
		return errStop
	}); err != nil && !errors.Is(err, errStop) {
		return 0, err
	}
	if empty {
		return 0, nil
	}
	return 1, nil
}

var errStop = errors.New("stop")

// migrate brings the store to SchemaVersion. Before it changes data of an
// older version, before writes a backup of the box as it was and returns
// where.
func (s *Store) migrate(log *slog.Logger, before func(from int) (string, error)) error {
	v, err := s.StoreVersion()
	if err != nil {
		return fmt.Errorf("reading the store's version: %w", err)
	}
	switch {
	case v == SchemaVersion:
		return nil
	case v == 0:
		return s.Put(schemaKey, schemaRecord{Version: SchemaVersion, Since: time.Now().UTC()})
	case v > SchemaVersion:
		return fmt.Errorf("%w (its store is version %d; this one knows versions up to %d): run the newer lowkey, or restore a backup made before the upgrade into a new data directory",
			ErrNewerStore, v, SchemaVersion)
	}
	saved, err := before(v)
	if err != nil {
		return fmt.Errorf("the store needs upgrading from version %d to %d, and a backup of it first, which failed: %w (nothing was changed)", v, SchemaVersion, err)
	}
	for _, m := range migrations {
		if m.to <= v {
			continue
		}
		log.Info("upgrading the store", "from", m.to-1, "to", m.to, "step", m.what, "backup", saved)
		if err := m.run(s); err != nil {
			return fmt.Errorf("upgrading the store to version %d (%s): %w; the box as it was is in %s", m.to, m.what, err, saved)
		}
		if err := s.Put(schemaKey, schemaRecord{Version: m.to, Since: time.Now().UTC()}); err != nil {
			return fmt.Errorf("upgrading the store to version %d: %w", m.to, err)
		}
	}
	return nil
}

func auditConvKey(conversation, id string) string {
	return "auditconv/" + conversation + "/" + id
}

// indexAuditByConversation is migration 2: every audit record of a
// conversation gets its index entry. The keys are gathered first and
// written after, in batches: a store write inside an iteration would hold
// both at once.
func indexAuditByConversation(s *Store) error {
	var keys []string
	if err := s.Each("audit/", func(key string, raw []byte) error {
		var rec devicectl.AuditRecord
		if json.Unmarshal(raw, &rec) == nil && rec.Conversation != "" {
			keys = append(keys, auditConvKey(rec.Conversation, key[len("audit/"):]))
		}
		return nil
	}); err != nil {
		return err
	}
	for len(keys) > 0 {
		n := min(len(keys), 512)
		batch := make(map[string]any, n)
		for _, k := range keys[:n] {
			batch[k] = true
		}
		if err := s.PutAll(batch); err != nil {
			return err
		}
		keys = keys[n:]
	}
	return nil
}

// preMigrationBackup writes the box as it is (identity and store) to
// DATA/backups/schema-N-TIME.tar (N the version it is in), checked,
// before a migration.
func preMigrationBackup(dataDir string, s *Store, from int) (string, error) {
	dir := filepath.Join(dataDir, "backups")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	name := filepath.Join(dir, fmt.Sprintf("schema-%d-%s.tar", from, time.Now().UTC().Format("20060102T150405Z")))
	return name, WriteVerifiedBackup(name, func(f *os.File) error {
		return writeBackup(f, filepath.Join(dataDir, "identity.json"), s)
	})
}
