package hub

import (
	"archive/tar"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/lowkeyhq/lowkey/errcode"
)

// A backup is a tar archive: the box's identity (so paired computers
// still know it), a Badger backup of its store, and last the SHA-256 of
// both: an archive without it, or whose sums differ, is not whole.
const (
	backupIdentity = "identity.json"
	backupStore    = "store.badger"
	backupSums     = "SHA256SUMS"
)

// Backup writes a consistent backup of the running box to w. Everything
// that can fail before the first byte does: a failed store backup is an
// error, not a short archive.
func (h *Hub) Backup(w io.Writer) error {
	return writeBackup(w, filepath.Join(h.cfg.DataDir, "identity.json"), h.store)
}

// writeBackup writes the archive of the identity at idPath and the store.
func writeBackup(w io.Writer, idPath string, s *Store) error {
	id, err := os.ReadFile(idPath)
	if err != nil {
		return err
	}
	// Badger streams its backup; its size is not known ahead, so it goes
	// through a temporary file.
	tmp, err := os.CreateTemp(filepath.Dir(idPath), ".backup-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if _, err := s.db.Backup(tmp, 0); err != nil {
		return fmt.Errorf("store backup: %w", err)
	}
	size, err := tmp.Seek(0, io.SeekCurrent)
	if err != nil {
		return err
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	idSum := sha256.Sum256(id)
	if err := tw.WriteHeader(&tar.Header{Name: backupIdentity, Mode: 0o600, Size: int64(len(id)), ModTime: time.Now()}); err != nil {
		return err
	}
	if _, err := tw.Write(id); err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: backupStore, Mode: 0o600, Size: size, ModTime: time.Now()}); err != nil {
		return err
	}
	storeSum := sha256.New()
	if _, err := io.Copy(io.MultiWriter(tw, storeSum), tmp); err != nil {
		return err
	}
	sums := fmt.Sprintf("%x  %s\n%x  %s\n", idSum, backupIdentity, storeSum.Sum(nil), backupStore)
	if err := tw.WriteHeader(&tar.Header{Name: backupSums, Mode: 0o600, Size: int64(len(sums)), ModTime: time.Now()}); err != nil {
		return err
	}
	if _, err := io.WriteString(tw, sums); err != nil {
		return err
	}
	return tw.Close()
}

// WriteVerifiedBackup has write fill path.partial (owner-only), syncs it,
// reads it back whole, and only then names it path: a file of that name
// is always a complete archive. lowkey backup and the box's own backups
// both write this way.
func WriteVerifiedBackup(path string, write func(*os.File) error) error {
	tmp := path + ".partial"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	err = write(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		if verr := VerifyBackupFile(tmp); verr != nil {
			err = fmt.Errorf("backup not written: %w", verr)
		}
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// VerifyBackupFile checks the archive at path is complete.
func VerifyBackupFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return VerifyBackup(f)
}

func (h *Hub) getBackup(w http.ResponseWriter, r *http.Request) {
	// Written to a file first: a failure is answered as one, never as
	// an archive cut short after a 200.
	tmp, err := os.CreateTemp(h.cfg.DataDir, ".backup-archive-")
	if err != nil {
		fail(w, errcode.Internal, "backup: "+err.Error())
		return
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if err := h.Backup(tmp); err != nil {
		h.log.Error("backup failed", "err", err)
		fail(w, errcode.BackupFailed, "the backup failed: "+err.Error())
		return
	}
	size, err := tmp.Seek(0, io.SeekCurrent)
	if err == nil {
		_, err = tmp.Seek(0, io.SeekStart)
	}
	if err != nil {
		fail(w, errcode.BackupFailed, "the backup failed: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/x-tar")
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	if _, err := io.Copy(w, tmp); err != nil {
		h.log.Error("sending the backup failed", "err", err)
	}
}

// VerifyBackup reads a whole backup and checks it is complete: both
// members, and the sums written after them match.
func VerifyBackup(r io.Reader) error {
	tr := tar.NewReader(r)
	got := map[string]string{}
	var sums string
	for {
		hd, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("the backup is cut short or damaged: %w", err)
		}
		switch hd.Name {
		case backupIdentity, backupStore:
			h := sha256.New()
			if _, err := io.Copy(h, tr); err != nil {
				return fmt.Errorf("the backup is cut short or damaged: %w", err)
			}
			got[hd.Name] = fmt.Sprintf("%x", h.Sum(nil))
		case backupSums:
			b, err := io.ReadAll(io.LimitReader(tr, 4096))
			if err != nil {
				return fmt.Errorf("the backup is cut short or damaged: %w", err)
			}
			sums = string(b)
		default:
			return fmt.Errorf("not a Lowkey backup: unexpected %q", hd.Name)
		}
	}
	if sums == "" {
		return errors.New("the backup is incomplete: it has no checksums at its end (cut short, or made by an older lowkey)")
	}
	for _, name := range []string{backupIdentity, backupStore} {
		if got[name] == "" {
			return fmt.Errorf("the backup is incomplete: no %s", name)
		}
		if !strings.Contains(sums, got[name]+"  "+name+"\n") {
			return fmt.Errorf("the backup is damaged: %s does not match its checksum", name)
		}
	}
	return nil
}

// Restore fills an empty data directory from a backup. No hub may be
// running on it.
func Restore(dataDir string, r io.Reader) error {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	lock, err := lockDataDir(dataDir)
	if err != nil {
		return err
	}
	defer lock.Unlock()
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
		case backupSums:
			continue
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
