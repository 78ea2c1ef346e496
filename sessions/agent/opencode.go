package agent

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
)

// opencode is opencode's run command with its JSON events.
var opencode = &Preset{
	Name: "opencode", Label: "opencode", Bin: "opencode", Package: "opencode-ai",
	Keys:     []string{"OPENAI_API_KEY", "ANTHROPIC_API_KEY"},
	Pass:     []string{"OPENAI_API_KEY", "ANTHROPIC_API_KEY"},
	Memory:   1 << 30,
	Versions: "1.18",
	// Its events say nothing of the MCP servers: the box checks its own
	// answers the turn's token before the CLI starts.
	precheck: true,
	args: func(r *presetRun) ([]string, error) {
		instructions := filepath.Join(r.private, "instructions.md")
		if err := os.WriteFile(instructions, []byte(r.in.instructions()+"\n"), 0o600); err != nil {
			return nil, err
		}
		cfg := map[string]any{
			"$schema":      "https://opencode.ai/config.json",
			"autoupdate":   false,
			"share":        "disabled",
			"instructions": []string{instructions},
			"mcp": map[string]any{"lowkey": map[string]any{
				"type": "remote", "url": r.mcpURL, "enabled": true, "timeout": toolTimeout.Milliseconds(),
				"headers": map[string]string{"Authorization": "Bearer " + r.creds.MCPToken},
			}},
		}
		if base := r.creds.Secrets["OPENAI_BASE_URL"]; base != "" {
			// An OpenAI-compatible provider of the box's own.
			model := r.creds.Secrets["OPENAI_MODEL"]
			if model == "" {
				model = "gpt-4o-mini"
			}
			cfg["provider"] = map[string]any{"box": map[string]any{"npm": "@ai-sdk/openai-compatible", "name": "the box's provider",
				"options": map[string]any{"baseURL": base, "apiKey": "{env:OPENAI_API_KEY}"}, "models": map[string]any{model: map[string]any{"name": model}}}}
			cfg["model"] = "box/" + model
		}
		if m := r.creds.Secrets["OPENCODE_MODEL"]; m != "" {
			cfg["model"] = m
		}
		path, err := r.writePrivate("opencode.json", cfg)
		if err != nil {
			return nil, err
		}
		r.config = path
		args := []string{"run", "--format", "json"}
		// Its conversation goes on by its own session ID, kept with the
		// box's session.
		if id, err := os.ReadFile(r.opencodeSession()); err == nil && r.resume {
			args = append(args, "--session", strings.TrimSpace(string(id)))
		}
		return append(args, r.prompt()), nil
	},
	env: func(r *presetRun) []string {
		return []string{"OPENCODE_CONFIG=" + r.config, "OPENCODE_DISABLE_AUTOUPDATE=1"}
	},
	parse: parseOpencode,
}

// opencodeSession is where the session's opencode session ID is kept.
func (r *presetRun) opencodeSession() string {
	return filepath.Join(r.home, ".lowkey", "sessions", r.in.Session, "opencode.session")
}

// opencodeEvent is one line of "opencode run --format json".
type opencodeEvent struct {
	Type      string `json:"type"`
	SessionID string `json:"sessionID"`
	Part      struct {
		Type  string `json:"type"`
		Text  string `json:"text"`
		Tool  string `json:"tool"`
		State struct {
			Status string          `json:"status"`
			Input  json.RawMessage `json:"input"`
			Error  string          `json:"error"`
		} `json:"state"`
	} `json:"part"`
	Error json.RawMessage `json:"error"`
}

func parseOpencode(r *presetRun, line []byte) {
	var e opencodeEvent
	if json.Unmarshal(line, &e) != nil {
		return
	}
	if e.SessionID != "" && !r.sessionSaved {
		r.sessionSaved = true
		if err := os.WriteFile(r.opencodeSession(), []byte(e.SessionID+"\n"), 0o600); err != nil {
			r.show("the opencode session could not be kept, so the next turn starts afresh: %v", err)
		}
	}
	switch {
	case e.Type == "tool_use" || e.Part.Type == "tool":
		r.calls(boxTool(e.Part.Tool), e.Part.State.Input)
		if e.Part.State.Status == "error" {
			r.show("← error: %s", e.Part.State.Error)
		} else {
			r.show("← done")
		}
	case e.Type == "text":
		r.said(e.Part.Text)
	case e.Type == "error":
		r.fail("opencode: " + string(e.Error))
	}
}
