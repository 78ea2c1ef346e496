package wsconn

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/lowkeyhq/lowkey/pairing"
)

// Conn is one WebSocket with one writer at a time.
type Conn struct {
	WS  *websocket.Conn
	wmu sync.Mutex
}

// New wraps ws and bounds the size of what it reads.
func New(ws *websocket.Conn, readLimit int64) *Conn {
	ws.SetReadLimit(readLimit)
	return &Conn{WS: ws}
}

// Send writes one binary message.
func (c *Conn) Send(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.WS.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return c.WS.WriteMessage(websocket.TextMessage, b)
}

// Recv reads one message.
func (c *Conn) Recv() ([]byte, error) {
	_, b, err := c.WS.ReadMessage()
	return b, err
}

// WriteJSON sends v as one message.
func (c *Conn) WriteJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.Send(b)
}

// ReadJSON reads one message into v, within timeout.
func (c *Conn) ReadJSON(v any, timeout time.Duration) error {
	_ = c.WS.SetReadDeadline(time.Now().Add(timeout))
	defer c.WS.SetReadDeadline(time.Time{})
	b, err := c.Recv()
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// Close sends a close frame and closes the socket.
func (c *Conn) Close() error {
	c.wmu.Lock()
	_ = c.WS.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	c.wmu.Unlock()
	return c.WS.Close()
}

// Pairing adapts the socket to pairing.Conn.
type Pairing struct{ C *Conn }

// Send implements pairing.Conn.
func (p Pairing) Send(_ context.Context, m *pairing.Message) error { return p.C.WriteJSON(m) }

// Recv implements pairing.Conn.
func (p Pairing) Recv(ctx context.Context) (*pairing.Message, error) {
	deadline := time.Now().Add(30 * time.Second)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = p.C.WS.SetReadDeadline(deadline)
	b, err := p.C.Recv()
	if err != nil {
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return nil, errors.New("the other side closed the pairing connection")
		}
		return nil, err
	}
	return pairing.DecodeMessage(b)
}
