package cgroup

// UseShellGate makes v1 starts use the shell gate, as on a system that
// forbids tracing.
func UseShellGate(t interface{ Cleanup(func()) }) {
	canTrace()
	was := traceOK
	traceOK = false
	t.Cleanup(func() { traceOK = was })
}
