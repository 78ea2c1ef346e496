// Package cli runs a program's command tree the same way for both of the
// box's programs: kong parses it (flags before or after arguments, --help
// on every command, extra and missing arguments refused), a help command
// and shell completion come with it, and exit codes mean one thing.
//
// kong over ff: the commands here are a tree with subcommands under
// subcommands (devices revoke, secrets set, bench link), and kong derives
// that tree, its help and its completion from one struct per binary with
// typed flags (durations, sizes, enums) and environment defaults, where ff
// would have each level hand-build its flag set and dispatch.
package cli

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/alecthomas/kong"
	"github.com/willabides/kongplete"
)

// Exit codes, the same for every command of both programs.
const (
	ExitOK          = 0 // it did what was asked
	ExitFailed      = 1 // it could not (the message says why)
	ExitUsage       = 2 // the command line was wrong: unknown command or flag, missing or extra arguments
	ExitUnreachable = 3 // the box could not be reached (its hub is not running, or not at that address)
)

// ExitCodes is the paragraph each program's --help ends with.
const ExitCodes = `Exit codes: 0 done, 1 failed (the message says why), 2 wrong command line,
3 the box could not be reached.`

// Unreachable marks an error as "the other side is not there", exit 3.
type Unreachable struct{ Err error }

func (u *Unreachable) Error() string { return u.Err.Error() }
func (u *Unreachable) Unwrap() error { return u.Err }

// UsageError is a command line that parsed but makes no sense (a value out
// of range, two flags that exclude each other): exit 2, with the usage.
type UsageError struct{ Msg string }

func (u *UsageError) Error() string { return u.Msg }

// IO is where a command reads and writes; bound for every Run method.
type IO struct {
	In       io.Reader
	Out, Err io.Writer
}

// Common are the commands every program has: help, completion, version.
type Common struct {
	Help       Help       `cmd:"" help:"Show help for a command."`
	Completion Completion `cmd:"" help:"Print shell completion for bash, zsh or fish, to source from your shell's start-up."`
	Version    Version    `cmd:"" help:"Print the version."`
}

// Version is the "version" command.
type Version struct{}

// Run prints the program's name and version.
func (Version) Run(k *kong.Context, o *IO) error {
	_, err := fmt.Fprintln(o.Out, k.Model.Name, k.Model.Vars()["version"])
	return err
}

// Help is the "help [COMMAND...]" command.
type Help struct {
	Command []string `arg:"" optional:"" help:"The command to explain."`
}

// Run prints the help of the named command, the page "COMMAND --help"
// prints.
func (h *Help) Run(k *kong.Context) error {
	if _, err := k.Kong.Parse(append(h.Command, "--help")); err != nil {
		return &UsageError{Msg: fmt.Sprintf("no command %q: %v", strings.Join(h.Command, " "), err)}
	}
	return nil
}

// Completion is the "completion SHELL" command.
type Completion struct {
	Shell string `arg:"" enum:"bash,zsh,fish" help:"bash, zsh or fish."`
}

// scripts hand the shell's completion to the program itself (the
// COMP_LINE protocol kongplete answers).
var scripts = map[string]string{
	"bash": "complete -o default -C %[2]s %[1]s\n",
	"zsh":  "(( $+functions[compdef] )) || { autoload -U +X compinit && compinit }\nautoload -U +X bashcompinit && bashcompinit\ncomplete -o default -C %[2]s %[1]s\n",
	"fish": "function __complete_%[1]s\n    set -lx COMP_LINE (commandline -cp)\n    test -z (commandline -ct)\n    and set COMP_LINE \"$COMP_LINE \"\n    %[2]s\nend\ncomplete -f -c %[1]s -a \"(__complete_%[1]s)\"\n",
}

// quote makes path one word for the shell: single quotes, and a single
// quote inside written the way that shell reads it.
func quote(shell, path string) string {
	if shell == "fish" {
		return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(path) + "'"
	}
	return "'" + strings.ReplaceAll(path, "'", `'\''`) + "'"
}

// Run prints the script that gives this program completion in a shell.
func (c *Completion) Run(k *kong.Context, o *IO) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if self, err = filepath.Abs(self); err != nil {
		return err
	}
	_, err = fmt.Fprintf(o.Out, scripts[c.Shell], k.Model.Name, quote(c.Shell, self))
	return err
}

// exit is how kong's own exits (after --help, --version) unwind to Run.
type exit int

// Run parses args against grammar (a pointer to the program's command
// struct) and runs the chosen command, returning its exit code. Help and
// usage go to o.Out when asked for, and with an error to o.Err.
func Run(name, description string, grammar any, args []string, o IO, vars kong.Vars, extra ...any) (code int) {
	defer func() {
		if r := recover(); r != nil {
			e, ok := r.(exit)
			if !ok {
				panic(r)
			}
			code = int(e)
		}
	}()
	parser, err := kong.New(grammar,
		kong.Name(name),
		kong.Description(description),
		kong.Writers(o.Out, o.Err),
		kong.Exit(func(c int) { panic(exit(c)) }),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true, NoExpandSubcommands: false}),
		kong.Help(withExitCodes),
		vars,
		kong.Bind(&o),
	)
	if err != nil {
		// The grammar itself is wrong: a defect, not a user's mistake.
		panic(err)
	}
	if os.Getenv("COMP_LINE") != "" {
		kongplete.Complete(parser)
	}
	if len(args) == 0 {
		// No command: what there is to run, where errors go.
		parser.Stdout = o.Err
		ctx, err := kong.Trace(parser, nil)
		if err == nil {
			err = ctx.PrintUsage(false)
		}
		if err != nil {
			fmt.Fprintln(o.Err, err)
		}
		return ExitUsage
	}
	ctx, err := parser.Parse(args)
	if err != nil {
		return usageFailure(parser, err, o)
	}
	if err := ctx.Run(extra...); err != nil {
		var ue *UsageError
		if errors.As(err, &ue) {
			fmt.Fprintf(o.Err, "%s: %s\n\n", name, ue.Msg)
			ctx.Kong.Stdout = o.Err
			if perr := ctx.PrintUsage(true); perr != nil {
				fmt.Fprintln(o.Err, perr)
			}
			return ExitUsage
		}
		fmt.Fprintf(o.Err, "%s: %v\n", name, err)
		var un *Unreachable
		var op *net.OpError
		if errors.As(err, &un) || errors.As(err, &op) && op.Op == "dial" {
			return ExitUnreachable
		}
		return ExitFailed
	}
	return ExitOK
}

// usageFailure reports a command line kong refused, with the usage of the
// command it was for.
func usageFailure(parser *kong.Kong, err error, o IO) int {
	fmt.Fprintf(o.Err, "%s: %v\n", parser.Model.Name, err)
	var pe *kong.ParseError
	if errors.As(err, &pe) && pe.Context != nil {
		fmt.Fprintln(o.Err)
		parser.Stdout = o.Err
		if perr := pe.Context.PrintUsage(true); perr != nil {
			fmt.Fprintln(o.Err, perr)
		}
	}
	return ExitUsage
}

// withExitCodes is kong's help with the exit codes after it, on the
// program's own page.
func withExitCodes(options kong.HelpOptions, ctx *kong.Context) error {
	if err := kong.DefaultHelpPrinter(options, ctx); err != nil {
		return err
	}
	if options.Summary {
		return nil
	}
	_, err := fmt.Fprintf(ctx.Stdout, "\n%s\n", ExitCodes)
	return err
}

// Logger is a program's log on w: text lines people read, or with format
// "json" one JSON object a line for a log collector. LOWKEY_DEBUG set
// shows debug lines too.
func Logger(w io.Writer, format string) *slog.Logger {
	level := slog.LevelInfo
	if os.Getenv("LOWKEY_DEBUG") != "" {
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
