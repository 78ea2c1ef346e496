package agent

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// codex is Codex in exec mode with its JSONL events.
var codex = &Preset{
	Name: "codex", Label: "Codex", Bin: "codex", Package: "@openai/codex",
	Keys:     []string{"OPENAI_API_KEY"},
	Pass:     []string{"OPENAI_API_KEY"},
	Memory:   1 << 30,
	Versions: "0.169",
	args: func(r *presetRun) ([]string, error) {
		// A profile of this turn's own, layered on the agent's Codex
		// configuration: the box's tools with the turn's token, the
		// provider, the instructions. It goes when the turn ends.
		profile := "lowkey-" + r.in.Turn
		path := filepath.Join(r.codexHome(), profile+".config.toml")
		if err := os.MkdirAll(r.codexHome(), 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, []byte(codexProfile(r)), 0o600); err != nil {
			return nil, err
		}
		r.cleanup = append(r.cleanup, path)
		args := []string{"exec", "--json", "--skip-git-repo-check", "--profile", profile}
		if r.resume {
			// Its conversation in this session's directory goes on.
			args = append(args, "resume", "--last")
		}
		return append(args, r.prompt()), nil
	},
	env: func(r *presetRun) []string {
		return []string{"CODEX_HOME=" + r.codexHome()}
	},
	parse: parseCodex,
}

// codexHome is where Codex keeps its state: the agent account's home.
func (r *presetRun) codexHome() string { return filepath.Join(r.home, ".codex") }

// toml quotes a string for TOML.
func toml(s string) string { return strconv.Quote(s) }

func codexProfile(r *presetRun) string {
	var b strings.Builder
	fmt.Fprintf(&b, "developer_instructions = %s\n", toml(r.in.instructions()))
	if base := r.creds.Secrets["OPENAI_BASE_URL"]; base != "" {
		fmt.Fprintf(&b, "model_provider = \"lowkey\"\n")
		if model := r.creds.Secrets["OPENAI_MODEL"]; model != "" {
			fmt.Fprintf(&b, "model = %s\n", toml(model))
		}
		fmt.Fprintf(&b, "\n[model_providers.lowkey]\nname = \"the box's provider\"\nbase_url = %s\nenv_key = \"OPENAI_API_KEY\"\nwire_api = \"responses\"\n", toml(base))
	} else if model := r.creds.Secrets["OPENAI_MODEL"]; model != "" {
		fmt.Fprintf(&b, "model = %s\n", toml(model))
	}
	fmt.Fprintf(&b, "\n[mcp_servers.lowkey]\nurl = %s\nhttp_headers = { Authorization = %s }\nrequired = true\nstartup_timeout_sec = 30\ntool_timeout_sec = %d\ndefault_tools_approval_mode = \"approve\"\n",
		toml(r.mcpURL), toml("Bearer "+r.creds.MCPToken), int(toolTimeout.Seconds()))
	return b.String()
}

// codexEvent is one line of "codex exec --json".
type codexEvent struct {
	Type string `json:"type"`
	Item struct {
		Type      string          `json:"type"`
		Server    string          `json:"server"`
		Tool      string          `json:"tool"`
		Arguments json.RawMessage `json:"arguments"`
		Status    string          `json:"status"`
		Text      string          `json:"text"`
		Message   string          `json:"message"`
		Error     json.RawMessage `json:"error"`
	} `json:"item"`
	Error struct {
		Message string `json:"message"`
	} `json:"error"`
	Message string `json:"message"`
}

func parseCodex(r *presetRun, line []byte) {
	var e codexEvent
	if json.Unmarshal(line, &e) != nil {
		return
	}
	switch e.Type {
	case "turn.started":
		// The box's tools are required: Codex starts no turn without them.
		r.mu.Lock()
		r.connected = true
		r.mu.Unlock()
	case "item.started":
		if e.Item.Type == "mcp_tool_call" {
			r.calls(e.Item.Tool, e.Item.Arguments)
		}
	case "item.completed":
		switch e.Item.Type {
		case "mcp_tool_call":
			if e.Item.Status == "failed" || len(e.Item.Error) > 0 && string(e.Item.Error) != "null" {
				r.show("← error: %s", e.Item.Error)
			} else {
				r.show("← done")
			}
		case "agent_message":
			r.said(e.Item.Text)
		case "error":
			if strings.Contains(e.Item.Message, "MCP") || strings.Contains(e.Item.Message, "lowkey") {
				r.fail("the box's tools did not connect to codex: " + e.Item.Message)
			}
		}
	case "turn.failed":
		r.fail("codex: " + e.Error.Message)
	case "error":
		if strings.Contains(e.Message, "lowkey") {
			r.fail("the box's tools did not connect to codex: " + e.Message)
		}
	}
}
