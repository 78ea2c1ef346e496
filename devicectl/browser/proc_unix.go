//go:build unix

package browser

import (
	"syscall"
	"time"
)

// waitGone waits for a killed browser to be reaped.
func waitGone(pid int, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for pid > 0 && time.Now().Before(deadline) {
		if err := syscall.Kill(pid, 0); err != nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
