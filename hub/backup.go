package hub

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// A backup is a tar archive: the box's identity (so paired computers
// still know it) and a Badger backup of its store.
const (
	backupIdentity = "identity.json"
	backupStore    = "store.badger"
)

// Backup writes a consistent backup of the running box to w.
func (h *Hub) Backup(w io.Writer) error {
	id, err := os.ReadFile(filepath.Join(h.cfg.DataDir, "identity.json"))
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	if err := tw.WriteHeader(&tar.Header{Name: backupIdentity, Mode: 0o600, Size: int64(len(id)), ModTime: time.Now()}); err != nil {
		return err
	}
	if _, err := tw.Write(id); err != nil {
		return err
	}
	// Badger streams its backup; its size is not known ahead, so it goes
	// through a temporary file.
	tmp, err := os.CreateTemp(h.cfg.DataDir, ".backup-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if _, err := h.store.db.Backup(tmp, 0); err != nil {
		return fmt.Errorf("store backup: %w", err)
	}
	size, _ := tmp.Seek(0, io.SeekCurrent)
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: backupStore, Mode: 0o600, Size: size, ModTime: time.Now()}); err != nil {
		return err
	}
	if _, err := io.Copy(tw, tmp); err != nil {
		return err
	}
	return tw.Close()
}

func (h *Hub) getBackup(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/x-tar")
	if err := h.Backup(w); err != nil {
		h.log.Error("backup failed", "err", err)
	}
}

// Restore fills an empty data directory from a backup. No hub may be
// running on it.
func Restore(dataDir string, r io.Reader) error {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dataDir, "identity.json")); err == nil {
		return fmt.Errorf("%s already holds a box: restore into an empty data directory", dataDir)
	}
	tr := tar.NewReader(r)
	var gotID, gotStore bool
	for {
		hd, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("not a Lowkey backup: %w", err)
		}
		switch hd.Name {
		case backupIdentity:
			b, err := io.ReadAll(io.LimitReader(tr, 1<<20))
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dataDir, "identity.json"), b, 0o600); err != nil {
				return err
			}
			gotID = true
		case backupStore:
			s, err := OpenStore(filepath.Join(dataDir, "store"), nil)
			if err != nil {
				return err
			}
			err = s.db.Load(tr, 256)
			if cerr := s.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("loading the store: %w", err)
			}
			gotStore = true
		default:
			return fmt.Errorf("not a Lowkey backup: unexpected %q", hd.Name)
		}
	}
	if !gotID || !gotStore {
		return errors.New("the backup is incomplete: it needs the identity and the store")
	}
	return nil
}
