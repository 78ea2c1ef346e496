package agent

import (
	"encoding/json"
	"strconv"
)

// claude is Claude Code in print mode with its stream of JSON events.
var claude = &Preset{
	Name: "claude", Label: "Claude Code", Bin: "claude", Package: "@anthropic-ai/claude-code",
	Keys:     []string{"ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"},
	Pass:     []string{"ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "CLAUDE_CODE_OAUTH_TOKEN"},
	Memory:   1 << 30,
	Versions: "2.1",
	args: func(r *presetRun) ([]string, error) {
		cfg, err := r.writePrivate("mcp.json", map[string]any{"mcpServers": map[string]any{
			"lowkey": map[string]any{"type": "http", "url": r.mcpURL, "headers": map[string]string{"Authorization": "Bearer " + r.creds.MCPToken}},
		}})
		if err != nil {
			return nil, err
		}
		args := []string{"-p", r.prompt(), "--output-format", "stream-json", "--verbose",
			"--mcp-config", cfg, "--strict-mcp-config", "--allowedTools", "mcp__lowkey",
			"--append-system-prompt", r.in.instructions()}
		if r.resume {
			// Its conversation in this session's directory goes on.
			args = append(args, "--continue")
		}
		return args, nil
	},
	env: func(r *presetRun) []string {
		return []string{
			"MCP_TOOL_TIMEOUT=" + strconv.FormatInt(toolTimeout.Milliseconds(), 10),
			"MCP_TIMEOUT=30000",
			// The box's few tools in plain sight, not behind a search.
			"ENABLE_TOOL_SEARCH=false",
			"DISABLE_AUTOUPDATER=1", "DISABLE_TELEMETRY=1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1",
		}
	},
	parse: parseClaude,
}

// claudeEvent is one line of Claude Code's stream-json output.
type claudeEvent struct {
	Type       string `json:"type"`
	Subtype    string `json:"subtype"`
	MCPServers []struct {
		Name   string `json:"name"`
		Status string `json:"status"`
	} `json:"mcp_servers"`
	Message struct {
		Content []struct {
			Type      string          `json:"type"`
			Text      string          `json:"text"`
			ID        string          `json:"id"`
			Name      string          `json:"name"`
			Input     json.RawMessage `json:"input"`
			ToolUseID string          `json:"tool_use_id"`
			IsError   bool            `json:"is_error"`
			Content   json.RawMessage `json:"content"`
		} `json:"content"`
	} `json:"message"`
	IsError bool   `json:"is_error"`
	Result  string `json:"result"`
}

func parseClaude(r *presetRun, line []byte) {
	var e claudeEvent
	if json.Unmarshal(line, &e) != nil {
		return
	}
	switch e.Type {
	case "system":
		if e.Subtype != "init" {
			return
		}
		for _, s := range e.MCPServers {
			if s.Name != "lowkey" {
				continue
			}
			if s.Status != "connected" {
				r.fail("the box's tools did not connect to claude (" + s.Status + "), so the turn stops here")
				return
			}
			r.mu.Lock()
			r.connected = true
			r.mu.Unlock()
		}
	case "assistant":
		for _, c := range e.Message.Content {
			switch c.Type {
			case "text":
				r.said(c.Text)
			case "tool_use":
				r.calls(boxTool(c.Name), c.Input)
			}
		}
	case "user":
		for _, c := range e.Message.Content {
			if c.Type != "tool_result" {
				continue
			}
			if c.IsError {
				r.show("← error: %s", resultText(c.Content))
			} else {
				r.show("← done")
			}
		}
	case "result":
		r.mu.Lock()
		defer r.mu.Unlock()
		if e.IsError || e.Subtype != "success" {
			if r.failed == "" {
				r.failed = "claude ended with " + e.Subtype + ": " + e.Result
			}
			return
		}
		r.reply = e.Result
	}
}

// resultText is a tool result's text, whether a string or content blocks.
func resultText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var blocks []struct {
		Text string `json:"text"`
	}
	if json.Unmarshal(raw, &blocks) == nil {
		out := ""
		for _, b := range blocks {
			out += b.Text
		}
		return out
	}
	return string(raw)
}
