package sessions

import (
	"encoding/json"
	"testing"
)

// A secret's value is masked as it is printed and as JSON carries it;
// a value inside a longer one is masked whole; short values mask nothing.
func TestMaskerHidesSecretValues(t *testing.T) {
	var m Masker
	m.Set(map[string]string{"TOKEN": `s3cr"et\value`, "SHORT": "ab", "LONG": "prefix-s3cr-long", "PART": "s3cr"})
	cases := map[string]string{
		`token is s3cr"et\value.`:   `token is [secret TOKEN].`,
		"prefix-s3cr-long and s3cr": "[secret LONG] and [secret PART]",
		"ab stays":                  "ab stays",
	}
	for in, want := range cases {
		if got := m.String(in); got != want {
			t.Errorf("String(%q) = %q, want %q", in, got, want)
		}
		raw, _ := json.Marshal(map[string]string{"text": in})
		var back map[string]string
		if err := json.Unmarshal(m.JSON(raw), &back); err != nil {
			t.Fatalf("masked JSON is not JSON: %s", m.JSON(raw))
		}
		if back["text"] != want {
			t.Errorf("JSON(%s) gives %q, want %q", raw, back["text"], want)
		}
	}
}
