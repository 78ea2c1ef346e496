package agent

import (
	"bufio"
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
	Role    string  `json:"role"`
	Content *string `json:"content"`
	// Parts, when set, are the content instead: text and images (what a
	// screenshot becomes for a model that sees).
	Parts      []chatPart `json:"-"`
	ToolCalls  []toolCall `json:"tool_calls,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
}

type chatPart struct {
	Type     string `json:"type"`
	Text     string `json:"text,omitempty"`
	ImageURL *struct {
		URL string `json:"url"`
	} `json:"image_url,omitempty"`
}

// MarshalJSON writes Parts as the content when there are parts.
func (m chatMessage) MarshalJSON() ([]byte, error) {
	type plain chatMessage
	if len(m.Parts) == 0 {
		return json.Marshal(plain(m))
	}
	return json.Marshal(struct {
		plain
		Content []chatPart `json:"content"`
	}{plain(m), m.Parts})
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
		// No tool_choice: Ollama's and vLLM's servers refuse or ignore it.
		body, err := json.Marshal(map[string]any{"model": model, "messages": msgs, "tools": tools, "stream": true})
		if err != nil {
			return "", err
		}
		req, err := http.NewRequestWithContext(ctx, "POST", base+"/chat/completions", bytes.NewReader(body))
		if err != nil {
			return "", err
		}
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := client.Do(req)
		if err != nil {
			// The error names the endpoint, never the key.
			return "", fmt.Errorf("the model endpoint %s: %w", base, err)
		}
		m, err := readChat(resp)
		resp.Body.Close()
		if err != nil {
			return "", fmt.Errorf("the model endpoint %s: %w", base, err)
		}
		msgs = append(msgs, m)
		if len(m.ToolCalls) == 0 {
			if m.Content == nil {
				return "", nil
			}
			return *m.Content, nil
		}
		var seen []chatPart
		for _, tc := range m.ToolCalls {
			name := names[tc.Function.Name]
			// The tool's name only, and not in the reply: its arguments can
			// hold what the person typed (a password for a form) and are
			// the box's to record.
			w.progress("→ " + name)
			var args map[string]any
			if tc.Function.Arguments != "" {
				if err := json.Unmarshal([]byte(tc.Function.Arguments), &args); err != nil {
					msgs = append(msgs, chatMessage{Role: "tool", ToolCallID: tc.ID, Content: str("error: the arguments are not JSON: " + err.Error())})
					continue
				}
			}
			result, images, err := w.callSeeing(ctx, name, args)
			if err != nil {
				result = "error: " + err.Error()
			}
			if len(result) > 20000 {
				result = result[:20000] + "…(cut)"
			}
			msgs = append(msgs, chatMessage{Role: "tool", ToolCallID: tc.ID, Content: str(result)})
			seen = append(seen, images...)
		}
		if len(seen) > 0 {
			// A tool message carries text only: what the tools showed comes
			// as the person's, for a model that sees.
			msgs = append(msgs, chatMessage{Role: "user", Parts: append([]chatPart{{Type: "text", Text: "What the tools showed:"}}, seen...)})
		}
	}
	return "", fmt.Errorf("stopped after %d tool calls without an answer", maxSteps)
}

// readChat reads one answer of a chat completions endpoint: a stream of
// chunks (content deltas; tool calls in pieces by index, or whole in the
// last chunk, as vLLM sends them), or, from a server that does not stream,
// one message.
func readChat(resp *http.Response) (chatMessage, error) {
	if resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return chatMessage{}, fmt.Errorf("answered %s: %.300s", resp.Status, raw)
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
		if err != nil {
			return chatMessage{}, err
		}
		var out struct {
			Choices []struct {
				Message chatMessage `json:"message"`
			} `json:"choices"`
		}
		if err := json.Unmarshal(raw, &out); err != nil || len(out.Choices) == 0 {
			return chatMessage{}, fmt.Errorf("sent no choices: %.300s", raw)
		}
		return out.Choices[0].Message, nil
	}
	m := chatMessage{Role: "assistant"}
	var content strings.Builder
	got := false
	calls := map[int]*toolCall{}
	order := []int{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data:")
		data = strings.TrimSpace(data)
		if !ok || data == "" {
			continue
		}
		if data == "[DONE]" {
			break
		}
		var chunk struct {
			Choices []struct {
				Delta struct {
					Content   *string `json:"content"`
					ToolCalls []struct {
						Index    int    `json:"index"`
						ID       string `json:"id"`
						Function struct {
							Name      string `json:"name"`
							Arguments string `json:"arguments"`
						} `json:"function"`
					} `json:"tool_calls"`
				} `json:"delta"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(data), &chunk); err != nil {
			return chatMessage{}, fmt.Errorf("sent a chunk that is not JSON: %.200s", data)
		}
		for _, c := range chunk.Choices {
			if c.Delta.Content != nil {
				content.WriteString(*c.Delta.Content)
				got = true
			}
			for _, d := range c.Delta.ToolCalls {
				tc, ok := calls[d.Index]
				if !ok {
					tc = &toolCall{Type: "function"}
					calls[d.Index] = tc
					order = append(order, d.Index)
				}
				if d.ID != "" {
					tc.ID = d.ID
				}
				tc.Function.Name += d.Function.Name
				tc.Function.Arguments += d.Function.Arguments
			}
		}
	}
	if err := sc.Err(); err != nil {
		return chatMessage{}, err
	}
	if got {
		m.Content = str(content.String())
	}
	for _, i := range order {
		m.ToolCalls = append(m.ToolCalls, *calls[i])
	}
	return m, nil
}
