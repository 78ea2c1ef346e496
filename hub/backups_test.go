package hub_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lowkeyhq/lowkey/hub"
)

// waitBackups waits until the box has made n timed backups after the
// given one (bounded: a box that stops backing up fails the test).
func waitBackups(t *testing.T, h *hub.Hub, after time.Time, n int) hub.BackupState {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	seen := map[time.Time]bool{}
	for {
		st := h.BackupState()
		if st.LastTime.After(after) {
			seen[st.LastTime] = true
		}
		if len(seen) >= n {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d timed backups in a minute (last: %+v)", len(seen), n, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestTimedBackupsRotateAndEachRestores(t *testing.T) {
	base := t.TempDir()
	data, backups := filepath.Join(base, "box"), filepath.Join(base, "backups")
	cfg := hub.Config{DataDir: data, Listen: "127.0.0.1:0", NoMDNS: true, LoopbackICE: true, Logger: quiet(),
		BackupDir: backups, BackupEvery: 1100 * time.Millisecond, BackupKeep: 3}
	h, err := hub.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a := api{t: t, base: h.URL(), token: h.Token()}
	token := h.Token()
	// Something to find in the archives: conversations, each followed by
	// a backup begun after it was made.
	var convs []string
	for range 5 {
		convs = append(convs, newSession(t, a))
		waitBackups(t, h, time.Now(), 1)
	}
	// Looked at with the box stopped: a running one goes on rotating.
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	names, _, err := hub.TimedBackups(backups)
	if err != nil || len(names) != 3 {
		t.Fatalf("after 5 or more timed backups, keeping 3: %v %v", names, err)
	}
	if fi, err := os.Stat(backups); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("the backup directory: %v %v", fi, err)
	}
	// Each archive restores into a box that answers with the same token.
	// The three kept began after the third conversation at the latest,
	// and the newest after the fifth.
	for i, name := range names {
		fi, err := os.Stat(name)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", name, fi, err)
		}
		dir := filepath.Join(base, "restored", filepath.Base(name))
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		err = hub.Restore(dir, f)
		f.Close()
		if err != nil {
			t.Fatalf("restoring %s: %v", name, err)
		}
		r, err := startOn(t, dir)
		if err != nil {
			t.Fatal(err)
		}
		ra := api{t: t, base: r.URL(), token: token}
		want := convs[:3]
		if i == len(names)-1 {
			want = convs
		}
		for _, c := range want {
			if code, _, raw := ra.do("GET", "/api/v1/sessions/"+c, nil); code != 200 {
				t.Errorf("%s restored: conversation %s: %d %s", filepath.Base(name), c, code, raw)
			}
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if leftovers, _ := filepath.Glob(filepath.Join(backups, "*.partial")); len(leftovers) != 0 {
		t.Fatalf("partial archives left: %v", leftovers)
	}

	h, err = hub.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	// A backup that cannot be written is said, and the next one works.
	// (Moved aside in one step: the box may be writing there.)
	if err := os.Rename(backups, backups+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(backups, []byte("in the way"), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for h.BackupState().Err == "" {
		if time.Now().After(deadline) {
			t.Fatal("a failing backup was never reported")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := h.BackupState(); !strings.Contains(st.Err, backups) {
		t.Fatalf("the failure does not say where: %+v", st)
	}
	if code, _, raw := (api{t: t, base: h.URL(), token: token}).do("GET", "/metrics", nil); code != 200 || !strings.Contains(string(raw), `lowkey_backups_total{result="failed"}`) {
		t.Fatalf("the failed backup is not counted: %d", code)
	}
	for _, c := range h.Doctor(context.Background()) {
		if c.Name == "backups" && (c.Status != hub.CheckFail || !strings.Contains(c.Detail, "failed")) {
			t.Fatalf("the doctor on a failing backup: %+v", c)
		}
	}
	if err := os.Remove(backups); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(backups, 0o700); err != nil {
		t.Fatal(err)
	}
	if st := waitBackups(t, h, h.BackupState().ErrTime, 1); st.Err != "" {
		t.Fatalf("after the directory came back: %+v", st)
	}
}

func TestTimedBackupsKeepTheirScheduleAcrossRestarts(t *testing.T) {
	base := t.TempDir()
	cfg := hub.Config{DataDir: filepath.Join(base, "box"), Listen: "127.0.0.1:0", NoMDNS: true, LoopbackICE: true, Logger: quiet(),
		BackupEvery: time.Hour}
	h, err := hub.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// None there: the first is made at once, in DATA/backups.
	first := waitBackups(t, h, time.Time{}, 1)
	if filepath.Dir(first.Last) != filepath.Join(cfg.DataDir, "backups") {
		t.Fatalf("the default backup directory: %s", first.Last)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	// Restarted within the hour: the next is not due, so none is made.
	h, err = hub.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if st := h.BackupState(); st.Last != first.Last || st.Next.Before(first.LastTime.Add(59*time.Minute)) {
		t.Fatalf("after a restart the box does not keep to its schedule (last %s at %s): %+v", first.Last, first.LastTime, st)
	}
	names, _, err := hub.TimedBackups(filepath.Join(cfg.DataDir, "backups"))
	if err != nil || len(names) != 1 {
		t.Fatalf("a restart within the hour made another backup: %v %v", names, err)
	}
}
