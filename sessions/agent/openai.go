package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// The openai worker reads these from the box's secrets ("lowkey secrets
// set NAME"): the key, and optionally another endpoint and model.
const (
	SecretKey     = "OPENAI_API_KEY"
	SecretBaseURL = "OPENAI_BASE_URL"
	SecretModel   = "OPENAI_MODEL"
)

// maxSteps bounds the tool calls of one turn.
const maxSteps = 24

type chatMessage struct {
	Role       string     `json:"role"`
	Content    *string    `json:"content"`
	ToolCalls  []toolCall `json:"tool_calls,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
}

type toolCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

type chatTool struct {
	Type     string `json:"type"`
	Function struct {
		Name        string `json:"name"`
		Description string `json:"description,omitempty"`
		Parameters  any    `json:"parameters"`
	} `json:"function"`
}

// toolName maps an MCP tool name to one OpenAI accepts (no dots).
func toolName(mcpName string) string { return strings.ReplaceAll(mcpName, ".", "__") }

func str(s string) *string { return &s }

func (w *worker) openai(ctx context.Context) (string, error) {
	key := w.creds.Secrets[SecretKey]
	base := strings.TrimRight(w.creds.Secrets[SecretBaseURL], "/")
	if base == "" {
		base = "https://api.openai.com/v1"
	}
	model := w.creds.Secrets[SecretModel]
	if model == "" {
		model = "gpt-4o-mini"
	}
	if key == "" && strings.Contains(base, "api.openai.com") {
		return "", fmt.Errorf("no %s on the box: run \"lowkey secrets set %s\"", SecretKey, SecretKey)
	}
	list, err := w.mcp.ListTools(ctx, &mcp.ListToolsParams{})
	if err != nil {
		return "", fmt.Errorf("listing the box's tools: %w", err)
	}
	var tools []chatTool
	names := map[string]string{}
	for _, t := range list.Tools {
		var ct chatTool
		ct.Type = "function"
		ct.Function.Name, ct.Function.Description, ct.Function.Parameters = toolName(t.Name), t.Description, t.InputSchema
		tools = append(tools, ct)
		names[ct.Function.Name] = t.Name
	}
	msgs := []chatMessage{{Role: "system", Content: str(w.in.instructions())}}
	for _, h := range w.in.History {
		role := h.Role
		if role != "assistant" {
			role = "user"
		}
		msgs = append(msgs, chatMessage{Role: role, Content: str(h.Text)})
	}
	msgs = append(msgs, chatMessage{Role: "user", Content: str(w.in.Message)})
	client := &http.Client{Timeout: 5 * time.Minute}
	for step := 0; step < maxSteps; step++ {
		body, _ := json.Marshal(map[string]any{"model": model, "messages": msgs, "tools": tools})
		req, _ := http.NewRequestWithContext(ctx, "POST", base+"/chat/completions", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := client.Do(req)
		if err != nil {
			// The error names the endpoint, never the key.
			return "", fmt.Errorf("the model endpoint %s: %w", base, err)
		}
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return "", fmt.Errorf("the model endpoint %s answered %s: %.300s", base, resp.Status, raw)
		}
		var out struct {
			Choices []struct {
				Message chatMessage `json:"message"`
			} `json:"choices"`
		}
		if err := json.Unmarshal(raw, &out); err != nil || len(out.Choices) == 0 {
			return "", fmt.Errorf("the model endpoint %s sent no choices: %.300s", base, raw)
		}
		m := out.Choices[0].Message
		msgs = append(msgs, m)
		if len(m.ToolCalls) == 0 {
			if m.Content == nil {
				return "", nil
			}
			return *m.Content, nil
		}
		for _, tc := range m.ToolCalls {
			name := names[tc.Function.Name]
			// The tool's name only: its arguments can hold what the person
			// typed (a password for a form) and are the box's to record.
			w.say("→ " + name)
			var args map[string]any
			_ = json.Unmarshal([]byte(tc.Function.Arguments), &args)
			result, err := w.call(ctx, name, args)
			if err != nil {
				result = "error: " + err.Error()
			}
			if len(result) > 20000 {
				result = result[:20000] + "…(cut)"
			}
			msgs = append(msgs, chatMessage{Role: "tool", ToolCallID: tc.ID, Content: str(result)})
		}
	}
	return "", fmt.Errorf("stopped after %d tool calls without an answer", maxSteps)
}
