package sessions

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
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
	// maxSpill is the most output past maxOutput written to the log file
	// in the work directory.
	maxSpill = 256 << 20
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

// outputBudget counts what a turn or job has had kept of its output, and
// writes what is past it to a log file in the work directory.
type outputBudget struct {
	used    int
	dropped int // bytes read past the budget
	// spill opens the log file for the rest (nil: none is kept).
	spill   func() (io.WriteCloser, string, error)
	log     io.WriteCloser
	logName string
	logErr  error
	spilled int
}

// take says whether a line is still kept in events and the reply; one
// that is not goes to the log file.
func (b *outputBudget) take(line string) bool {
	n := len(line) + 1
	// Once a line has not fitted, none after it is kept either: the
	// output stays in order, the rest of it all in the log.
	if b.dropped == 0 && b.used+n <= maxOutput {
		b.used += n
		return true
	}
	b.dropped += n
	if b.log == nil && b.logErr == nil && b.spill != nil {
		b.log, b.logName, b.logErr = b.spill()
	}
	if b.log != nil && b.spilled+n <= maxSpill {
		if _, err := io.WriteString(b.log, line+"\n"); err != nil {
			b.logErr = err
			b.log.Close()
			b.log = nil
		} else {
			b.spilled += n
		}
	}
	return false
}

// close ends the log file, if one was opened.
func (b *outputBudget) close() error {
	if b.log == nil {
		return nil
	}
	err := b.log.Close()
	b.log = nil
	if err != nil && b.logErr == nil {
		b.logErr = err
	}
	return err
}

func (b *outputBudget) note() string {
	msg := fmt.Sprintf("output truncated at %d MiB: %d more bytes were read", maxOutput>>20, b.dropped)
	switch {
	case b.logName != "" && b.logErr == nil && b.spilled == b.dropped:
		return msg + ", all in " + b.logName + " in the work directory"
	case b.logName != "" && b.spilled > 0:
		return msg + fmt.Sprintf(", the first %d of them in %s in the work directory", b.spilled, b.logName)
	}
	return msg + " and not kept"
}

// spillTo makes the log file name in dir, a directory the agent may
// have changed: no symbolic link is followed anywhere on the way, and
// the file is new (a name the agent made first is not written through).
// own hands it to the agent's account.
func spillTo(dir, name string, own func(string) error) func() (io.WriteCloser, string, error) {
	return func() (io.WriteCloser, string, error) {
		path := filepath.Join(dir, name)
		fd, err := unix.Openat2(unix.AT_FDCWD, path, &unix.OpenHow{
			Flags:   unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_CLOEXEC,
			Mode:    0o600,
			Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
		})
		if err != nil {
			return nil, "", &os.PathError{Op: "create", Path: path, Err: err}
		}
		f := os.NewFile(uintptr(fd), path)
		if err := own(path); err != nil {
			f.Close()
			return nil, "", err
		}
		return f, name, nil
	}
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
