// Package sessions owns conversations with agents: their records and
// events (numbered, stored before anyone sees them), turns and jobs run in
// the session's memory budget (sessions/cgroup), the three stop levels,
// stall detection, confirmations, the credential handoff, the agent
// runtimes (sessions/agent) and the MCP server agents act through.
//
// It must not know about WebRTC: device actions reach it as calls through
// an interface the hub provides.
package sessions
