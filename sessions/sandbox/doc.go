// Package sandbox keeps a box's workers (agent turns and jobs) apart from
// the hub itself. Workers keep a real shell and the box's files, keys and
// tools; they get nothing of the hub: not its data directory (store,
// identity, admin socket, policy), not its process (no signal, no trace,
// no /proc entry), not another worker's credentials.
//
// When the hub runs as root, or as an account holding AgentUserCaps (the
// package's unit gives them to lowkey), workers run as the box's agent account
// (lowkey-agent by default, made when missing), each in mount and PID
// namespaces of its own where the data directory is covered over and
// /proc shows only the worker's own processes. When the hub runs as an
// ordinary user, the same namespaces come from an unprivileged user
// namespace. Where neither can be had, Boundary says what is missing.
//
// It must not know about sessions, cgroups or HTTP: the caller starts the
// command it builds, in whatever group it likes.
package sandbox
