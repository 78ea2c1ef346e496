package wsconn

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// A wait for a message ends when its context does, with the socket still
// open and the other side silent; a message that arrives in time is read.
func TestRecvEndsWithItsContext(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		c := New(ws, 1<<10)
		if err := c.Send(r.Context(), []byte("first")); err != nil {
			t.Error(err)
		}
		<-release // then silent, the socket open
	}))
	defer srv.Close()
	defer close(release)
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	c := New(ws, 1<<10)
	defer c.Close()
	if b, err := c.Recv(context.Background()); err != nil || string(b) != "first" {
		t.Fatalf("the first message: %q %v", b, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan error, 1)
	go func() { _, err := c.Recv(ctx); got <- err }()
	cancel()
	select {
	case err := <-got:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Recv after its context ended: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Recv still waits after its context ended")
	}
}
