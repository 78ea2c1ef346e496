package wsconn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

// writeTime bounds one write when ctx allows longer.
const writeTime = 10 * time.Second

// Send writes one message, by ctx's deadline and at most writeTime.
func (c *Conn) Send(ctx context.Context, b []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	deadline := time.Now().Add(writeTime)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.WS.SetWriteDeadline(deadline); err != nil {
		return err
	}
	return c.WS.WriteMessage(websocket.TextMessage, b)
}

// Recv reads one message, until ctx's deadline; ctx's end cuts the wait
// short (and ends the socket for reading: it is closing).
func (c *Conn) Recv(ctx context.Context) ([]byte, error) {
	dl, _ := ctx.Deadline()
	if err := c.WS.SetReadDeadline(dl); err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = c.WS.UnderlyingConn().SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	_, b, err := c.WS.ReadMessage()
	if err != nil && ctx.Err() != nil {
		return nil, fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	return b, err
}

// WriteJSON sends v as one message.
func (c *Conn) WriteJSON(ctx context.Context, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.Send(ctx, b)
}

// ReadJSON reads one message into v.
func (c *Conn) ReadJSON(ctx context.Context, v any) error {
	b, err := c.Recv(ctx)
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
func (p Pairing) Send(ctx context.Context, m *pairing.Message) error { return p.C.WriteJSON(ctx, m) }

// Recv implements pairing.Conn.
func (p Pairing) Recv(ctx context.Context) (*pairing.Message, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	b, err := p.C.Recv(ctx)
	if err != nil {
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return nil, errors.New("the other side closed the pairing connection")
		}
		return nil, err
	}
	return pairing.DecodeMessage(b)
}
