package modeltest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// Chat is a scripted OpenAI chat completions API (streaming), what
// opencode's OpenAI-compatible provider speaks.
type Chat struct {
	*Script
	oneChunk bool // under Script.mu
}

// OneChunk makes each answer one chunk with its finish reason, as vLLM
// sends tool calls; else the delta comes, then the finish.
func (c *Chat) OneChunk() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.oneChunk = true
}

// NewChat starts the server; Close stops it.
func NewChat(steps []Step) *Chat {
	c := &Chat{Script: &Script{steps: steps}}
	c.start(c.serve)
	return c
}

type chatRequest struct {
	Model    string `json:"model"`
	Stream   bool   `json:"stream"`
	Messages []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
	Tools []struct {
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	} `json:"tools"`
}

func (c *Chat) serve(w http.ResponseWriter, r *http.Request) {
	if !strings.HasSuffix(r.URL.Path, "/chat/completions") {
		http.NotFound(w, r)
		return
	}
	var req chatRequest
	if !readJSON(w, r, &req) {
		return
	}
	rec := Request{Stream: req.Stream}
	for _, t := range req.Tools {
		rec.Tools = append(rec.Tools, t.Function.Name)
	}
	for _, m := range req.Messages {
		if m.Role == "system" || m.Role == "developer" {
			rec.System += text(m.Content) + "\n"
			continue
		}
		rec.Messages = append(rec.Messages, text(m.Content))
		rec.Images += strings.Count(string(m.Content), `"type":"image_url"`)
	}
	step, results, main := c.take(rec)
	var delta map[string]any
	finish := "stop"
	switch {
	case !main:
		delta = map[string]any{"role": "assistant", "content": "ok"}
	case step.Tool != "":
		args, err := json.Marshal(step.Args)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		delta = map[string]any{"role": "assistant", "tool_calls": []any{map[string]any{"index": 0, "id": fmt.Sprintf("call_%d", c.calls()),
			"type": "function", "function": map[string]any{"name": boxTool(rec.Tools, step.Tool), "arguments": string(args)}}}}
		finish = "tool_calls"
	default:
		delta = map[string]any{"role": "assistant", "content": step.Reply(results)}
	}
	usage := map[string]any{"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
	if !req.Stream {
		msg := map[string]any{"role": "assistant", "content": delta["content"]}
		if tc, ok := delta["tool_calls"]; ok {
			msg["tool_calls"] = tc
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"id": "chatcmpl-1", "object": "chat.completion", "model": req.Model,
			"choices": []any{map[string]any{"index": 0, "message": msg, "finish_reason": finish}}, "usage": usage})
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	chunks := []map[string]any{
		{"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": req.Model, "choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": nil}}},
		{"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": req.Model, "choices": []any{map[string]any{"index": 0, "delta": map[string]any{}, "finish_reason": finish}}, "usage": usage},
	}
	c.mu.Lock()
	one := c.oneChunk
	c.mu.Unlock()
	if one {
		chunks = []map[string]any{{"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": req.Model,
			"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}}, "usage": usage}}
	}
	for _, chunk := range chunks {
		if sendEvent(w, "", chunk) != nil {
			return
		}
	}
	_, _ = fmt.Fprint(w, "data: [DONE]\n\n")
}
