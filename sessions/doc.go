// Package sessions owns conversations with agents: their records and, as
// the box grows, turns, jobs, memory budgets, stop levels, confirmations,
// credential handoff and agent runtimes.
//
// It must not know about WebRTC: device actions reach it as calls through
// an interface the hub provides.
package sessions
