package errcode_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"testing"

	"github.com/lowkeyhq/lowkey/errcode"
)

// A refusal that crossed the wire (decoded from its JSON) matches the
// sentinel of its code, through any wrapping, and no other.
func TestARefusalFromTheWireMatchesItsSentinel(t *testing.T) {
	sentinel := errcode.New(errcode.WrongCode, "the pairing code did not match")
	var remote errcode.Error
	if err := json.Unmarshal([]byte(`{"code":"wrong_code","message":"words from the other side"}`), &remote); err != nil {
		t.Fatal(err)
	}
	wrapped := fmt.Errorf("pairing: %w", &remote)
	if !errors.Is(wrapped, sentinel) {
		t.Error("a wrong_code from the wire does not match the wrong_code sentinel")
	}
	if errors.Is(wrapped, errcode.New(errcode.Expired, "")) {
		t.Error("a wrong_code matched another code")
	}
	if c, e := errcode.Of(wrapped); c != errcode.WrongCode || e.Message != "words from the other side" {
		t.Errorf("Of: %s %v", c, e)
	}
	if c, e := errcode.Of(errors.New("plain")); c != "" || e != nil {
		t.Errorf("a plain error has code %q", c)
	}
}

// Wrap keeps its cause for errors.Is and says it; the cause never goes on
// the wire.
func TestWrapKeepsTheCauseOffTheWire(t *testing.T) {
	err := errcode.Wrap(errcode.Internal, fs.ErrPermission, "could not save")
	if !errors.Is(err, fs.ErrPermission) || err.Error() != "could not save: permission denied" {
		t.Errorf("%v", err)
	}
	b, err2 := json.Marshal(err)
	if err2 != nil || string(b) != `{"code":"internal","message":"could not save: permission denied"}` {
		t.Errorf("on the wire: %s %v", b, err2)
	}
}
