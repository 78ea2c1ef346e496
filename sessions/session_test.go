package sessions

import (
	"strings"
	"testing"
)

// A first message names its conversation: its first line, cut at 60
// characters (not bytes).
func TestTitleFromAFirstMessage(t *testing.T) {
	for in, want := range map[string]string{
		"open https://example.com on my laptop\nand then more": "open https://example.com on my laptop",
		"   \n  ":               DefaultTitle,
		strings.Repeat("é", 70): strings.Repeat("é", 60) + "…",
	} {
		if got := TitleFrom(in); got != want {
			t.Errorf("TitleFrom(%q) = %q, want %q", in, got, want)
		}
	}
}
