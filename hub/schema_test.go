package hub_test

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lowkeyhq/lowkey/hub"
)

// The box in testdata/schema1-backup.tar (see testdata/README.md).
const (
	oldToken   = "ZDT7KAWXCL5MQPGDT3VWKCEM5RKIO2V52WDP3PNVSN3KCZQJZKRR"
	oldDevice  = "5t5rusxrjqmx4ttf"
	oldConv    = "s-nisdphxolgnsiwsr"
	otherConv  = "s-z2w4hqjdswheaedc"
	fixtureTar = "testdata/schema1-backup.tar"
)

func restoreFixture(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "box")
	f, err := os.Open(fixtureTar)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := hub.Restore(dir, f); err != nil {
		t.Fatal(err)
	}
	return dir
}

func startOn(t *testing.T, dir string) (*hub.Hub, error) {
	t.Helper()
	return hub.Start(hub.Config{DataDir: dir, Listen: "127.0.0.1:0", NoMDNS: true, LoopbackICE: true, Logger: quiet()})
}

func TestTodaysDataUpgradesAndReadsTheSame(t *testing.T) {
	dir := restoreFixture(t)
	h, err := startOn(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	a := api{t: t, base: h.URL(), token: oldToken}
	// The owner's token, the computer, the conversations, the member and
	// the secret are all as they were.
	code, _, raw := a.do("GET", "/api/v1/devices", nil)
	if code != 200 || !strings.Contains(string(raw), oldDevice) {
		t.Fatalf("devices after the upgrade: %d %s", code, raw)
	}
	code, s, raw := a.do("GET", "/api/v1/sessions/"+oldConv, nil)
	if code != 200 {
		t.Fatalf("the conversation after the upgrade: %d %s", code, raw)
	}
	if turns, _ := s["turns"].([]any); len(turns) != 1 {
		t.Fatalf("the conversation's turns after the upgrade: %s", raw)
	}
	if !strings.Contains(string(raw), `"browser":true`) {
		t.Fatalf("the conversation's browser control after the upgrade: %s", raw)
	}
	for path, want := range map[string]string{"/api/v1/users": `"ana"`, "/api/v1/secrets": "GARDEN_KEY"} {
		if code, _, raw := a.do("GET", path, nil); code != 200 || !strings.Contains(string(raw), want) {
			t.Fatalf("%s after the upgrade: %d %s", path, code, raw)
		}
	}
	// Migration 2 indexed the audit: each conversation reads its own.
	for conv, n := range map[string]int{oldConv: 2, otherConv: 1} {
		recs, err := h.AuditRecords(conv, "")
		if err != nil || len(recs) != n {
			t.Fatalf("audit of %s after the upgrade: %d records (%v), want %d", conv, len(recs), err, n)
		}
		for _, r := range recs {
			if r.Conversation != conv || r.Action != "sys.info" {
				t.Fatalf("audit of %s: %+v", conv, r)
			}
		}
	}
	all, err := h.AuditRecords("", "")
	if err != nil || len(all) != 3 {
		t.Fatalf("the whole audit: %d (%v)", len(all), err)
	}
	// A new action lands in the index too (the fixture's computer is not
	// running: its refusal is audited all the same).
	if code, _, raw := a.do("POST", "/api/v1/sessions/"+oldConv+"/devices/"+oldDevice+"/actions", map[string]any{"action": "sys.info"}); code != http.StatusConflict {
		t.Fatalf("sys.info with the computer away: %d %s", code, raw)
	}
	if recs, _ := h.AuditRecords(oldConv, ""); len(recs) != 3 {
		t.Fatalf("a new audit record of %s is not in its index: %d records", oldConv, len(recs))
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}

	// Before changing anything, the hub wrote the box as it was.
	saved, err := filepath.Glob(filepath.Join(dir, "backups", "schema-1-*.tar"))
	if err != nil || len(saved) != 1 {
		t.Fatalf("the backup before the upgrade: %v %v", saved, err)
	}
	if err := hub.VerifyBackupFile(saved[0]); err != nil {
		t.Fatal(err)
	}
	// It restores to the old format, which upgrades again.
	again := filepath.Join(t.TempDir(), "again")
	f, err := os.Open(saved[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := hub.Restore(again, f); err != nil {
		t.Fatal(err)
	}
	h2, err := startOn(t, again)
	if err != nil {
		t.Fatal(err)
	}
	if recs, err := h2.AuditRecords(otherConv, ""); err != nil || len(recs) != 1 {
		t.Fatalf("audit of %s after upgrading the saved box: %d (%v)", otherConv, len(recs), err)
	}
	if err := h2.Close(); err != nil {
		t.Fatal(err)
	}

	// A second start finds the store current: no second backup.
	h3, err := startOn(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := h3.Close(); err != nil {
		t.Fatal(err)
	}
	if saved, _ := filepath.Glob(filepath.Join(dir, "backups", "schema-*.tar")); len(saved) != 1 {
		t.Fatalf("a current store was backed up again: %v", saved)
	}
}

func TestANewerStoreIsRefusedUntouched(t *testing.T) {
	dir := restoreFixture(t)
	s, err := hub.OpenStore(filepath.Join(dir, "store"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put("meta/schema", map[string]int{"version": hub.SchemaVersion + 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = startOn(t, dir)
	if !errors.Is(err, hub.ErrNewerStore) || !strings.Contains(err.Error(), "newer version of lowkey") {
		t.Fatalf("a store of version %d: %v", hub.SchemaVersion+1, err)
	}
	if saved, _ := filepath.Glob(filepath.Join(dir, "backups", "*.tar")); len(saved) != 0 {
		t.Fatalf("a refused store was touched: %v", saved)
	}
	// An empty data directory starts at the current version.
	fresh := filepath.Join(t.TempDir(), "fresh")
	h, err := startOn(t, fresh)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = hub.OpenStore(filepath.Join(fresh, "store"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, err := s.StoreVersion(); err != nil || v != hub.SchemaVersion {
		t.Fatalf("a new box's store is version %d (%v)", v, err)
	}
}
