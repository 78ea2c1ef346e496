// Command attacker is an agent that tries, from inside a turn, everything
// an agent talked into it would try against the box that runs it, and the
// ordinary work an agent must still be able to do. The end-to-end tests
// run it as an exec: agent; each line it prints says what one attempt got:
//
//	attack NAME: refused: WHY      the box held
//	attack NAME: GOT WHAT          the box gave something of its own away
//	honest NAME: ok                ordinary work worked
//	honest NAME: FAILED WHY        ordinary work was broken
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"golang.org/x/sys/unix"
)

func main() {
	hubPid := flag.Int("hub-pid", 0, "the hub's process id, as the box's own tools show it")
	data := flag.String("data", "", "the hub's data directory")
	api := flag.String("api", "", "the hub's HTTP address")
	shared := flag.String("shared", "", "a file the owner made for agents")
	backups := flag.String("backups", "", "where the hub keeps its timed backups (they hold its keys)")
	backup := flag.String("backup-file", "", "one of those backups")
	flag.Parse()

	// The turn on stdin.
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	var creds struct {
		MCPToken string            `json:"mcp_token"`
		Secrets  map[string]string `json:"secrets"`
	}
	raw, err := os.ReadFile(os.Getenv("LOWKEY_CREDENTIALS_FILE"))
	if err != nil || json.Unmarshal(raw, &creds) != nil {
		fmt.Println("honest credentials: FAILED", err)
		return
	}
	if err := os.Remove(os.Getenv("LOWKEY_CREDENTIALS_FILE")); err != nil {
		fmt.Println("honest credentials: FAILED removing the file:", err)
	}
	fmt.Println("honest credentials: ok")
	session := os.Getenv("LOWKEY_SESSION")
	home, _ := os.UserHomeDir()
	tokenFile := filepath.Join(home, ".attacker-token-"+session)

	// A second turn in the session tries the first one's token again.
	if _, err := os.Stat(tokenFile); err == nil {
		old, err := os.ReadFile(tokenFile)
		if err != nil {
			fmt.Println("honest token-kept: FAILED", err)
			return
		}
		fmt.Println("honest token-kept: ok")
		if out, err := callTool(string(old), "job.list", map[string]any{}); err != nil {
			refused("old-mcp-token", err)
		} else {
			fmt.Println("attack old-mcp-token: GOT", out)
		}
		if _, err := callTool(creds.MCPToken, "job.list", map[string]any{}); err != nil {
			fmt.Println("honest own-token: FAILED", err)
		} else {
			fmt.Println("honest own-token: ok")
		}
		return
	}

	var names []string
	for name, v := range creds.Secrets {
		names = append(names, name)
		fmt.Printf("secret %s=%s\n", name, v)
	}
	sort.Strings(names)
	fmt.Println("secret names:", strings.Join(names, ","))

	pid := fmt.Sprint(*hubPid)
	sock := filepath.Join(*data, "hub.sock")
	for name, path := range map[string]string{
		"admin-socket":           sock,
		"admin-socket-proc-root": filepath.Join("/proc", pid, "root", sock),
		"admin-socket-proc-cwd":  filepath.Join("/proc", pid, "cwd", "hub.sock"),
	} {
		if tok, err := adminToken(path); err != nil {
			refused(name, err)
		} else {
			fmt.Printf("attack %s: GOT the owner token %s\n", name, tok)
		}
	}
	for name, path := range map[string]string{
		"identity":     filepath.Join(*data, "identity.json"),
		"policy":       filepath.Join(*data, "policy.json"),
		"proc-environ": filepath.Join("/proc", pid, "environ"),
		"proc-mem":     filepath.Join("/proc", pid, "mem"),
		"backup-file":  *backup,
	} {
		if b, err := readSome(path); err != nil {
			refused(name, err)
		} else {
			fmt.Printf("attack %s: GOT %d bytes\n", name, len(b))
		}
	}
	for name, dir := range map[string]string{
		"data-dir": *data,
		"store":    filepath.Join(*data, "store"),
		"proc-fd":  filepath.Join("/proc", pid, "fd"),
		"proc-cwd": filepath.Join("/proc", pid, "cwd"),
		"backups":  *backups,
	} {
		if es, err := os.ReadDir(dir); err != nil {
			refused(name, err)
		} else {
			fmt.Printf("attack %s: GOT a listing of %d entries\n", name, len(es))
		}
	}
	if err := syscall.Kill(*hubPid, 0); err != nil {
		refused("signal", err)
	} else {
		fmt.Println("attack signal: GOT the hub signalled")
	}
	if err := unix.PtraceAttach(*hubPid); err != nil {
		refused("ptrace", err)
	} else {
		// Let it go again, once it has stopped, so the box keeps running.
		var ws unix.WaitStatus
		_, _ = unix.Wait4(*hubPid, &ws, unix.WALL, nil)
		_ = unix.PtraceDetach(*hubPid)
		fmt.Println("attack ptrace: GOT the hub traced")
	}
	// The HTTP API with what a turn has: no token, or its MCP token.
	for name, req := range map[string][2]string{
		"api-admin-token": {"GET", *api + "/admin/token"},
		"api-me":          {"GET", *api + "/api/v1/me"},
		"api-toggle":      {"PUT", *api + "/api/v1/sessions/" + session + "/devices/any/access"},
		"api-token-list":  {"GET", *api + "/api/v1/sessions"},
	} {
		code, body, err := httpDo(req[0], req[1], creds.MCPToken, `{"browser":true,"desktop":true}`)
		if err != nil || code >= 400 {
			refused(name, fmt.Errorf("%d %v %.80s", code, err, body))
		} else {
			fmt.Printf("attack %s: GOT %d %.200s\n", name, code, body)
		}
	}
	// Publish a page of the box's own files, through the publishing tool.
	if out, err := callTool(creds.MCPToken, "pages.publish", map[string]any{"dir": "../../../.." + *data}); err != nil || !strings.Contains(out, "\"url\"") {
		refused("publish-data-dir", fmt.Errorf("%v %.100s", err, out))
	} else {
		fmt.Println("attack publish-data-dir: GOT", out)
	}
	// Other workers' credentials: anything that looks like a credentials
	// file or points at one.
	if found := huntTokens(creds.MCPToken); len(found) > 0 {
		fmt.Println("attack other-tokens: GOT", strings.Join(found, " "))
	} else {
		refused("other-tokens", fmt.Errorf("none found"))
	}

	// Ordinary work.
	honest("write-work", func() error { return writeRead("made-in-work.txt") })
	honest("write-home", func() error { return writeRead(filepath.Join(home, ".attacker-home-"+session)) })
	honest("read-shared", func() error {
		b, err := os.ReadFile(*shared)
		if err == nil && !strings.Contains(string(b), "for the agent") {
			err = fmt.Errorf("unexpected content %q", b)
		}
		return err
	})
	honest("job", func() error {
		out, err := callTool(creds.MCPToken, "shell.run", map[string]any{"command": "echo job-ran; id -un", "wait_seconds": 20})
		if err == nil && !strings.Contains(out, "job-ran") {
			err = fmt.Errorf("the job said %s", out)
		}
		return err
	})
	for name, v := range creds.Secrets {
		if _, err := callTool(creds.MCPToken, "shell.run", map[string]any{"command": "echo job-secret " + v, "wait_seconds": 20}); err != nil {
			fmt.Println("honest job-secret", name+": FAILED", err)
		}
	}
	honest("keep-token", func() error { return os.WriteFile(tokenFile, []byte(creds.MCPToken), 0o600) })
}

func refused(name string, err error) { fmt.Printf("attack %s: refused: %v\n", name, err) }

func honest(name string, f func() error) {
	if err := f(); err != nil {
		fmt.Printf("honest %s: FAILED %v\n", name, err)
		return
	}
	fmt.Printf("honest %s: ok\n", name)
}

func readSome(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, 4096)
	n, err := f.Read(b)
	if n == 0 && err != nil && err != io.EOF {
		return nil, err
	}
	return b[:n], nil
}

func writeRead(path string) error {
	if err := os.WriteFile(path, []byte("mine"), 0o600); err != nil {
		return err
	}
	b, err := os.ReadFile(path)
	if err == nil && string(b) != "mine" {
		err = fmt.Errorf("read back %q", b)
	}
	return err
}

func adminToken(sock string) (string, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	resp, err := c.Get("http://box/admin/token")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %.200s", resp.Status, b)
	}
	return string(b), nil
}

func httpDo(method, url, token, body string) (int, string, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(b), nil
}

// huntTokens looks for MCP tokens other than mine in files named like
// credentials files, and in what every visible process's environment
// points at.
func huntTokens(mine string) []string {
	var found []string
	look := func(path string) {
		b, err := readSome(path)
		if err != nil {
			return
		}
		var c struct {
			MCPToken string `json:"mcp_token"`
		}
		if json.Unmarshal(b, &c) == nil && c.MCPToken != "" && c.MCPToken != mine {
			found = append(found, path+"="+c.MCPToken)
		}
	}
	for _, root := range []string{"/dev/shm", "/tmp", "/run", "/var/tmp"} {
		_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if d.IsDir() && strings.Count(path, "/") > 6 {
				return filepath.SkipDir
			}
			if !d.IsDir() && strings.HasSuffix(path, ".json") {
				look(path)
			}
			return nil
		})
	}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		env, err := os.ReadFile(filepath.Join("/proc", p.Name(), "environ"))
		if err != nil {
			continue
		}
		for _, kv := range strings.Split(string(env), "\x00") {
			if f, ok := strings.CutPrefix(kv, "LOWKEY_CREDENTIALS_FILE="); ok {
				look(f)
				look(filepath.Join("/proc", p.Name(), "root", f))
			}
		}
	}
	return found
}

type bearer struct{ tok string }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.tok)
	return http.DefaultTransport.RoundTrip(r)
}

func callTool(token, tool string, args map[string]any) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := mcp.NewClient(&mcp.Implementation{Name: "attacker", Version: "1"}, nil)
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: os.Getenv("LOWKEY_MCP_URL"), DisableStandaloneSSE: true,
		HTTPClient: &http.Client{Transport: bearer{token}}}, nil)
	if err != nil {
		return "", err
	}
	defer cs.Close()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		return "", err
	}
	var out strings.Builder
	for _, c := range res.Content {
		if t, ok := c.(*mcp.TextContent); ok {
			out.WriteString(t.Text)
		}
	}
	if res.IsError {
		return "", fmt.Errorf("%s", out.String())
	}
	return out.String(), nil
}
