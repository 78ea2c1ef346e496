package agent

import (
	"encoding/json"
	"os"
	"path/filepath"
)

// gemini is Gemini CLI in headless mode with its stream of JSON events.
var gemini = &Preset{
	Name: "gemini", Label: "Gemini CLI", Bin: "gemini", Package: "@google/gemini-cli",
	Keys:     []string{"GEMINI_API_KEY"},
	Pass:     []string{"GEMINI_API_KEY", "GOOGLE_GEMINI_BASE_URL"},
	Memory:   1 << 30,
	Versions: "0.61",
	// Its stream says nothing of the MCP servers: the box checks its own
	// answers the turn's token before the CLI starts.
	precheck: true,
	args: func(r *presetRun) ([]string, error) {
		// Its home is the session's own in the agent's home (GEMINI_CLI_HOME):
		// its conversations stay, and this turn's settings there (the box's
		// tools with the turn's token, trusted, a long timeout) go with the
		// turn. The instructions are its global context file there.
		dir := filepath.Join(r.geminiHome(), ".gemini")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		if err := writeAtomic(filepath.Join(dir, "GEMINI.md"), []byte(r.in.instructions()+"\n")); err != nil {
			return nil, err
		}
		settings, err := json.MarshalIndent(map[string]any{
			"security": map[string]any{"auth": map[string]any{"selectedType": "gemini-api-key"}},
			"mcpServers": map[string]any{"lowkey": map[string]any{
				"httpUrl": r.mcpURL, "headers": map[string]string{"Authorization": "Bearer " + r.creds.MCPToken},
				"trust": true, "timeout": toolTimeout.Milliseconds(),
			}},
		}, "", "  ")
		if err != nil {
			return nil, err
		}
		path := filepath.Join(dir, "settings.json")
		if err := writeAtomic(path, settings); err != nil {
			return nil, err
		}
		r.cleanup = append(r.cleanup, path)
		args := []string{"-p", r.prompt(), "-o", "stream-json", "--skip-trust", "--allowed-mcp-server-names", "lowkey"}
		if m := r.creds.Secrets["GEMINI_MODEL"]; m != "" {
			args = append(args, "-m", m)
		}
		if r.resume {
			// Its conversation in this session's directory goes on.
			args = append(args, "--resume", "latest")
		}
		return args, nil
	},
	env: func(r *presetRun) []string {
		return []string{"GEMINI_CLI_HOME=" + r.geminiHome(), "GEMINI_CLI_TRUST_WORKSPACE=true", "NO_COLOR=1"}
	},
	parse: parseGemini,
}

// geminiHome is the session's own home for Gemini CLI.
func (r *presetRun) geminiHome() string {
	return filepath.Join(r.home, ".lowkey", "sessions", r.in.Session, "gemini")
}

// geminiEvent is one line of Gemini CLI's stream-json output.
type geminiEvent struct {
	Type       string          `json:"type"`
	Role       string          `json:"role"`
	Content    string          `json:"content"`
	Delta      bool            `json:"delta"`
	ToolName   string          `json:"tool_name"`
	Parameters json.RawMessage `json:"parameters"`
	Status     string          `json:"status"`
	Output     string          `json:"output"`
	Error      json.RawMessage `json:"error"`
}

func parseGemini(r *presetRun, line []byte) {
	var e geminiEvent
	if json.Unmarshal(line, &e) != nil {
		return
	}
	switch e.Type {
	case "tool_use":
		r.calls(boxTool(e.ToolName), e.Parameters)
	case "tool_result":
		if e.Status == "success" {
			r.show("← done")
		} else {
			r.show("← error: %s", e.Error)
		}
	case "message":
		if e.Role != "assistant" {
			return
		}
		r.mu.Lock()
		if e.Delta {
			r.reply += e.Content
		} else {
			r.reply = e.Content
		}
		r.mu.Unlock()
	case "tool_group", "turn":
		// A new model answer after tools: only the last one is the reply.
	case "result":
		if e.Status != "success" {
			r.fail("gemini ended with " + e.Status + ": " + string(e.Error))
		}
	}
}

// writeAtomic replaces a file whole (turns of several sessions may write
// the same one at once).
func writeAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-")
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	return os.Rename(f.Name(), path)
}
