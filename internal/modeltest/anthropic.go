package modeltest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// Anthropic is a scripted Anthropic Messages API.
type Anthropic struct {
	*Script
}

// NewAnthropic starts the server; Close stops it.
func NewAnthropic(steps []Step) *Anthropic {
	a := &Anthropic{Script: &Script{steps: steps}}
	a.start(a.serve)
	return a
}

type anthropicRequest struct {
	Stream   bool            `json:"stream"`
	Model    string          `json:"model"`
	System   json.RawMessage `json:"system"`
	Messages []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
	Tools []struct {
		Name string `json:"name"`
	} `json:"tools"`
}

// text is the words of a content field: a string, or blocks of text and
// tool results.
func text(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var blocks []struct {
		Type    string          `json:"type"`
		Text    string          `json:"text"`
		Content json.RawMessage `json:"content"`
	}
	if json.Unmarshal(raw, &blocks) != nil {
		return string(raw)
	}
	var b strings.Builder
	for _, bl := range blocks {
		b.WriteString(bl.Text)
		if bl.Type == "tool_result" {
			b.WriteString(text(bl.Content))
		}
	}
	return b.String()
}

func (a *Anthropic) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/messages" {
		http.NotFound(w, r)
		return
	}
	var req anthropicRequest
	if !readJSON(w, r, &req) {
		return
	}
	var tools []string
	for _, t := range req.Tools {
		tools = append(tools, t.Name)
	}
	rec := Request{System: text(req.System), Tools: tools}
	for _, m := range req.Messages {
		rec.Messages = append(rec.Messages, text(m.Content))
	}
	step, results, main := a.take(rec)
	switch {
	case !main:
		// A side request of the CLI (a title, a summary): a word will do.
		a.answer(w, req, "", nil, "ok")
	case step.Tool != "":
		a.answer(w, req, boxTool(tools, step.Tool), step.Args, step.Say)
	default:
		a.answer(w, req, "", nil, step.Reply(results))
	}
}

// answer streams one message: a tool call, or text.
func (a *Anthropic) answer(w http.ResponseWriter, req anthropicRequest, tool string, args map[string]any, say string) {
	id := fmt.Sprintf("toolu_%d", a.calls())
	block := map[string]any{"type": "text", "text": ""}
	delta := map[string]any{"type": "text_delta", "text": say}
	stop := "end_turn"
	if tool != "" {
		in, err := json.Marshal(args)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		block = map[string]any{"type": "tool_use", "id": id, "name": tool, "input": map[string]any{}}
		delta = map[string]any{"type": "input_json_delta", "partial_json": string(in)}
		stop = "tool_use"
	}
	usage := map[string]any{"input_tokens": 10, "output_tokens": 5}
	if !req.Stream {
		content := map[string]any{"type": "text", "text": say}
		if tool != "" {
			content = map[string]any{"type": "tool_use", "id": id, "name": tool, "input": args}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"id": "msg_" + id, "type": "message", "role": "assistant", "model": req.Model,
			"content": []any{content}, "stop_reason": stop, "stop_sequence": nil, "usage": usage})
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	type event struct {
		name string
		data map[string]any
	}
	events := []event{{"message_start", map[string]any{"type": "message_start", "message": map[string]any{"id": "msg_" + id, "type": "message", "role": "assistant",
		"model": req.Model, "content": []any{}, "stop_reason": nil, "stop_sequence": nil, "usage": usage}}}}
	index := 0
	if tool != "" && say != "" {
		// Words before the call, in a block of their own.
		events = append(events,
			event{"content_block_start", map[string]any{"type": "content_block_start", "index": 0, "content_block": map[string]any{"type": "text", "text": ""}}},
			event{"content_block_delta", map[string]any{"type": "content_block_delta", "index": 0, "delta": map[string]any{"type": "text_delta", "text": say}}},
			event{"content_block_stop", map[string]any{"type": "content_block_stop", "index": 0}})
		index = 1
	}
	events = append(events,
		event{"content_block_start", map[string]any{"type": "content_block_start", "index": index, "content_block": block}},
		event{"content_block_delta", map[string]any{"type": "content_block_delta", "index": index, "delta": delta}},
		event{"content_block_stop", map[string]any{"type": "content_block_stop", "index": index}},
		event{"message_delta", map[string]any{"type": "message_delta", "delta": map[string]any{"stop_reason": stop, "stop_sequence": nil}, "usage": usage}},
		event{"message_stop", map[string]any{"type": "message_stop"}})
	for _, e := range events {
		if sendEvent(w, e.name, e.data) != nil {
			return
		}
	}
}
