package cgroup

// UseShellGate makes v1 starts use the shell gate, as on a system that
// forbids tracing.
func UseShellGate(t interface{ Cleanup(func()) }) {
	canTrace()
	was := traceOK
	traceOK = false
	t.Cleanup(func() { traceOK = was })
}

// V2At makes groups on the unified tree mounted at mount, as on a pure
// cgroup v2 machine, whatever controllers that tree offers.
func V2At(t interface{ Cleanup(func()) }, mount, root string) *Manager {
	was := v2Mount
	v2Mount = mount
	t.Cleanup(func() { v2Mount = was })
	return &Manager{root: root, mode: "v2"}
}
