// Package agent holds the agent workers the box runs for a turn: the
// built-in one (no model: simple commands) and one for any
// OpenAI-compatible endpoint with tool calls. Both are processes started
// by the session runtime inside the session's memory budget; they read
// the turn from stdin, their credentials from the owner-only file named
// in LOWKEY_CREDENTIALS_FILE (deleted once read), act through the box's
// MCP server, and write the reply to stdout.
package agent
