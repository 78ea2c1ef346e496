package sessions

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// A simple exec: line runs its program directly; anything the shell
// would treat specially still goes through the shell, unchanged.
func TestExecRuntimeUsesTheShellOnlyWhenNeeded(t *testing.T) {
	r := &Runtime{}
	cases := map[string][]string{
		"exec:/bin/echo hello  world": {"/bin/echo", "hello", "world"},
		"exec:cat":                    {"/usr/bin/cat"},
		"exec:echo $HOME":             {"/bin/sh", "-c", "echo $HOME"},
		"exec:ls *.go":                {"/bin/sh", "-c", "ls *.go"},
		"exec:echo 'a b'":             {"/bin/sh", "-c", "echo 'a b'"},
		"exec:cd /tmp":                {"/bin/sh", "-c", "cd /tmp"},
		"exec:FOO=1 env":              {"/bin/sh", "-c", "FOO=1 env"},
		"exec:no-such-program-here":   {"/bin/sh", "-c", "no-such-program-here"},
		"exec:echo a; echo b":         {"/bin/sh", "-c", "echo a; echo b"},
		"exec:echo a > f":             {"/bin/sh", "-c", "echo a > f"},
		"exec:echo ~":                 {"/bin/sh", "-c", "echo ~"},
	}
	for agent, want := range cases {
		got, own, err := r.workerCommand(agent)
		if err != nil || own {
			t.Fatal(agent, err, own)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s runs %q, want %q", agent, got, want)
		}
	}
}

// Each box keeps credential files in a private directory of its own. A
// box that starts again clears what its earlier life left there (a crash
// cannot clean up); another box's directory is left alone; stopping
// removes it.
func TestCredentialsDirectoryIsTheBoxsOwn(t *testing.T) {
	base := t.TempDir()
	a := NewRuntime(Config{WorkDir: filepath.Join(t.TempDir(), "work"), SecretDir: base})
	b := NewRuntime(Config{WorkDir: filepath.Join(t.TempDir(), "work"), SecretDir: base})
	if a.cfg.SecretDir == b.cfg.SecretDir || filepath.Dir(a.cfg.SecretDir) != base {
		t.Fatalf("two boxes share %s / %s", a.cfg.SecretDir, b.cfg.SecretDir)
	}
	for _, r := range []*Runtime{a, b} {
		fi, err := os.Stat(r.cfg.SecretDir)
		if err != nil || fi.Mode().Perm() != 0o700 {
			t.Fatalf("%s: %v %v", r.cfg.SecretDir, fi.Mode(), err)
		}
		left := filepath.Join(r.cfg.SecretDir, "lowkey-cred-1", "credentials.json")
		_ = os.MkdirAll(filepath.Dir(left), 0o700)
		if err := os.WriteFile(left, []byte(`{"secrets":{"K":"v"}}`), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// a starts again after a crash: its leftovers go, b's stay.
	again := NewRuntime(Config{WorkDir: a.cfg.WorkDir, SecretDir: base})
	if again.cfg.SecretDir != a.cfg.SecretDir {
		t.Fatalf("the box moved its directory: %s -> %s", a.cfg.SecretDir, again.cfg.SecretDir)
	}
	if _, err := os.Stat(filepath.Join(a.cfg.SecretDir, "lowkey-cred-1")); !os.IsNotExist(err) {
		t.Fatalf("a crashed box's credentials survived its restart: %v", err)
	}
	if _, err := os.Stat(filepath.Join(b.cfg.SecretDir, "lowkey-cred-1", "credentials.json")); err != nil {
		t.Fatalf("another box's credentials were touched: %v", err)
	}
	b.Close()
	if _, err := os.Stat(b.cfg.SecretDir); !os.IsNotExist(err) {
		t.Fatalf("a stopped box left its credentials directory: %v", err)
	}
}
