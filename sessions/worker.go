package sessions

// The worker a turn or job runs: its command line, its directory, its environment.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	agentpkg "github.com/lowkeyhq/lowkey/sessions/agent"
)

// workDir is a session's working directory, the agent account's, made
// again if an agent removed it.
func (r *Runtime) workDir(id string) string {
	dir := filepath.Join(r.cfg.WorkDir, id)
	if err := os.MkdirAll(dir, 0o700); err == nil {
		if err := r.cfg.Boundary.Own(dir); err != nil {
			r.log.Warn("could not hand a session's work directory to the agent account", "dir", dir, "err", err)
		}
	}
	return dir
}

// home is the workers' HOME: the agent account's own, kept across turns,
// or the session's work directory when there is none.
func (r *Runtime) home(work string) string {
	if h := r.cfg.Boundary.Home(); h != "" {
		return h
	}
	return work
}

// workerEnv is the clean environment of every turn and job: nothing of
// the box's own leaks in.
func (r *Runtime) workerEnv(work string, extra ...string) []string {
	env := []string{"PATH=" + r.path(), "HOME=" + r.home(work), "LANG=C.UTF-8"}
	if u := r.cfg.Boundary.User(); u != "" {
		env = append(env, "USER="+u, "LOGNAME="+u)
	}
	return append(env, extra...)
}

// workerCommand is the program and arguments of a session's runtime, and
// whether it is the box's own program (the built-in agents).
func (r *Runtime) workerCommand(agent string) (argv []string, own bool, err error) {
	switch {
	case agent == "builtin" || agent == "openai" || agentpkg.Presets[agent] != nil:
		if r.cfg.WorkerBin == "" {
			return nil, false, errors.New("no worker binary configured")
		}
		return []string{r.cfg.WorkerBin, "agent", agent}, true, nil
	case strings.HasPrefix(agent, "exec:"):
		line := strings.TrimPrefix(agent, "exec:")
		if argv := plainCommand(line, r.path()); argv != nil {
			return argv, false, nil
		}
		return []string{"/bin/sh", "-c", line}, false, nil
	}
	return nil, false, fmt.Errorf("unknown agent runtime %q", agent)
}

// plainCommand splits a command line the shell would only split on
// spaces (no quotes, variables, globs, redirections or builtins) into
// its words, so it can run without a shell in between, as make does.
// Anything else returns nil and goes through /bin/sh -c.
func plainCommand(line, path string) []string {
	for _, c := range line {
		ok := c == ' ' || c == '/' || c == '.' || c == '_' || c == '-' || c == ',' || c == ':' || c == '+' || c == '@' || c == '%' || c == '=' ||
			'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if !ok {
			return nil
		}
	}
	argv := strings.Fields(line)
	if len(argv) == 0 || strings.Contains(argv[0], "=") || shellBuiltins[argv[0]] {
		return nil
	}
	found := lookPath(path, argv[0])
	if found == "" {
		return nil // the shell's "not found" message says it best
	}
	argv[0] = found
	return argv
}

// workerPath is the PATH turns and jobs get when the box names none: the
// system's directories.
const workerPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// path is the PATH every turn and job gets: the box's --agent-path, else
// the system's directories.
func (r *Runtime) path() string {
	if r.cfg.AgentPath != "" {
		return r.cfg.AgentPath
	}
	return workerPath
}

// lookPath finds a program on path the way the worker's shell would.
func lookPath(path, name string) string {
	if strings.Contains(name, "/") {
		if syscall.Access(name, 1) == nil {
			return name
		}
		return ""
	}
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && syscall.Access(p, 1) == nil {
			return p
		}
	}
	return ""
}

// shellBuiltins are the words a shell runs itself, not as a program.
var shellBuiltins = map[string]bool{
	".": true, ":": true, "alias": true, "break": true, "cd": true, "command": true, "continue": true,
	"eval": true, "exec": true, "exit": true, "export": true, "getopts": true, "hash": true, "local": true,
	"read": true, "readonly": true, "return": true, "set": true, "shift": true, "source": true, "times": true,
	"trap": true, "type": true, "ulimit": true, "umask": true, "unalias": true, "unset": true, "wait": true,
	"if": true, "then": true, "else": true, "elif": true, "fi": true, "case": true, "esac": true, "for": true,
	"while": true, "until": true, "do": true, "done": true, "function": true, "select": true,
}

// agentBin is the environment that names a preset's CLI when the box was
// given its path (--agent-bin claude=/opt/claude/bin/claude).
func (r *Runtime) agentBin(agent string) []string {
	if p := r.cfg.AgentBins[agent]; p != "" {
		return []string{agentpkg.BinEnv + "=" + p}
	}
	return nil
}

// presetBin is where a preset's CLI is on this box, "" when nowhere.
func (r *Runtime) presetBin(p *agentpkg.Preset) string {
	if path := r.cfg.AgentBins[p.Name]; path != "" {
		return lookPath("", path)
	}
	return lookPath(r.path(), p.Bin)
}

// AgentInfo is one agent a session may run, as the web app offers it.
type AgentInfo struct {
	Name      string `json:"name"`
	Label     string `json:"label"`
	Available bool   `json:"available"`
	// Why it is not (a CLI not installed), or what it needs (its key).
	Note string `json:"note,omitempty"`
}

// Agents are the runtimes and presets a session may use, and whether this
// box has what each needs to run.
func (r *Runtime) Agents() []AgentInfo {
	out := []AgentInfo{
		{Name: "builtin", Label: "Built-in (no model: commands and the browser by rule)", Available: true},
		{Name: "openai", Label: "OpenAI-compatible model", Available: true, Note: "needs the box secret OPENAI_API_KEY (and OPENAI_BASE_URL for another server)"},
	}
	for _, name := range agentpkg.PresetNames() {
		p := agentpkg.Presets[name]
		a := AgentInfo{Name: name, Label: p.Label, Available: r.presetBin(p) != ""}
		if a.Available {
			a.Note = "needs the box secret " + strings.Join(p.Keys, " or ")
		} else {
			a.Note = p.Bin + " is not installed on the box: npm install -g " + p.Package + ", or start the hub with --agent-path DIR or --agent-bin " + p.Name + "=PATH"
		}
		out = append(out, a)
	}
	return out
}
