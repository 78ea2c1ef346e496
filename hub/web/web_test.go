package web

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The vendored libraries are the npm packages' files byte for byte (their
// SHA-256 as scripts/vendor-web recorded them), and the page loads them
// from the box itself.
func TestVendoredLibrariesAreTheRecordedOnes(t *testing.T) {
	sums, err := static.ReadFile("static/vendor/SHA256SUMS")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	index := get(t, srv.URL+"/", "text/html")
	sc := bufio.NewScanner(strings.NewReader(string(sums)))
	n := 0
	for sc.Scan() {
		want, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("SHA256SUMS line %q", sc.Text())
		}
		n++
		body := get(t, srv.URL+"/assets/vendor/"+name, "text/javascript")
		sum := sha256.Sum256([]byte(body))
		if got := hex.EncodeToString(sum[:]); got != want {
			t.Errorf("%s is %s, SHA256SUMS says %s: run scripts/vendor-web", name, got, want)
		}
		if !strings.Contains(index, `src="/assets/vendor/`+name+`"`) {
			t.Errorf("the page does not load %s", name)
		}
	}
	if n != 2 {
		t.Fatalf("%d vendored files recorded, want marked and DOMPurify", n)
	}
}

func get(t *testing.T, url, wantType string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), wantType) {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return string(b)
}
