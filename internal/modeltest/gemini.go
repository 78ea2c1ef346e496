package modeltest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// Gemini is a scripted Gemini API (generateContent and
// streamGenerateContent with SSE), what Gemini CLI speaks.
type Gemini struct {
	*Script
}

// NewGemini starts the server; Close stops it.
func NewGemini(steps []Step) *Gemini {
	g := &Gemini{Script: &Script{steps: steps}}
	g.start(g.serve)
	return g
}

type geminiPart struct {
	Text         string `json:"text,omitempty"`
	FunctionCall *struct {
		Name string `json:"name"`
	} `json:"functionCall,omitempty"`
	FunctionResponse *struct {
		Name     string          `json:"name"`
		Response json.RawMessage `json:"response"`
	} `json:"functionResponse,omitempty"`
}

type geminiRequest struct {
	Contents []struct {
		Role  string       `json:"role"`
		Parts []geminiPart `json:"parts"`
	} `json:"contents"`
	SystemInstruction *struct {
		Parts []geminiPart `json:"parts"`
	} `json:"systemInstruction"`
	Tools []struct {
		FunctionDeclarations []struct {
			Name string `json:"name"`
		} `json:"functionDeclarations"`
	} `json:"tools"`
}

func (g *Gemini) serve(w http.ResponseWriter, r *http.Request) {
	_, call, ok := strings.Cut(r.URL.Path, ":")
	if !ok {
		http.NotFound(w, r)
		return
	}
	var req geminiRequest
	if !readJSON(w, r, &req) {
		return
	}
	var rec Request
	if req.SystemInstruction != nil {
		for _, p := range req.SystemInstruction.Parts {
			rec.System += p.Text
		}
	}
	for _, t := range req.Tools {
		for _, f := range t.FunctionDeclarations {
			rec.Tools = append(rec.Tools, f.Name)
		}
	}
	for _, c := range req.Contents {
		var words strings.Builder
		for _, p := range c.Parts {
			words.WriteString(p.Text)
			if p.FunctionResponse != nil {
				words.Write(p.FunctionResponse.Response)
			}
		}
		rec.Messages = append(rec.Messages, words.String())
	}
	stream := call == "streamGenerateContent"
	var step Step
	var results []string
	main := false
	if stream {
		step, results, main = g.take(rec)
	} else {
		// A side request (routing, a check on what comes next): not a step.
		g.side(rec)
	}
	var part map[string]any
	switch {
	case !main:
		part = map[string]any{"text": "ok"}
	case step.Tool != "":
		part = map[string]any{"functionCall": map[string]any{"name": boxTool(rec.Tools, step.Tool), "args": step.Args}}
	default:
		part = map[string]any{"text": step.Reply(results)}
	}
	resp := map[string]any{
		"candidates":    []any{map[string]any{"content": map[string]any{"role": "model", "parts": []any{part}}, "finishReason": "STOP", "index": 0}},
		"usageMetadata": map[string]any{"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15},
		"modelVersion":  "scripted",
	}
	out, err := json.Marshal(resp)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if !stream {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(out)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	_, _ = fmt.Fprintf(w, "data: %s\n\n", out)
}
