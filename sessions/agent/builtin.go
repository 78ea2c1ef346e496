package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Help is what the built-in agent understands.
const Help = `I am the built-in agent: no model, a few plain commands.
  open URL [on COMPUTER]     open a page in that computer's browser (browser access must be on)
  snapshot [on COMPUTER]     what is on the page, with element refs
  screenshot [on COMPUTER]   a screenshot of the page
  run COMMAND                run a shell command on the box and show its output
  start COMMAND              start a shell command as a job and carry on
  confirm QUESTION           ask you a yes/no question
  think SECONDS              stay quiet that long (a nudge wakes me)
  allocate MiB               hold that much memory (to see the session's budget at work)
  publish DIR                publish a directory of static files as a page (no script runs there)
  echo TEXT                  say TEXT back`

type device struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Online  bool   `json:"online"`
	Browser bool   `json:"browser"`
	Desktop bool   `json:"desktop"`
}

var onComputer = regexp.MustCompile(`(?i)\s+on\s+(?:my\s+|the\s+)?(\S+)\s*$`)

func (w *worker) builtin(ctx context.Context) (string, error) {
	msg := strings.TrimSpace(w.in.Message)
	verb, rest, _ := strings.Cut(msg, " ")
	rest = strings.TrimSpace(rest)
	switch strings.ToLower(verb) {
	case "open", "navigate", "go":
		target := ""
		if m := onComputer.FindStringSubmatch(rest); m != nil {
			target, rest = m[1], strings.TrimSpace(rest[:len(rest)-len(m[0])])
		}
		if rest == "" {
			return "", fmt.Errorf("open what? Say: open https://example.com on my laptop")
		}
		d, err := w.pickDevice(ctx, target, "browser")
		if err != nil {
			return "", err
		}
		res, err := w.device(ctx, d, "browser.navigate", map[string]string{"url": rest})
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("Opened %q (%v) on %s.", res["title"], res["url"], d.Name), nil
	case "snapshot":
		d, err := w.pickDevice(ctx, trailingComputer(rest), "browser")
		if err != nil {
			return "", err
		}
		res, err := w.device(ctx, d, "browser.snapshot", map[string]int{"max_chars": 4000})
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%v on %s:\n%v", res["title"], d.Name, res["snapshot"]), nil
	case "screenshot":
		d, err := w.pickDevice(ctx, trailingComputer(rest), "browser")
		if err != nil {
			return "", err
		}
		res, err := w.device(ctx, d, "browser.screenshot", map[string]any{"max_edge": 1024, "format": "jpeg"})
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("Took a %vx%v screenshot of %v on %s.", res["width"], res["height"], res["url"], d.Name), nil
	case "run", "start":
		if rest == "" {
			return "", fmt.Errorf("%s what? Say: %s ls -l", verb, verb)
		}
		wait := 30
		if strings.EqualFold(verb, "start") {
			wait = 0
		}
		out, err := w.call(ctx, "shell.run", map[string]any{"command": rest, "wait_seconds": wait})
		if err != nil {
			return "", err
		}
		var j struct {
			ID         string `json:"id"`
			Status     string `json:"status"`
			Signal     string `json:"signal"`
			StdoutTail string `json:"stdout_tail"`
			StderrTail string `json:"stderr_tail"`
			ExitCode   *int   `json:"exit_code"`
		}
		_ = json.Unmarshal([]byte(out), &j)
		if j.Status == "running" {
			return fmt.Sprintf("Started job %s: %s", j.ID, rest), nil
		}
		code := "?"
		if j.ExitCode != nil {
			code = strconv.Itoa(*j.ExitCode)
		}
		if j.Signal != "" {
			code = j.Signal
		}
		return fmt.Sprintf("Job %s %s (%s):\n%s%s", j.ID, j.Status, code, j.StdoutTail, j.StderrTail), nil
	case "confirm", "ask":
		out, err := w.call(ctx, "confirm", map[string]any{"question": rest})
		if err != nil {
			return "", err
		}
		var a struct{ Answer string }
		_ = json.Unmarshal([]byte(out), &a)
		return "You answered " + a.Answer + ".", nil
	case "think", "wait":
		secs, _ := strconv.Atoi(rest)
		if secs <= 0 {
			secs = 30
		}
		w.say("thinking…")
		if w.waitOrNudge(time.Duration(secs) * time.Second) {
			w.say("nudged: carrying on")
			return "Done, after a nudge.", nil
		}
		return "Done thinking.", nil
	case "allocate":
		mib, err := strconv.Atoi(strings.TrimSuffix(strings.ToLower(rest), "mib"))
		if err != nil || mib <= 0 {
			return "", fmt.Errorf("allocate how many MiB? Say: allocate 100")
		}
		held := make([][]byte, 0, mib)
		for i := range mib {
			b := make([]byte, 1<<20)
			for j := 0; j < len(b); j += 4096 {
				b[j] = byte(i)
			}
			held = append(held, b)
		}
		return fmt.Sprintf("Holding %d MiB.", len(held)), nil
	case "publish":
		out, err := w.call(ctx, "pages.publish", map[string]any{"dir": rest})
		if err != nil {
			return "", err
		}
		var pg struct {
			URL   string   `json:"url"`
			Files []string `json:"files"`
		}
		_ = json.Unmarshal([]byte(out), &pg)
		return fmt.Sprintf("Published %d files: %s", len(pg.Files), pg.URL), nil
	case "echo":
		return rest, nil
	}
	return Help, nil
}

func trailingComputer(rest string) string {
	if m := onComputer.FindStringSubmatch(" " + rest); m != nil {
		return m[1]
	}
	return ""
}

// genericComputer are the words that name no computer in particular.
var genericComputer = map[string]bool{"laptop": true, "computer": true, "desktop": true, "machine": true, "pc": true, "mac": true}

// pickDevice chooses the computer: by name when given, else the only one
// with the toggle on.
func (w *worker) pickDevice(ctx context.Context, name, toggle string) (device, error) {
	out, err := w.call(ctx, "device.list", map[string]any{})
	if err != nil {
		return device{}, err
	}
	var list struct {
		Devices []device `json:"devices"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		return device{}, fmt.Errorf("the box's device list did not read: %w", err)
	}
	var fit, named []device
	for _, d := range list.Devices {
		on := (toggle == "browser" && d.Browser) || (toggle == "desktop" && d.Desktop)
		if name != "" && (strings.EqualFold(d.Name, name) || strings.EqualFold(d.ID, name)) {
			// Named: ask anyway, and let the box say no if the toggle is off.
			return d, nil
		}
		// "my laptop" for a computer called demo-laptop or Ada's Laptop.
		if name != "" && strings.Contains(strings.ToLower(d.Name), strings.ToLower(name)) {
			named = append(named, d)
		}
		if on {
			fit = append(fit, d)
		}
	}
	switch {
	case len(named) == 1:
		return named[0], nil
	case len(named) > 1:
		return device{}, fmt.Errorf("several computers are called like %q: say which by its whole name", name)
	case name != "" && !genericComputer[strings.ToLower(name)]:
		return device{}, fmt.Errorf("no computer called %q is paired with this box", name)
	}
	// No name, or "my laptop": the one computer whose toggle is on.
	switch {
	case len(fit) == 1:
		return fit[0], nil
	case len(fit) > 1:
		return device{}, fmt.Errorf("several computers have %s access on; say which: on NAME", toggle)
	}
	return device{}, fmt.Errorf("no computer has %s access on in this conversation: turn it on first", toggle)
}

func (w *worker) device(ctx context.Context, d device, action string, args any) (map[string]any, error) {
	raw, _ := json.Marshal(args)
	out, err := w.call(ctx, "device.action", map[string]any{"device": d.ID, "action": action, "args": json.RawMessage(raw)})
	if err != nil {
		return nil, err
	}
	var res struct {
		Result map[string]any `json:"result"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		return nil, err
	}
	return res.Result, nil
}
