package hub

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/lowkeyhq/lowkey/devicectl"
	"github.com/lowkeyhq/lowkey/errcode"
	"github.com/lowkeyhq/lowkey/pages"
)

// Every input's size and time, stated once.
const (
	// maxBody bounds a request body (JSON calls), before anything else
	// reads it: sign-in and setup included.
	maxBody = 1 << 20
	// maxPageBody bounds a page's upload (its tar, with headers).
	maxPageBody = pages.MaxTotalBytes + 4<<20
	// bodyTime is how long a client has to send a body (Config.BodyTimeout
	// changes it).
	bodyTime = 30 * time.Second
	// pageBodyTime is the same for a page's upload.
	pageBodyTime = 5 * time.Minute
	// headerTime is how long a client has to send its request headers.
	headerTime = 10 * time.Second
	// maxHeaderBytes bounds the request line and headers.
	maxHeaderBytes = 64 << 10
	// idleTime closes a kept-alive connection that sends nothing.
	idleTime = 2 * time.Minute
	// maxWSMessage bounds one message a browser or companion sends on a
	// WebSocket (signaling, events, live): none needs more.
	maxWSMessage = 1 << 20
	// maxDeviceCalls is how many actions one computer runs at once; more
	// are refused (429) rather than queued without end.
	maxDeviceCalls = 8
	// maxSessionCalls is how many device actions one conversation has in
	// flight at once, on all its computers.
	maxSessionCalls = 8
	// maxEchoBytes bounds sys.echo, a benchmark of the link.
	maxEchoBytes = devicectl.MaxEcho
	// loginsPerMinute is how many sign-ins a name, or an address, may try
	// in a minute, counted before the password is checked.
	loginsPerMinute = 10
	// maxLoginKeys bounds the limiter's memory: names and addresses it
	// remembers at once.
	maxLoginKeys = 4096
	// passwordChecks is how many passwords are checked at once: bcrypt
	// takes a core for tens of milliseconds, and the box has other work.
	passwordChecks = 1
	// bigEchoes is how many sys.echo calls over 64 KiB run at once on the
	// box: a benchmark must not crowd out the calls people make.
	bigEchoes = 1
)

// newServer is an HTTP server with the box's header and idle limits.
func newServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: headerTime, IdleTimeout: idleTime, MaxHeaderBytes: maxHeaderBytes}
}

// limitBody bounds every request's body in size and in time before any
// handler sees it. The time limit ends once the body is read: a handler
// that then waits (a confirmation, a long action) is not cut off.
func (h *Hub) limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		size, limit := int64(maxBody), h.cfg.BodyTimeout
		if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/api/v1/sessions/") && strings.HasSuffix(r.URL.Path, "/pages") {
			size, limit = maxPageBody, pageBodyTime
		}
		if r.ContentLength > size {
			fail(w, errcode.TooLarge, "the request body is too large")
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			rc := http.NewResponseController(w)
			if err := rc.SetReadDeadline(time.Now().Add(limit)); err == nil {
				r.Body = &timedBody{ReadCloser: http.MaxBytesReader(w, r.Body, size), rc: rc}
			} else {
				r.Body = http.MaxBytesReader(w, r.Body, size)
			}
		}
		next.ServeHTTP(w, r)
	})
}

// timedBody lifts the read deadline once the body is read.
type timedBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	done bool
}

func (b *timedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	// Only a body read to its end lifts the limit: after a timeout the
	// server still drains what is left, and must not wait for it.
	if errors.Is(err, io.EOF) && !b.done {
		b.done = true
		if derr := b.rc.SetReadDeadline(time.Time{}); derr != nil {
			return n, errors.Join(err, derr)
		}
	}
	return n, err
}

// bodyError answers a body that could not be read in full: too large,
// too slow, or cut off.
func bodyError(w http.ResponseWriter, err error) bool {
	var mbe *http.MaxBytesError
	var ne net.Error
	switch {
	case errors.As(err, &mbe):
		fail(w, errcode.TooLarge, "the request body is too large")
	case errors.As(err, &ne) && ne.Timeout():
		fail(w, errcode.TooSlow, "the request body did not arrive in time")
	default:
		return false
	}
	return true
}

// checkEcho refuses a sys.echo larger than the box allows, and says its
// size.
func checkEcho(args json.RawMessage) (int, error) {
	var a struct {
		Bytes int `json:"bytes"`
	}
	if len(args) > 0 && json.Unmarshal(args, &a) != nil {
		return 0, errors.New("sys.echo takes {\"bytes\": N}")
	}
	if a.Bytes < 0 || a.Bytes > maxEchoBytes {
		return 0, fmt.Errorf("sys.echo: bytes must be between 0 and %d", maxEchoBytes)
	}
	return a.Bytes, nil
}

// sessionCalls counts each conversation's device actions in flight.
type sessionCalls struct {
	mu sync.Mutex
	n  map[string]int
}

var errSessionBusy = fmt.Errorf("this conversation already has %d device actions running: wait for one to finish", maxSessionCalls)

// take holds a place for one action of session, or refuses.
func (c *sessionCalls) take(session string) (release func(), err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	if c.n[session] >= maxSessionCalls {
		return nil, errSessionBusy
	}
	c.n[session]++
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.n[session]--; c.n[session] == 0 {
			delete(c.n, session)
		}
	}, nil
}
