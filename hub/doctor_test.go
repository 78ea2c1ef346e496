package hub_test

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/lowkeyhq/lowkey/hub"
	"github.com/lowkeyhq/lowkey/sessions/sandbox"
)

// What the doctor says for the two states this machine cannot be put in
// by a test (a kernel with no namespaces for agents, an unsynchronized
// clock when it is synchronized): the kernel's answers given to it.
func TestDoctorOnAClockAndABoundaryItCannotMake(t *testing.T) {
	for state, want := range map[int]string{unix.TIME_ERROR: hub.CheckWarn, unix.TIME_OK: hub.CheckOK} {
		c := hub.CheckClock(func() (int, error) { return state, nil })
		if c.Status != want || c.Name != "clock" || (want == hub.CheckWarn && (!strings.Contains(c.Detail, "not synchronized") || c.Fix == "")) {
			t.Errorf("clock state %d: %+v", state, c)
		}
	}
	missing := "agents run as the hub's own user and can reach its data directory, process and tokens (unprivileged user namespaces are unavailable here: operation not permitted)"
	c := hub.CheckSeparation(sandbox.ModeNone, "box", missing)
	if c.Status != hub.CheckFail || !strings.Contains(c.Detail, "not fully separated") || !strings.Contains(c.Detail, missing) || c.Fix == "" {
		t.Errorf("no separation: %+v", c)
	}
}
