package modeltest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
)

// Step is one answer of the script: a call of one of the box's tools (by
// the box's name, "shell.run"), or, when Tool is "", the final text, made
// from the tools' results so far.
type Step struct {
	Tool  string
	Args  map[string]any
	Say   string // words before the call, where the API allows both
	Reply func(results []string) string
}

// Request is what the CLI sent for one step of its main loop.
type Request struct {
	System   string
	Messages []string // each message's text, tool results included
	Tools    []string
	Images   int  // images among the messages
	Stream   bool // whether the answer was asked for as a stream
}

// boxTool finds the name the CLI gave one of the box's tools, however it
// spells it (mcp__lowkey__shell_run, mcp_lowkey_shell.run, lowkey_shell_run,
// shell__run): its letters end with the box's name's.
func boxTool(tools []string, box string) string {
	norm := strings.NewReplacer(".", "", "_", "", "-", "")
	want := norm.Replace(box)
	for _, t := range tools {
		if strings.HasSuffix(norm.Replace(t), want) {
			return t
		}
	}
	return ""
}

// Script is the state both servers share: the steps, what the CLI sent.
type Script struct {
	URL string

	mu       sync.Mutex
	steps    []Step
	next     int
	results  []string
	requests []Request
	all      []Request
	srv      *httptest.Server
}

func (s *Script) start(h http.HandlerFunc) {
	s.srv = httptest.NewServer(h)
	s.URL = s.srv.URL
}

// Close stops the server.
func (s *Script) Close() { s.srv.Close() }

// Requests are the main-loop requests so far: those that offered the
// box's tools.
func (s *Script) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// All are every request so far, the CLI's side requests included.
func (s *Script) All() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.all...)
}

// Rewind starts the script again (a second turn), keeping the requests.
func (s *Script) Rewind(steps []Step) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.steps, s.next, s.results = steps, 0, nil
}

// calls counts the steps taken, for unique call IDs.
func (s *Script) calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.next
}

// side records a request that is not a step of the script.
func (s *Script) side(rec Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.all = append(s.all, rec)
}

// take records a request and gives the step to answer it with, and the
// tools' results so far; main is false for a side request (one that does
// not offer the box's tools, or comes after the script's end).
func (s *Script) take(rec Request) (step Step, results []string, main bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.all = append(s.all, rec)
	if boxTool(rec.Tools, "shell.run") == "" || s.next >= len(s.steps) {
		return Step{}, nil, false
	}
	if s.next > 0 && len(rec.Messages) > 0 {
		s.results = append(s.results, rec.Messages[len(rec.Messages)-1])
	}
	s.requests = append(s.requests, rec)
	step = s.steps[s.next]
	s.next++
	return step, append([]string(nil), s.results...), true
}

// readJSON reads a request's body into v; a body that is not JSON is
// answered 400 and false.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	b, err := io.ReadAll(r.Body)
	if err == nil {
		err = json.Unmarshal(b, v)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}

// sendEvent writes one server-sent event ("" names none: data only) and
// flushes it.
func sendEvent(w http.ResponseWriter, name string, data any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	if name != "" {
		if _, err := fmt.Fprintf(w, "event: %s\n", name); err != nil {
			return err
		}
	}
	if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
		return err
	}
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	return nil
}
