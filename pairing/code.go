package pairing

import (
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"time"

	"github.com/lowkeyhq/lowkey/errcode"
)

// Limits of a pairing window.
const (
	// WindowTTL is how long a fresh code is valid.
	WindowTTL = 5 * time.Minute
	// MaxWindowFailures wrong attempts close the window; the owner needs a new code.
	MaxWindowFailures = 20
	// MaxTotalFailures wrong attempts, across windows, lock pairing until the
	// owner reopens it from the box itself (the admin socket), not over HTTP.
	MaxTotalFailures = 100
)

// Errors a pairing attempt can meet before any key exchange. They reach
// the companion as the message of an "error" pairing message.
var (
	ErrNoWindow   = errcode.New(errcode.NoWindow, `no pairing window is open on the box: run "lowkey pair-code" there for a code`)
	ErrExpired    = errcode.New(errcode.Expired, `the pairing code expired: run "lowkey pair-code" on the box for a new one`)
	ErrBusy       = errcode.New(errcode.Busy, "another computer is pairing with the box right now: try again in a moment")
	ErrClosed     = errcode.New(errcode.Closed, "too many wrong codes (%d): this pairing window is closed; run \"lowkey pair-code\" on the box for a new code", MaxWindowFailures)
	ErrLocked     = errcode.New(errcode.Locked, "pairing is locked after %d wrong codes: the owner must reopen it on the box with \"lowkey pair-code\"", MaxTotalFailures)
	ErrWrongCode  = errcode.New(errcode.WrongCode, "the pairing code did not match: check the code shown by \"lowkey pair-code\" on the box (or someone is between this computer and the box)")
	ErrBadMessage = errors.New("malformed pairing message")
)

// NewCode returns a fresh 8-digit code, never a trivial one.
func NewCode() (string, error) {
	for {
		n, err := rand.Int(rand.Reader, big.NewInt(100_000_000))
		if err != nil {
			return "", err
		}
		digits := fmt.Sprintf("%08d", n.Int64())
		if !TrivialCode(digits) {
			return digits, nil
		}
	}
}

// TrivialCode reports codes a person might guess first: few distinct
// digits (00000000, 12121212) or a straight run (12345678, 98765432).
func TrivialCode(digits string) bool {
	distinct := map[rune]bool{}
	for _, r := range digits {
		distinct[r] = true
	}
	if len(distinct) < 4 {
		return true
	}
	up, down := true, true
	for i := 1; i < len(digits); i++ {
		d := (int(digits[i]) - int(digits[i-1]) + 10) % 10
		up = up && d == 1
		down = down && d == 9
	}
	return up || down
}

// FormatCode shows a code as people type it: 1234-5678.
func FormatCode(digits string) string {
	if len(digits) != 8 {
		return digits
	}
	return digits[:4] + "-" + digits[4:]
}

// NormalizeCode accepts "1234-5678", "1234 5678" or "12345678".
func NormalizeCode(s string) (string, error) {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == '-' || r == ' ':
		default:
			return "", fmt.Errorf("pairing code %q: only digits, like 1234-5678", s)
		}
	}
	if b.Len() != 8 {
		return "", fmt.Errorf("pairing code %q: it has 8 digits, like 1234-5678", s)
	}
	return b.String(), nil
}

// Window is the box's pairing window: at most one code, valid for a while,
// one exchange at a time, closed by too many failures.
type Window struct {
	mu       sync.Mutex
	code     string
	expires  time.Time
	failures int
	total    int
	locked   bool
	busy     bool
	now      func() time.Time
	// onFailures, if set, is told the running failure count so it can be
	// kept across restarts.
	onFailures func(total int, locked bool)
}

// NewWindow returns a closed window that starts from the given persisted
// failure count.
func NewWindow(totalFailures int, onFailures func(total int, locked bool)) *Window {
	return &Window{total: totalFailures, locked: totalFailures >= MaxTotalFailures, now: time.Now, onFailures: onFailures}
}

// Open starts a new window with a fresh code. fromBox says the owner asked
// on the box itself: only that reopens a locked pairing.
func (w *Window) Open(ttl time.Duration, fromBox bool) (code string, expires time.Time, err error) {
	if ttl <= 0 || ttl > WindowTTL {
		ttl = WindowTTL
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.locked && !fromBox {
		return "", time.Time{}, ErrLocked
	}
	if w.locked {
		w.locked, w.total = false, 0
		w.notify()
	}
	code, err = NewCode()
	if err != nil {
		return "", time.Time{}, err
	}
	w.code, w.expires, w.failures = code, w.now().Add(ttl), 0
	return code, w.expires, nil
}

// Close ends the window without a new code.
func (w *Window) Close() {
	w.mu.Lock()
	w.code = ""
	w.mu.Unlock()
}

// Attempt is one exchange holding the window.
type Attempt struct {
	w    *Window
	code string
	done bool
}

// Begin claims the window for one exchange.
func (w *Window) Begin() (*Attempt, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.locked:
		return nil, ErrLocked
	case w.code == "" && w.failures >= MaxWindowFailures:
		return nil, ErrClosed
	case w.code == "":
		return nil, ErrNoWindow
	case w.now().After(w.expires):
		return nil, ErrExpired
	case w.busy:
		return nil, ErrBusy
	}
	w.busy = true
	return &Attempt{w: w, code: w.code}, nil
}

// Code is the secret the exchange runs on.
func (a *Attempt) Code() string { return a.code }

// Abandon releases the window without counting a guess: the peer left
// before it learned anything about the code.
func (a *Attempt) Abandon() { a.finish(false, false) }

// Fail counts a wrong guess.
func (a *Attempt) Fail() { a.finish(true, false) }

// Succeed uses the code up: one code pairs one computer.
func (a *Attempt) Succeed() { a.finish(false, true) }

func (a *Attempt) finish(failed, ok bool) {
	w := a.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if a.done {
		return
	}
	a.done = true
	w.busy = false
	if ok {
		w.code = ""
		return
	}
	if !failed {
		return
	}
	w.failures++
	w.total++
	if w.failures >= MaxWindowFailures {
		w.code = ""
	}
	if w.total >= MaxTotalFailures {
		w.locked, w.code = true, ""
	}
	w.notify()
}

func (w *Window) notify() {
	if w.onFailures != nil {
		w.onFailures(w.total, w.locked)
	}
}

// Current is the open window's code, for the owner's pages to show; ok
// is false when no code can pair now.
func (w *Window) Current() (code string, expires time.Time, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.code == "" || !w.now().Before(w.expires) {
		return "", time.Time{}, false
	}
	return w.code, w.expires, true
}

// State reports the window for display.
func (w *Window) State() (open bool, expires time.Time, failures, total int, locked bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.code != "" && w.now().Before(w.expires), w.expires, w.failures, w.total, w.locked
}
