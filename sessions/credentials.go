package sessions

// How a turn gets what it may use: its MCP token and the box's secrets, in a
// private file, never on a command line or in the environment.

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	agentpkg "github.com/lowkeyhq/lowkey/sessions/agent"
)

// boxSecretDir makes this box's own directory for credential files under
// base, named after its BoxID, and empties it: files a box that
// died (kill -9, power loss) could not remove go at its next start.
// Another box's directory is never touched. "" means none could be made.
func (r *Runtime) boxSecretDir(base string) string {
	key := r.cfg.BoxID
	if key == "" {
		key, _ = filepath.Abs(r.cfg.WorkDir)
	}
	sum := sha256.Sum256([]byte(key))
	dir := filepath.Join(base, "lowkey-box-"+hex.EncodeToString(sum[:8]))
	_ = os.RemoveAll(dir)
	err := os.Mkdir(dir, 0o700)
	if err == nil {
		err = ownedPrivateDir(dir)
	}
	if err != nil {
		// Someone else holds the name: a fresh directory of our own.
		if d, terr := os.MkdirTemp(base, "lowkey-box-"); terr == nil {
			r.log.Warn("credentials directory taken; using a fresh one", "dir", dir, "err", err, "using", d)
			return d
		}
		r.log.Warn("no private credentials directory; credentials files go straight under "+base, "err", err)
		return ""
	}
	return dir
}

// ownedPrivateDir checks dir is a real directory of this user's, 0700.
func ownedPrivateDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || fi.Mode().Perm() != 0o700 || !ok || int(st.Uid) != os.Getuid() {
		return fmt.Errorf("%s is not a private directory of this user", dir)
	}
	return nil
}

// mintToken makes the MCP token of one turn or job.
func (r *Runtime) mintToken(session string) string {
	tok := rand.Text() + rand.Text()
	r.mu.Lock()
	r.byTok[tok] = session
	r.mu.Unlock()
	return tok
}

// dropToken ends a token: its turn or job is over.
func (r *Runtime) dropToken(tok string) {
	r.mu.Lock()
	delete(r.byTok, tok)
	r.mu.Unlock()
}

// Runtimes are the names a secret may be given to ("all" besides).
var Runtimes = append([]string{"builtin", "openai", "exec"}, agentpkg.PresetNames()...)

// runtimeName is the runtime a session's secrets are chosen by.
func runtimeName(agent string) string {
	if strings.HasPrefix(agent, "exec:") {
		return "exec"
	}
	return agent
}

// credentials is the content of a worker's credentials file.
func credentials(token string, secrets map[string]string) ([]byte, error) {
	if secrets == nil {
		secrets = map[string]string{}
	}
	b, err := json.Marshal(map[string]any{"mcp_token": token, "secrets": secrets})
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	return append(b, '\n'), nil
}

// SessionForToken maps an MCP token to its session, while the turn or
// job it was made for runs.
func (r *Runtime) SessionForToken(tok string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	id, ok := r.byTok[tok]
	return id, ok
}
