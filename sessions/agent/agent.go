package agent

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Input is what a turn's worker reads on its first stdin line.
type Input struct {
	Session string `json:"session"`
	Turn    string `json:"turn"`
	History []struct {
		Role string `json:"role"`
		Text string `json:"text"`
	} `json:"history"`
	Message string `json:"message"`
	// Instructions are the box's standing instructions for this turn
	// (the owner's DATA/instructions.md, else Standing).
	Instructions string `json:"instructions,omitempty"`
}

// instructions are the turn's standing instructions.
func (in Input) instructions() string {
	if in.Instructions != "" {
		return in.Instructions
	}
	return Standing
}

// Credentials is the content of the credentials file.
type Credentials struct {
	MCPToken string            `json:"mcp_token"`
	Secrets  map[string]string `json:"secrets"`
}

// ReadCredentials reads the credentials file and deletes it.
func ReadCredentials() (*Credentials, error) {
	path := os.Getenv("LOWKEY_CREDENTIALS_FILE")
	if path == "" {
		return nil, errors.New("LOWKEY_CREDENTIALS_FILE is not set")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	_ = os.Remove(path)
	var c Credentials
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	return &c, nil
}

// worker is what both agents share: the turn, stdin after it (nudges),
// the MCP session.
type worker struct {
	in     Input
	creds  *Credentials
	mcp    *mcp.ClientSession
	nudges chan struct{}
	out    io.Writer
	errOut io.Writer // progress: shown in the thread, not the reply
	mu     sync.Mutex
}

type bearer struct {
	tok  string
	base http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.tok)
	return b.base.RoundTrip(r)
}

// Main runs the worker named by args[0]: "builtin", "openai" or a preset.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) != 1 || (args[0] != "builtin" && args[0] != "openai" && Presets[args[0]] == nil) {
		fmt.Fprintln(stderr, "usage: agent builtin|openai|claude (the box runs this for a turn)")
		return 2
	}
	w := &worker{out: stdout, errOut: stderr, nudges: make(chan struct{}, 8)}
	rd := bufio.NewReader(stdin)
	line, err := rd.ReadBytes('\n')
	if err != nil && len(line) == 0 {
		fmt.Fprintln(stderr, "no turn on stdin")
		return 2
	}
	if err := json.Unmarshal(line, &w.in); err != nil {
		fmt.Fprintln(stderr, "the turn on stdin is not JSON:", err)
		return 2
	}
	go func() {
		for {
			l, err := rd.ReadBytes('\n')
			if strings.Contains(string(l), `"nudge"`) {
				select {
				case w.nudges <- struct{}{}:
				default:
				}
			}
			if err != nil {
				return
			}
		}
	}()
	if w.creds, err = ReadCredentials(); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	ctx := context.Background()
	if p := Presets[args[0]]; p != nil {
		reply, err := runPreset(ctx, p, w.in, w.creds, stderr)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		w.say(reply)
		return 0
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "lowkey-agent", Version: "1"}, nil)
	tr := &mcp.StreamableClientTransport{Endpoint: os.Getenv("LOWKEY_MCP_URL"), DisableStandaloneSSE: true,
		HTTPClient: &http.Client{Transport: bearer{tok: w.creds.MCPToken, base: http.DefaultTransport}}}
	if w.mcp, err = client.Connect(ctx, tr, nil); err != nil {
		fmt.Fprintln(stderr, "cannot reach the box's MCP server:", err)
		return 1
	}
	defer w.mcp.Close()
	var reply string
	if args[0] == "builtin" {
		reply, err = w.builtin(ctx)
	} else {
		reply, err = w.openai(ctx)
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	w.say(reply)
	return 0
}

func (w *worker) say(s string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fmt.Fprintln(w.out, s)
}

// progress is a line in the thread that is not the reply.
func (w *worker) progress(s string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fmt.Fprintln(w.errOut, s)
}

// callSeeing runs one MCP tool and returns its text and its images.
func (w *worker) callSeeing(ctx context.Context, tool string, args any) (string, []chatPart, error) {
	res, err := w.mcp.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		return "", nil, err
	}
	var sb strings.Builder
	var images []chatPart
	for _, c := range res.Content {
		switch c := c.(type) {
		case *mcp.TextContent:
			sb.WriteString(c.Text)
		case *mcp.ImageContent:
			p := chatPart{Type: "image_url", ImageURL: &struct {
				URL string `json:"url"`
			}{URL: "data:" + c.MIMEType + ";base64," + base64.StdEncoding.EncodeToString(c.Data)}}
			images = append(images, p)
		}
	}
	if res.IsError {
		return "", nil, errors.New(sb.String())
	}
	return sb.String(), images, nil
}

// call runs one MCP tool and returns its text.
func (w *worker) call(ctx context.Context, tool string, args any) (string, error) {
	res, err := w.mcp.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		return "", err
	}
	var sb strings.Builder
	for _, c := range res.Content {
		if t, ok := c.(*mcp.TextContent); ok {
			sb.WriteString(t.Text)
		}
	}
	if res.IsError {
		return "", errors.New(sb.String())
	}
	return sb.String(), nil
}

// waitOrNudge waits d, or less if a nudge comes.
func (w *worker) waitOrNudge(d time.Duration) bool {
	select {
	case <-time.After(d):
		return false
	case <-w.nudges:
		return true
	}
}
