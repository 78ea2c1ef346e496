// Package modeltest is a scripted model provider for tests: a server on
// loopback that speaks the API an agent CLI uses (Anthropic Messages with
// SSE) and answers each step of a script, so a real CLI can run a real
// turn against the box with no model anywhere. It records what the CLI
// sent (system prompt, messages, tools) for the test to check.
package modeltest
