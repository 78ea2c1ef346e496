package sessions

import (
	"slices"
	"testing"
)

// A simple exec: line runs its program directly; anything the shell
// would treat specially still goes through the shell, unchanged.
func TestExecRuntimeUsesTheShellOnlyWhenNeeded(t *testing.T) {
	r := &Runtime{}
	cases := map[string][]string{
		"exec:/bin/echo hello  world": {"/bin/echo", "hello", "world"},
		"exec:cat":                    {"/usr/bin/cat"},
		"exec:echo $HOME":             {"/bin/sh", "-c", "echo $HOME"},
		"exec:ls *.go":                {"/bin/sh", "-c", "ls *.go"},
		"exec:echo 'a b'":             {"/bin/sh", "-c", "echo 'a b'"},
		"exec:cd /tmp":                {"/bin/sh", "-c", "cd /tmp"},
		"exec:FOO=1 env":              {"/bin/sh", "-c", "FOO=1 env"},
		"exec:no-such-program-here":   {"/bin/sh", "-c", "no-such-program-here"},
		"exec:echo a; echo b":         {"/bin/sh", "-c", "echo a; echo b"},
		"exec:echo a > f":             {"/bin/sh", "-c", "echo a > f"},
		"exec:echo ~":                 {"/bin/sh", "-c", "echo ~"},
	}
	for agent, want := range cases {
		cmd, err := r.workerCommand(agent)
		if err != nil {
			t.Fatal(agent, err)
		}
		got := append([]string{cmd.Path}, cmd.Args[1:]...)
		if !slices.Equal(got, want) {
			t.Errorf("%s runs %q, want %q", agent, got, want)
		}
	}
}
