package sessions

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// What a worker's output may take, stated once.
const (
	// maxLine is the longest output line kept as one event; the rest of
	// a longer line is cut (the worker is still read, never blocked).
	maxLine = 64 << 10
	// maxOutput is the output of one turn or job kept in events and in
	// its reply; past it the rest is read and dropped, and the thread
	// says so.
	maxOutput = 1 << 20
	// maxHistory is the most of a conversation's past a new turn is
	// handed on stdin; older messages are left out.
	maxHistory = 256 << 10
)

// readLines calls line for every line of r, each cut at maxLine, until
// r ends. It reads everything, so a worker is never stuck on a full pipe.
func readLines(r io.Reader, line func(text string, cut bool)) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		chunk, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A longer line: keep its start, drop the rest of it.
			text := string(chunk)
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			line(text, true)
			if err != nil {
				return
			}
			continue
		}
		if len(chunk) > 0 {
			n := len(chunk)
			if chunk[n-1] == '\n' {
				n--
			}
			line(string(chunk[:n]), false)
		}
		if err != nil {
			return
		}
	}
}

// outputBudget counts what a turn or job has had kept of its output.
type outputBudget struct {
	used    int
	dropped int // bytes read and not kept
}

// take says whether a line of n bytes is still kept.
func (b *outputBudget) take(n int) bool {
	if b.used+n > maxOutput {
		b.dropped += n
		return false
	}
	b.used += n
	return true
}

func (b *outputBudget) note() string {
	return fmt.Sprintf("output truncated at %d MiB: %d more bytes were read and not kept", maxOutput>>20, b.dropped)
}

// recentHistory is the end of a conversation that fits maxHistory.
func recentHistory(h []historyItem) []historyItem {
	size := 0
	for i := len(h) - 1; i >= 0; i-- {
		size += len(h[i].Text) + 32
		if size > maxHistory {
			return h[i+1:]
		}
	}
	return h
}
