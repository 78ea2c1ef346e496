package sessions

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// MCPHandler is the box's MCP server (streamable HTTP). A bearer token
// opens only its own session: a request without a known token is refused
// here, and each tool call acts on the session its token opens.
func (r *Runtime) MCPHandler() http.Handler {
	server := r.mcpServer()
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, &mcp.StreamableHTTPOptions{Stateless: true})
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		tok, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
		if _, known := r.SessionForToken(tok); !ok || !known {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":{"code":"unauthorized","message":"an MCP token from the turn's credentials file is required"}}`))
			return
		}
		if req.Method == http.MethodPost && strings.Contains(req.Header.Get("Accept"), "text/event-stream") {
			body, ok := toolCall(req)
			req.Body = io.NopCloser(bytes.NewReader(body))
			if ok {
				h.ServeHTTP(earlyStream(w), req)
				return
			}
		}
		h.ServeHTTP(w, req)
	})
}

// toolCall reads a POST's body and says whether it is one tools/call (the
// caller gives the body back for the handler to read).
func toolCall(req *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return body, false
	}
	var msg struct {
		Method string `json:"method"`
	}
	return body, json.Unmarshal(body, &msg) == nil && msg.Method == "tools/call"
}

// earlyStream answers a tools/call with its SSE headers at once (and a
// comment, so proxies pass them on): a client that gives up on headers
// it has not had after some seconds still gets a long tool's answer. The
// MCP handler then writes the events on the stream; the headers it sets
// are the same, and go nowhere.
func earlyStream(w http.ResponseWriter) http.ResponseWriter {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache, no-transform")
	h.Set("Connection", "keep-alive")
	w.WriteHeader(http.StatusOK)
	if _, err := io.WriteString(w, ": ok\n\n"); err == nil {
		_ = http.NewResponseController(w).Flush()
	}
	return &streamed{ResponseWriter: w, header: http.Header{}}
}

// streamed is a response whose headers are already sent.
type streamed struct {
	http.ResponseWriter
	header http.Header
}

func (s *streamed) Header() http.Header { return s.header }
func (s *streamed) WriteHeader(int)     {}
func (s *streamed) Flush()              { _ = http.NewResponseController(s.ResponseWriter).Flush() }
func (s *streamed) Unwrap() http.ResponseWriter {
	return s.ResponseWriter
}

type deviceActionIn struct {
	Device string         `json:"device" jsonschema:"the computer's id, from device.list"`
	Action string         `json:"action" jsonschema:"a device action such as browser.navigate, browser.snapshot, browser.click, screen.screenshot"`
	Args   map[string]any `json:"args,omitempty" jsonschema:"the action's arguments"`
}

type shellRunIn struct {
	Command     string `json:"command" jsonschema:"the shell command"`
	Cwd         string `json:"cwd,omitempty" jsonschema:"working directory (default: the session's)"`
	WaitSeconds *int   `json:"wait_seconds,omitempty" jsonschema:"how long to wait for it to finish (default 30; 0 returns at once and it runs on as a job)"`
}

type jobIn struct {
	Job string `json:"job" jsonschema:"the job id"`
}

type confirmIn struct {
	Question       string `json:"question" jsonschema:"what to ask the person, in one line"`
	TimeoutSeconds int    `json:"timeout_seconds,omitempty" jsonschema:"how long to wait (default 120); no answer means no"`
}

type noIn struct{}

type publishIn struct {
	Dir string `json:"dir" jsonschema:"the directory to publish, relative to the session's working directory"`
}

// Tool results: each is an object (clients such as Gemini's refuse a
// top-level array), sent as structured content with its schema.
type (
	devicesOut struct {
		Devices []DeviceInfo `json:"devices" jsonschema:"the paired computers and this conversation's toggles on each"`
	}
	actionOut struct {
		Result     any    `json:"result" jsonschema:"what the action returned"`
		DataBase64 string `json:"data_base64,omitempty" jsonschema:"binary results other than images (files), base64-encoded"`
		ImageBytes int    `json:"image_bytes,omitempty" jsonschema:"the size of the image sent as image content"`
	}
	jobsOut struct {
		Jobs []Job `json:"jobs" jsonschema:"this session's jobs, oldest first"`
	}
	confirmOut struct {
		Answer string `json:"answer" jsonschema:"yes, no or cancel; no answer in time is no"`
	}
)

// imageType is the MIME type of an image blob, "" for anything else.
func imageType(b []byte) string {
	switch {
	case bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")):
		return "image/png"
	case bytes.HasPrefix(b, []byte{0xff, 0xd8, 0xff}):
		return "image/jpeg"
	case len(b) > 12 && string(b[:4]) == "RIFF" && string(b[8:12]) == "WEBP":
		return "image/webp"
	}
	return ""
}

// mcpServer is the one MCP server of the box. Its tools act on the
// session the request's token opens (one server for all sessions: the
// tool schemas are built once, not per session).
func (r *Runtime) mcpServer() *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "lowkey", Version: "1"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "device.list", Description: "The paired computers this conversation may drive, with the toggles that are on."},
		forSession(r, func(ctx context.Context, id string, _ noIn) (*mcp.CallToolResult, devicesOut, error) {
			if r.cfg.Devices == nil {
				return nil, devicesOut{Devices: []DeviceInfo{}}, nil
			}
			return nil, devicesOut{Devices: r.cfg.Devices.List(id)}, nil
		}))
	mcp.AddTool(s, &mcp.Tool{Name: "device.action", Description: "Run one action on a paired computer (browser.* needs the browser toggle, screen.* the desktop toggle). Screenshots come back as images; other binary results (files) base64-encoded."},
		forSession(r, func(ctx context.Context, id string, in deviceActionIn) (*mcp.CallToolResult, actionOut, error) {
			if r.cfg.Devices == nil {
				return nil, actionOut{}, errors.New("no devices on this box")
			}
			tctx, turn := r.turnContext(id)
			ctx, cancel := mergeCancel(ctx, tctx)
			defer cancel()
			who := "agent"
			if turn != "" {
				who = "agent (turn " + turn + ")"
			}
			var args json.RawMessage
			if in.Args != nil {
				var err error
				if args, err = json.Marshal(in.Args); err != nil {
					return nil, actionOut{}, err
				}
			}
			res, blob, err := r.cfg.Devices.Do(ctx, id, who, in.Device, in.Action, args)
			if err != nil {
				return nil, actionOut{}, err
			}
			out := actionOut{Result: map[string]any{}}
			if len(res) > 0 {
				if err := json.Unmarshal(res, &out.Result); err != nil {
					return nil, actionOut{}, fmt.Errorf("the computer's answer did not read: %w", err)
				}
			}
			mime := imageType(blob)
			if mime == "" {
				if len(blob) > 0 {
					out.DataBase64 = base64.StdEncoding.EncodeToString(blob)
				}
				return nil, out, nil
			}
			// An image goes as image content, so a model that sees can see it.
			out.ImageBytes = len(blob)
			text, err := json.Marshal(out)
			if err != nil {
				return nil, actionOut{}, err
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: string(text)}, &mcp.ImageContent{Data: blob, MIMEType: mime}}}, out, nil
		}))
	mcp.AddTool(s, &mcp.Tool{Name: "shell.run", Description: "Run a shell command on the box as a job in this session. Returns its run card: status, exit code, output tails."},
		forSession(r, func(ctx context.Context, id string, in shellRunIn) (*mcp.CallToolResult, Job, error) {
			wait := 30 * time.Second
			if in.WaitSeconds != nil {
				wait = time.Duration(max(0, min(*in.WaitSeconds, 600))) * time.Second
			}
			j, err := r.RunJob(ctx, id, in.Command, in.Cwd, wait)
			return nil, j, err
		}))
	mcp.AddTool(s, &mcp.Tool{Name: "job.list", Description: "This session's jobs and their run cards."},
		forSession(r, func(ctx context.Context, id string, _ noIn) (*mcp.CallToolResult, jobsOut, error) {
			return nil, jobsOut{Jobs: r.Jobs(id)}, nil
		}))
	mcp.AddTool(s, &mcp.Tool{Name: "job.stop", Description: "Stop a job and everything it started."},
		forSession(r, func(ctx context.Context, id string, in jobIn) (*mcp.CallToolResult, Job, error) {
			j, err := r.StopJob(id, in.Job)
			return nil, j, err
		}))
	mcp.AddTool(s, &mcp.Tool{Name: "pages.publish", Description: "Publish a directory of static files (HTML, CSS, images, fonts, PDFs) as a page on its own origin; returns its URL. No script runs there."},
		forSession(r, func(ctx context.Context, id string, in publishIn) (*mcp.CallToolResult, any, error) {
			if r.cfg.Pages == nil {
				return nil, nil, errors.New("this box publishes no pages")
			}
			pg, err := r.publishDir(id, in.Dir)
			return nil, pg, err
		}))
	mcp.AddTool(s, &mcp.Tool{Name: "confirm", Description: "Ask the person a yes/no question before doing something sensitive. Answers yes, no or cancel; no answer in time is no."},
		forSession(r, func(ctx context.Context, id string, in confirmIn) (*mcp.CallToolResult, confirmOut, error) {
			timeout := r.cfg.ConfirmTimeout
			if in.TimeoutSeconds > 0 {
				timeout = time.Duration(min(in.TimeoutSeconds, 3600)) * time.Second
			}
			return nil, confirmOut{Answer: r.Confirm(ctx, id, "agent", in.Question, timeout)}, nil
		}))
	return s
}

// forSession wraps a tool so it runs on the session its caller's token
// opens; each call is activity of the session's running turn (a turn
// waiting on a long tool is not stalled).
func forSession[In, Out any](r *Runtime, f func(ctx context.Context, id string, in In) (*mcp.CallToolResult, Out, error)) mcp.ToolHandlerFor[In, Out] {
	return func(ctx context.Context, req *mcp.CallToolRequest, in In) (*mcp.CallToolResult, Out, error) {
		var tok string
		if req != nil && req.Extra != nil {
			tok, _ = strings.CutPrefix(req.Extra.Header.Get("Authorization"), "Bearer ")
		}
		id, ok := r.SessionForToken(tok)
		if !ok {
			var zero Out
			return nil, zero, errors.New("this token opens no session")
		}
		done := r.busy(id)
		defer done()
		if req != nil && req.Session != nil && req.Params != nil {
			if token := req.Params.GetProgressToken(); token != nil {
				stop := progress(ctx, req.Session, token)
				defer stop()
			}
		}
		return f(ctx, id, in)
	}
}

// progressEvery is how often a running tool says it still is.
const progressEvery = 10 * time.Second

// progress tells a client that asked for it (a progress token) that the
// tool is still running, until stop.
func progress(ctx context.Context, ss *mcp.ServerSession, token any) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		start := time.Now()
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := ss.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: token,
				Progress: time.Since(start).Seconds(), Message: "still running"}); err != nil {
				return
			}
		}
	}()
	return func() { cancel(); <-done }
}

// Confirm asks the person on the session's confirm card. A Cancel also
// cancels the running turn. Any failure is a No.
func (r *Runtime) Confirm(ctx context.Context, id, kind, question string, timeout time.Duration) string {
	if r.cfg.Confirms == nil {
		return AnswerNo
	}
	ls, err := r.session(id)
	if err != nil {
		return AnswerNo
	}
	tctx, turn := r.turnContext(id)
	ctx, cancel := mergeCancel(ctx, tctx)
	defer cancel()
	answer, c := r.cfg.Confirms.Ask(ctx, id, kind, question, timeout)
	ls.events.emit("confirm.closed", turn, "", c)
	if answer == AnswerCancel && turn != "" {
		go func() { _ = r.CancelTurn(id, turn) }()
	}
	return answer
}

// ConfirmOpened records a new question in the session's events (the box
// calls it from Confirmations.OnChange).
func (r *Runtime) ConfirmOpened(c Confirmation) {
	if c.Answer != "" {
		return
	}
	if ls, err := r.session(c.Session); err == nil {
		_, turn := r.turnContext(c.Session)
		ls.events.emit("confirm.open", turn, "", c)
	}
}

// mergeCancel is a context cancelled when either parent is.
func mergeCancel(a, b context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(a)
	stop := context.AfterFunc(b, cancel)
	return ctx, func() { stop(); cancel() }
}
