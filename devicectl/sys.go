package devicectl

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"

	"github.com/lowkeyhq/lowkey/errcode"
)

// MaxEcho bounds sys.echo on the computer, whatever the box asks: it is a
// benchmark of the link (5 MiB is its biggest).
const MaxEcho = 8 << 20

// Availability says whether a computer can offer a capability, and why not.
type Availability struct {
	Available bool   `json:"available"`
	Reason    string `json:"reason,omitempty"`
	Detail    string `json:"detail,omitempty"`
}

// Info is the answer to sys.info.
type Info struct {
	Hostname     string                      `json:"hostname"`
	OS           string                      `json:"os"`
	Arch         string                      `json:"arch"`
	Version      string                      `json:"companion_version"`
	Capabilities map[Capability]Availability `json:"capabilities"`
}

// EchoResult is the description of sys.echo's answer; the bytes travel as
// the result's blob (a repeating 0..255 pattern), size- and hash-checked
// by the link like every result.
type EchoResult struct {
	Bytes int `json:"bytes"`
}

// EchoBytes is sys.echo's answer of n bytes: a fresh buffer holding a
// repeating 0..255 pattern.
func EchoBytes(n int) []byte {
	blob := make([]byte, n)
	for i := range min(len(blob), 256) {
		blob[i] = byte(i)
	}
	for k := 256; k < len(blob); k *= 2 {
		copy(blob[k:], blob[:k])
	}
	return blob
}

// SysHandler serves the sys.* actions.
func SysHandler(version string, probe func() map[Capability]Availability) Handler {
	return func(ctx context.Context, req *Request) (*Result, error) {
		switch req.Action {
		case "sys.info":
			host, _ := os.Hostname()
			b, err := json.Marshal(Info{Hostname: host, OS: runtime.GOOS, Arch: runtime.GOARCH, Version: version, Capabilities: probe()})
			return &Result{JSON: b}, err
		case "sys.echo":
			var a struct {
				Bytes int `json:"bytes"`
			}
			if len(req.Args) > 0 {
				if err := json.Unmarshal(req.Args, &a); err != nil {
					return nil, &errcode.Error{Code: errcode.BadArgs, Message: "sys.echo takes {\"bytes\": N}"}
				}
			}
			if a.Bytes < 0 || a.Bytes > MaxEcho {
				return nil, &errcode.Error{Code: errcode.BadArgs, Message: fmt.Sprintf("sys.echo: bytes must be between 0 and %d", MaxEcho)}
			}
			b, _ := json.Marshal(EchoResult{Bytes: a.Bytes})
			return &Result{JSON: b, Blob: EchoBytes(a.Bytes)}, nil
		}
		return nil, &errcode.Error{Code: errcode.UnknownAction, Message: "this computer does not know the action " + req.Action}
	}
}
