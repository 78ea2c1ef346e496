package sandbox

import (
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// AgentUserCaps are the capabilities a hub that is not root needs to run
// its workers as the agent account (what the package's systemd unit
// gives the lowkey account): switching to it (setuid, setgid), the
// workers' namespaces and mounts (sys_admin), handing them their
// directories (chown), stopping them (kill), and reading and writing the
// files of theirs the hub serves and keeps (dac_override, fowner).
var AgentUserCaps = []uintptr{unix.CAP_SETUID, unix.CAP_SETGID, unix.CAP_SYS_ADMIN, unix.CAP_CHOWN, unix.CAP_KILL, unix.CAP_DAC_OVERRIDE, unix.CAP_FOWNER}

var capNames = map[uintptr]string{unix.CAP_SETUID: "setuid", unix.CAP_SETGID: "setgid", unix.CAP_SYS_ADMIN: "sys_admin", unix.CAP_CHOWN: "chown",
	unix.CAP_KILL: "kill", unix.CAP_DAC_OVERRIDE: "dac_override", unix.CAP_FOWNER: "fowner"}

// MaySwitchUser says whether this process may run workers as another
// account: it is root, or holds every one of AgentUserCaps (and then
// they are ambient, so the worker's init has them too). A process with
// some of them but not all is refused, naming what it lacks: it would
// run agents half apart.
func MaySwitchUser() (bool, error) {
	if os.Geteuid() == 0 {
		return true, nil
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false, fmt.Errorf("reading the hub's capabilities: %w", err)
	}
	var missing []string
	for _, c := range AgentUserCaps {
		effective := data[c/32].Effective&(1<<(c%32)) != 0
		ambient, err := unix.PrctlRetInt(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_IS_SET, c, 0, 0)
		if !effective || err != nil || ambient != 1 {
			missing = append(missing, "cap_"+capNames[c])
		}
	}
	switch len(missing) {
	case len(AgentUserCaps):
		return false, nil
	case 0:
		return true, nil
	}
	return false, fmt.Errorf("the hub's account holds some of the capabilities that running agents as their own account needs, not all: it lacks %s (as ambient capabilities: AmbientCapabilities= in its unit)", strings.Join(missing, ", "))
}
