package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lowkeyhq/lowkey/errcode"
)

// noHub says why a request reached no hub, or nil when one answered and
// the error is the request's own.
func (c *Client) noHub(err error) error {
	_, statErr := os.Stat(c.Socket)
	if errors.Is(statErr, os.ErrPermission) || errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("the box's data directory (%s) is not this account's: run this as the account that runs the hub, or as root (sudo lowkey …)", filepath.Dir(c.Socket))
	}
	if statErr != nil || isRefused(err) {
		return fmt.Errorf("%w (no socket answers at %s): start one with \"lowkey hub\"", ErrNoHub, c.Socket)
	}
	return nil
}

// ErrNoHub means nothing answers on the socket.
var ErrNoHub = errors.New("no hub is running")

// Client talks to one hub over DIR/hub.sock.
type Client struct {
	Socket string
	http   *http.Client
}

// New returns a client for the socket path.
func New(socket string) *Client {
	return &Client{Socket: socket, http: &http.Client{
		Timeout: 60 * time.Second,
		// One call at a time from short-lived clients: no idle connection
		// is kept to outlive the client.
		Transport: &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}},
	}}
}

// Do calls method path and decodes the JSON answer into out.
func (c *Client) Do(method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = strings.NewReader(string(b))
	}
	req, err := http.NewRequest(method, "http://hub"+path, rd)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if nohub := c.noHub(err); nohub != nil {
			return nohub
		}
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return answerError(resp.Status, b)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

// answerError is the hub's refusal as it said it: an *errcode.Error with
// its code and words (callers test it with errors.As), or, from a hub that
// gave none, the status as a failure.
func answerError(status string, body []byte) error {
	var e struct {
		Error *errcode.Error `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != nil && e.Error.Code != "" && e.Error.Message != "" {
		return e.Error
	}
	return errcode.New(errcode.Failed, "the hub answered %s", status)
}

func isRefused(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// Download streams the answer to GET path into w.
func (c *Client) Download(path string, w io.Writer) error {
	req, err := http.NewRequest("GET", "http://hub"+path, nil)
	if err != nil {
		return err
	}
	hc := *c.http
	hc.Timeout = 0 // a large store takes as long as it takes
	resp, err := hc.Do(req)
	if err != nil {
		if nohub := c.noHub(err); nohub != nil {
			return nohub
		}
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if err != nil {
			return err
		}
		return answerError(resp.Status, b)
	}
	_, err = io.Copy(w, resp.Body)
	return err
}
