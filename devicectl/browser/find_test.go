package browser

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// Each browser a Linux computer may have, alone on the PATH, is found:
// Chrome, Chromium under both names, and Edge (which the list written here
// before did not know).
func TestFindKnowsEachLinuxBrowser(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the table is Linux's")
	}
	for _, name := range []string{"chrome", "google-chrome", "microsoft-edge", "chromium", "chromium-browser"} {
		dir := t.TempDir()
		fake := filepath.Join(dir, name)
		if err := os.WriteFile(fake, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		t.Setenv("PATH", dir)
		got := Find("")
		// (On a machine with /usr/bin/google-chrome, that comes before
		// Edge and Chromium; this one has only /usr/bin/chromium, last.)
		if got != fake {
			t.Errorf("only %s installed: found %q", name, got)
		}
	}
	t.Setenv("PATH", t.TempDir())
	if got := Find("/nonexistent/chrome"); got != "" {
		t.Errorf("a given path that does not exist was taken: %q", got)
	}
	given := filepath.Join(t.TempDir(), "my-chrome")
	if err := os.WriteFile(given, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := Find(given); got != given {
		t.Errorf("the given browser: %q", got)
	}
}
