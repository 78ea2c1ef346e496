package devicectl

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/lowkeyhq/lowkey/errcode"
)

// The computer bounds sys.echo itself, whatever a box asks: the largest
// answer is given, one byte more is refused.
func TestEchoIsBoundedOnTheComputer(t *testing.T) {
	h := SysHandler("test", func() map[Capability]Availability { return nil })
	res, err := h(context.Background(), &Request{Action: "sys.echo", Args: []byte(fmt.Sprintf(`{"bytes":%d}`, MaxEcho))})
	if err != nil || len(res.Blob) != MaxEcho {
		t.Fatalf("an echo of the bound: %v", err)
	}
	_, err = h(context.Background(), &Request{Action: "sys.echo", Args: []byte(fmt.Sprintf(`{"bytes":%d}`, MaxEcho+1))})
	var ae *errcode.Error
	if !errors.As(err, &ae) || ae.Code != "bad_args" {
		t.Fatalf("an echo over the bound: %v", err)
	}
}
