package hub

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// The web port also carries ICE over TCP and the box's TURN relay, so a
// computer that can reach the box's web address can link: an ICE
// connection opens with a STUN message in RFC 4571 framing (two length
// bytes, then the STUN header, whose magic cookie sits at bytes 4..8 of
// the message: 6..10 of the connection); a TURN connection with a bare
// STUN message (the cookie at 4..8); anything else is the web app's (HTTP,
// or TLS).
var stunCookie = []byte{0x21, 0x12, 0xa4, 0x42}

// sniffWait is how long a new connection has to say what it is.
const sniffWait = 10 * time.Second

// maxPeerConns bounds the connections ICE and the relay each hold at once
// (a box's few computers need a handful); more are closed at once.
const maxPeerConns = 64

// portMux splits one listener into the web app's, ICE's and the relay's.
type portMux struct {
	ln             net.Listener
	web, ice, turn *chanListener
	once           sync.Once
}

func newPortMux(ln net.Listener) *portMux {
	m := &portMux{ln: ln, web: newChanListener(ln.Addr()), ice: newChanListener(ln.Addr()), turn: newChanListener(ln.Addr())}
	m.ice.limit, m.turn.limit = maxPeerConns, maxPeerConns
	// The web app's end closes the port; ICE's and the relay's only their
	// own side (a connection for one that is closed is closed).
	m.web.onClose = m.Close
	m.ice.onClose = func() error { m.ice.shut(); return nil }
	m.turn.onClose = func() error { m.turn.shut(); return nil }
	go m.serve()
	return m
}

func (m *portMux) serve() {
	for {
		c, err := m.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			m.Close()
			return
		}
		go m.route(c)
	}
}

// route reads the first bytes of a connection and hands it on, those
// bytes still to be read.
func (m *portMux) route(c net.Conn) {
	r := bufio.NewReaderSize(c, 4096)
	if err := c.SetReadDeadline(time.Now().Add(sniffWait)); err != nil {
		c.Close()
		return
	}
	head, _ := r.Peek(10)
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		c.Close()
		return
	}
	pc := &peekedConn{Conn: c, r: r}
	switch {
	case len(head) == 10 && bytes.Equal(head[6:10], stunCookie):
		m.ice.deliver(pc)
		return
	case len(head) == 10 && bytes.Equal(head[4:8], stunCookie):
		m.turn.deliver(pc)
		return
	}
	m.web.deliver(pc)
}

// Close stops the port for both.
func (m *portMux) Close() error {
	m.once.Do(func() {
		_ = m.ln.Close()
		m.web.shut()
		m.ice.shut()
		m.turn.shut()
	})
	return nil
}

type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// chanListener is a net.Listener fed connections by its portMux.
type chanListener struct {
	addr    net.Addr
	conns   chan net.Conn
	done    chan struct{}
	once    sync.Once
	onClose func() error
	// open counts the connections handed out and not yet closed, for
	// a listener with a limit.
	limit int
	open  atomic.Int64
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) deliver(c net.Conn) {
	if l.limit > 0 {
		if l.open.Add(1) > int64(l.limit) {
			l.open.Add(-1)
			c.Close()
			return
		}
		c = &countedConn{Conn: c, l: l}
	}
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	}
}

// countedConn gives its place back when closed.
type countedConn struct {
	net.Conn
	l    *chanListener
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) shut() { l.once.Do(func() { close(l.done) }) }

func (l *chanListener) Close() error { return l.onClose() }

func (l *chanListener) Addr() net.Addr { return l.addr }
