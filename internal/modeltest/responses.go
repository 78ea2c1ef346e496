package modeltest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// Responses is a scripted OpenAI Responses API (what Codex speaks).
type Responses struct {
	*Script
}

// NewResponses starts the server; Close stops it.
func NewResponses(steps []Step) *Responses {
	r := &Responses{Script: &Script{steps: steps}}
	r.start(r.serve)
	return r
}

type responsesRequest struct {
	Model        string            `json:"model"`
	Instructions string            `json:"instructions"`
	Input        []json.RawMessage `json:"input"`
	Tools        []responsesTool   `json:"tools"`
}

// responsesTool is a function, or a namespace of them (how Codex offers
// an MCP server's tools: "mcp__lowkey" holding "shell_run").
type responsesTool struct {
	Type  string          `json:"type"`
	Name  string          `json:"name"`
	Tools []responsesTool `json:"tools"`
}

// inputText is one input item as text: a message's words, a call's
// output.
func inputText(raw json.RawMessage) (role, words string) {
	var it struct {
		Type    string          `json:"type"`
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
		Output  json.RawMessage `json:"output"`
	}
	if json.Unmarshal(raw, &it) != nil {
		return "", string(raw)
	}
	switch it.Type {
	case "function_call_output":
		var s string
		if json.Unmarshal(it.Output, &s) == nil {
			return "tool", s
		}
		return "tool", text(it.Output)
	case "message", "":
		var blocks []struct {
			Text string `json:"text"`
		}
		if json.Unmarshal(it.Content, &blocks) == nil {
			var b strings.Builder
			for _, bl := range blocks {
				b.WriteString(bl.Text)
			}
			return it.Role, b.String()
		}
		return it.Role, text(it.Content)
	}
	return it.Type, ""
}

func (r *Responses) serve(w http.ResponseWriter, req *http.Request) {
	if !strings.HasSuffix(req.URL.Path, "/responses") {
		http.NotFound(w, req)
		return
	}
	var rq responsesRequest
	if !readJSON(w, req, &rq) {
		return
	}
	rec := Request{System: rq.Instructions}
	for _, t := range rq.Tools {
		if t.Type == "namespace" {
			for _, f := range t.Tools {
				rec.Tools = append(rec.Tools, t.Name+"__"+f.Name)
			}
			continue
		}
		rec.Tools = append(rec.Tools, t.Name)
	}
	for _, in := range rq.Input {
		role, words := inputText(in)
		if role == "developer" || role == "system" {
			rec.System += "\n" + words
			continue
		}
		if words != "" {
			rec.Messages = append(rec.Messages, words)
		}
	}
	step, results, main := r.take(rec)
	switch {
	case !main:
		r.answer(w, rq, "", nil, "ok")
	case step.Tool != "":
		r.answer(w, rq, boxTool(rec.Tools, step.Tool), step.Args, "")
	default:
		r.answer(w, rq, "", nil, step.Reply(results))
	}
}

// answer streams one response: a function call, or a message.
func (r *Responses) answer(w http.ResponseWriter, rq responsesRequest, tool string, args map[string]any, say string) {
	n := r.calls()
	var item map[string]any
	var deltas []map[string]any
	if tool != "" {
		in, err := json.Marshal(args)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		id, call := fmt.Sprintf("fc_%d", n), fmt.Sprintf("call_%d", n)
		item = map[string]any{"type": "function_call", "id": id, "call_id": call, "name": tool, "arguments": string(in), "status": "completed"}
		started := map[string]any{"type": "function_call", "id": id, "call_id": call, "name": tool, "arguments": "", "status": "in_progress"}
		if name, ok := strings.CutPrefix(tool, "mcp__lowkey__"); ok {
			// A tool of a namespace is called by its own name in it.
			item["namespace"], item["name"] = "mcp__lowkey", name
			started["namespace"], started["name"] = "mcp__lowkey", name
		}
		deltas = []map[string]any{
			{"type": "response.output_item.added", "output_index": 0, "item": started},
			{"type": "response.function_call_arguments.delta", "output_index": 0, "item_id": id, "delta": string(in)},
			{"type": "response.function_call_arguments.done", "output_index": 0, "item_id": id, "arguments": string(in)},
		}
	} else {
		id := fmt.Sprintf("msg_%d", n)
		item = map[string]any{"type": "message", "id": id, "role": "assistant", "status": "completed",
			"content": []any{map[string]any{"type": "output_text", "text": say, "annotations": []any{}}}}
		deltas = []map[string]any{
			{"type": "response.output_item.added", "output_index": 0, "item": map[string]any{"type": "message", "id": id, "role": "assistant", "status": "in_progress", "content": []any{}}},
			{"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "item_id": id, "delta": say},
		}
	}
	resp := map[string]any{"id": fmt.Sprintf("resp_%d", n), "object": "response", "model": rq.Model, "status": "in_progress", "output": []any{}}
	done := map[string]any{"id": resp["id"], "object": "response", "model": rq.Model, "status": "completed", "output": []any{item},
		"usage": map[string]any{"input_tokens": 10, "output_tokens": 5, "total_tokens": 15,
			"input_tokens_details": map[string]any{"cached_tokens": 0}, "output_tokens_details": map[string]any{"reasoning_tokens": 0}}}
	events := append([]map[string]any{{"type": "response.created", "response": resp}}, deltas...)
	events = append(events,
		map[string]any{"type": "response.output_item.done", "output_index": 0, "item": item},
		map[string]any{"type": "response.completed", "response": done})
	w.Header().Set("Content-Type", "text/event-stream")
	for _, e := range events {
		if sendEvent(w, e["type"].(string), e) != nil {
			return
		}
	}
}
