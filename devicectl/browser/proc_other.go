//go:build !unix

package browser

import "time"

func waitGone(int, time.Duration) {}
