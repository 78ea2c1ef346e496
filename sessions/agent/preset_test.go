package agent

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lowkeyhq/lowkey/internal/modeltest"
	"github.com/lowkeyhq/lowkey/internal/testenv"
)

// When the box's tools do not connect, the CLI would carry on without them
// and call the turn done; the preset fails it and says why.
func TestAPresetFailsTheTurnWhenTheBoxsToolsDoNotConnect(t *testing.T) {
	dir := testenv.AgentCLIs(t, "claude")
	m := modeltest.NewAnthropic([]modeltest.Step{{Reply: func([]string) string { return "carried on without the tools" }}})
	defer m.Close()
	creds := filepath.Join(t.TempDir(), "credentials.json")
	b, err := json.Marshal(Credentials{MCPToken: "tok", Secrets: map[string]string{"ANTHROPIC_API_KEY": "sk-ant-test", "ANTHROPIC_BASE_URL": m.URL}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(creds, b, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("LOWKEY_CREDENTIALS_FILE", creds)
	t.Setenv("LOWKEY_MCP_URL", "http://127.0.0.1:1/mcp") // nothing listens there
	t.Setenv("PATH", dir+":/usr/bin:/bin")
	t.Setenv("HOME", t.TempDir())
	t.Chdir(t.TempDir())
	in, err := json.Marshal(Input{Session: "s-test", Turn: "t-test", Message: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code := Main([]string{"claude"}, bytes.NewReader(append(in, '\n')), &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "the box's tools did not connect to claude") || strings.Contains(out.String(), "carried on") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out.String(), errOut.String())
	}
	if _, err := os.Stat(creds); !os.IsNotExist(err) {
		t.Errorf("the credentials file is still there: %v", err)
	}
}
