package hub

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Timed backups: every BackupEvery the hub writes the box to BackupDir as
// lowkey-TIME.tar, reads it back whole before giving it its name, and keeps
// the newest BackupKeep.
const (
	backupPrefix = "lowkey-"
	backupSuffix = ".tar"
	backupStamp  = "20060102T150405Z"
)

// BackupState is how the timed backups stand.
type BackupState struct {
	Dir   string        `json:"dir,omitempty"`
	Every time.Duration `json:"every_ns,omitempty"`
	// Last is the newest archive there, and when it was made.
	Last     string    `json:"last,omitempty"`
	LastTime time.Time `json:"last_time,omitzero"`
	// Next is when the next one is due.
	Next time.Time `json:"next,omitzero"`
	// Err is why the last try failed ("" when it did not).
	Err     string    `json:"error,omitempty"`
	ErrTime time.Time `json:"error_time,omitzero"`
}

type backups struct {
	mu    sync.Mutex
	state BackupState
}

// TimedBackups lists the timed archives in dir, oldest first, with the
// times their names say.
func TimedBackups(dir string) ([]string, []time.Time, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	var names []string
	var times []time.Time
	for _, e := range entries {
		n := e.Name()
		if !e.Type().IsRegular() || !strings.HasPrefix(n, backupPrefix) || !strings.HasSuffix(n, backupSuffix) {
			continue
		}
		t, err := time.Parse(backupStamp, strings.TrimSuffix(strings.TrimPrefix(n, backupPrefix), backupSuffix))
		if err != nil {
			continue
		}
		names, times = append(names, filepath.Join(dir, n)), append(times, t)
	}
	// The stamps sort as they read.
	return names, times, nil
}

// startBackups runs the timed backups until the hub stops. The first is
// due BackupEvery after the newest archive already there (at once when
// there is none), so a box restarted often still backs up.
func (h *Hub) startBackups() error {
	dir, every := h.cfg.BackupDir, h.cfg.BackupEvery
	// The archives hold the box's keys.
	if err := privateDir("backup directory", dir); err != nil {
		return err
	}
	h.backups.state = BackupState{Dir: dir, Every: every}
	next := time.Duration(0)
	if names, times, err := TimedBackups(dir); err == nil && len(names) > 0 {
		last := times[len(times)-1]
		h.backups.state.Last, h.backups.state.LastTime = names[len(names)-1], last
		next = max(0, time.Until(last.Add(every)))
	}
	h.backups.state.Next = time.Now().Add(next).UTC()
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		t := time.NewTimer(next)
		defer t.Stop()
		for {
			select {
			case <-h.ctx.Done():
				return
			case <-t.C:
			}
			h.timedBackup()
			t.Reset(every)
			h.backups.mu.Lock()
			h.backups.state.Next = time.Now().Add(every).UTC()
			h.backups.mu.Unlock()
		}
	}()
	return nil
}

// timedBackup writes one archive and rotates the old ones out.
func (h *Hub) timedBackup() {
	dir := h.cfg.BackupDir
	now := time.Now().UTC()
	path := filepath.Join(dir, backupPrefix+now.Format(backupStamp)+backupSuffix)
	err := WriteVerifiedBackup(path, func(f *os.File) error { return h.Backup(f) })
	var removed []string
	if err == nil {
		removed, err = rotateBackups(dir, h.cfg.BackupKeep)
	}
	h.backups.mu.Lock()
	defer h.backups.mu.Unlock()
	if err != nil {
		h.backups.state.Err, h.backups.state.ErrTime = err.Error(), now
		h.metrics.backups.WithLabelValues("failed").Inc()
		h.log.Error("the timed backup failed", "dir", dir, "err", err)
		return
	}
	h.backups.state.Last, h.backups.state.LastTime, h.backups.state.Err = path, now, ""
	h.metrics.backups.WithLabelValues("done").Inc()
	h.metrics.lastBackup.Set(float64(now.Unix()))
	h.log.Info("backed up", "file", path, "removed", len(removed))
}

// rotateBackups removes the oldest timed archives beyond keep.
func rotateBackups(dir string, keep int) ([]string, error) {
	names, _, err := TimedBackups(dir)
	if err != nil || len(names) <= keep {
		return nil, err
	}
	old := names[:len(names)-keep]
	for _, n := range old {
		if err := os.Remove(n); err != nil {
			return nil, err
		}
	}
	return old, nil
}

// BackupState says how the timed backups stand (zero when they are off).
func (h *Hub) BackupState() BackupState {
	h.backups.mu.Lock()
	defer h.backups.mu.Unlock()
	return h.backups.state
}

// ShortDuration writes a duration as people do: 24h, 90m, 1h30m.
func ShortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
