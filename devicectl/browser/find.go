package browser

import (
	"os/exec"

	"github.com/go-rod/rod/lib/launcher"
)

// Find returns the browser to drive: the given name or path when it is an
// executable, else the first Chrome, Chromium or Edge installed where this
// system puts them (rod's list: the usual names on the PATH on Linux, the
// application bundles on macOS, Program Files and the user's AppData on
// Windows). It never downloads one. "" means none was found.
func Find(given string) string {
	if given != "" {
		if p, err := exec.LookPath(given); err == nil {
			return p
		}
		return ""
	}
	if p, ok := launcher.LookPath(); ok {
		return p
	}
	return ""
}
