package pages

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// memStore is the page records' store for these tests.
type memStore struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (s *memStore) Put(k string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[k] = b
	return nil
}

func (s *memStore) Get(k string, v any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.m[k]
	if !ok {
		return os.ErrNotExist
	}
	return json.Unmarshal(b, v)
}

func (s *memStore) Each(prefix string, fn func(string, []byte) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.m {
		if strings.HasPrefix(k, prefix) {
			if err := fn(k, v); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *memStore) Delete(k string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, k)
	return nil
}

func tarOf(t *testing.T, files map[string]string) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return &buf
}

func newPages(t *testing.T) (*Pages, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pages")
	p, err := New(dir, &memStore{m: map[string][]byte{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p, dir
}

// A directory swapped for a symbolic link while a page is written (after
// its directories are made, before its file is opened) cannot carry the
// write outside the page store: the kernel walk refuses it, and nothing
// lands where the link points.
func TestASymlinkSwappedInDuringAPublishIsRefused(t *testing.T) {
	p, dir := newPages(t)
	outside := t.TempDir()
	swapped := false
	p.beforeWrite = func(page, name string) {
		if name != "css/site.css" || swapped {
			return
		}
		swapped = true
		sub := filepath.Join(dir, page, "css")
		if err := os.RemoveAll(sub); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(outside, sub); err != nil {
			t.Fatal(err)
		}
	}
	_, err := p.FromTar("s-1", tarOf(t, map[string]string{"css/site.css": "body{}", "index.html": "<p>hi</p>"}))
	if !swapped {
		t.Fatal("the swap did not happen")
	}
	if err == nil {
		t.Fatal("the publish went through a swapped-in symbolic link")
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("a file was written where the link points: %v", entries)
	}
	// Nothing half-published is left, and no page was recorded.
	if pgs, _ := p.List(""); len(pgs) != 0 {
		t.Fatalf("pages after a refused publish: %v", pgs)
	}

	// The honest publish, with the same files, works.
	p.beforeWrite = nil
	pg, err := p.FromTar("s-1", tarOf(t, map[string]string{"css/site.css": "body{}", "index.html": "<p>hi</p>"}))
	if err != nil {
		t.Fatal(err)
	}
	if len(pg.Files) != 2 {
		t.Fatalf("files %v", pg.Files)
	}
}

// A symbolic link put into a published page (by anyone who could write
// there) is not followed out of the page store when the page is served.
func TestServingDoesNotFollowALinkOutOfThePageStore(t *testing.T) {
	p, dir := newPages(t)
	pg, err := p.FromTar("s-1", tarOf(t, map[string]string{"index.html": "<p>hi</p>"}))
	if err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(t.TempDir(), "secret.txt")
	if err := os.WriteFile(secret, []byte("the box's secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(dir, pg.ID, "leak.txt")); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p.Handler())
	defer srv.Close()
	for file, want := range map[string]int{"index.html": 200, "leak.txt": 404} {
		resp, err := http.Get(srv.URL + "/p/" + pg.Token + "/" + file)
		if err != nil {
			t.Fatal(err)
		}
		var body bytes.Buffer
		body.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want || strings.Contains(body.String(), "secret") {
			t.Errorf("%s: %d %q, want %d", file, resp.StatusCode, body.String(), want)
		}
	}
	// Unpublishing removes the link itself, never what it points to.
	if err := p.Unpublish(pg.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(secret); err != nil {
		t.Fatalf("unpublish removed the file a link pointed to: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, pg.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the page's directory is still there: %v", err)
	}
}
