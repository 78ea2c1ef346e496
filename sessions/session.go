package sessions

import (
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	agentpkg "github.com/lowkeyhq/lowkey/sessions/agent"
)

// Session is one conversation.
type Session struct {
	ID               string    `json:"id"`
	Title            string    `json:"title"`
	Agent            string    `json:"agent"`
	MemoryLimitBytes int64     `json:"memory_limit_bytes"`
	CreatedAt        time.Time `json:"created_at"`
}

// NewRequest is what a client may set on a new session.
type NewRequest struct {
	Title            string `json:"title"`
	Agent            string `json:"agent"`
	MemoryLimitBytes int64  `json:"memory_limit_bytes"`
}

// DefaultTitle is a conversation's title until its first message names it.
const DefaultTitle = "New conversation"

// TitleFrom is a title made from a first message: its first line, at most
// 60 characters.
func TitleFrom(text string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(text), "\n")
	line = strings.TrimSpace(line)
	if r := []rune(line); len(r) > 60 {
		line = strings.TrimSpace(string(r[:60])) + "…"
	}
	if line == "" {
		return DefaultTitle
	}
	return line
}

// MinMemory is the smallest budget a session may ask for.
const MinMemory = 16 << 20

// ErrBadRequest wraps every validation failure.
var ErrBadRequest = errors.New("bad session request")

// New validates a request and makes the session record.
func New(req NewRequest, defaultMemory int64) (*Session, error) {
	if !utf8.ValidString(req.Title) || len(req.Title) > 200 {
		return nil, fmt.Errorf("%w: title must be text of at most 200 bytes", ErrBadRequest)
	}
	agent := req.Agent
	if agent == "" {
		agent = "builtin"
	}
	preset := agentpkg.Presets[agent]
	if agent != "builtin" && agent != "openai" && preset == nil && !strings.HasPrefix(agent, "exec:") {
		return nil, fmt.Errorf("%w: agent %q: use builtin, openai, claude or exec:COMMAND", ErrBadRequest, agent)
	}
	mem := req.MemoryLimitBytes
	if mem == 0 {
		mem = defaultMemory
		// A CLI gets the budget it needs to run at all.
		if preset != nil {
			mem = max(mem, preset.Memory)
		}
	}
	if mem < MinMemory {
		return nil, fmt.Errorf("%w: memory_limit_bytes must be at least %d", ErrBadRequest, MinMemory)
	}
	title := req.Title
	if title == "" {
		title = DefaultTitle
	}
	return &Session{ID: "s-" + randomID(), Title: title, Agent: agent, MemoryLimitBytes: mem, CreatedAt: time.Now().UTC()}, nil
}

// randomID names a session, turn, job or question: 16 base32 digits
// (80 bits) from the system's random source, in lower case.
func randomID() string { return strings.ToLower(rand.Text()[:16]) }
