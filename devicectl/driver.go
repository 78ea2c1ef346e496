package devicectl

import (
	"bytes"
	"encoding/json"

	"github.com/lowkeyhq/lowkey/errcode"
)

// Helpers the drivers (browser, screen) share.

// DecodeArgs reads an action's arguments strictly: an unknown field is a
// bad_args error, and no arguments are {}.
func DecodeArgs(args json.RawMessage, v any) error {
	if len(args) == 0 {
		args = json.RawMessage("{}")
	}
	d := json.NewDecoder(bytes.NewReader(args))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return errcode.Wrap(errcode.BadArgs, err, "arguments")
	}
	return nil
}

// JSONResult is a result with v as its JSON and no blob.
func JSONResult(v any) (*Result, error) {
	b, err := json.Marshal(v)
	return &Result{JSON: b}, err
}
