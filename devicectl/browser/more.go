package browser

import (
	"context"
	"encoding/json"
	"time"

	"github.com/go-rod/rod"
	"github.com/go-rod/rod/lib/proto"

	"github.com/lowkeyhq/lowkey/devicectl"
	"github.com/lowkeyhq/lowkey/errcode"
)

// drag presses on one element (or point), moves in steps as a hand would,
// and lets go on another.
func (b *Browser) drag(ctx context.Context, args json.RawMessage) (*devicectl.Result, error) {
	var a struct {
		From      target `json:"from"`
		To        target `json:"to"`
		TimeoutMS int    `json:"timeout_ms"`
	}
	if err := devicectl.DecodeArgs(args, &a); err != nil {
		return nil, err
	}
	a.From.TimeoutMS, a.To.TimeoutMS = a.TimeoutMS, a.TimeoutMS
	p, err := b.current(ctx)
	if err != nil {
		return nil, err
	}
	from, _, err := b.spot(ctx, p, a.From, true)
	if err != nil {
		return nil, err
	}
	bf := b.before(p)
	if err := p.Mouse.MoveTo(from); err != nil {
		return nil, err
	}
	if err := p.Mouse.Down(proto.InputMouseButtonLeft, 1); err != nil {
		return nil, err
	}
	// The target is found with the button held: it may only appear then.
	to, _, err := b.spot(ctx, p, a.To, false)
	if err != nil {
		_ = p.Mouse.Up(proto.InputMouseButtonLeft, 1)
		return nil, err
	}
	if err := p.Mouse.MoveLinear(to, 10); err != nil {
		_ = p.Mouse.Up(proto.InputMouseButtonLeft, 1)
		return nil, err
	}
	if err := p.Mouse.Up(proto.InputMouseButtonLeft, 1); err != nil {
		return nil, err
	}
	b.settle(p)
	return devicectl.JSONResult(b.changes(p, bf))
}

// spot is where a target is on the page, an element checked to take the
// pointer first.
func (b *Browser) spot(ctx context.Context, p *rod.Page, t target, needEnabled bool) (proto.Point, string, error) {
	switch {
	case t.Ref != "":
		_, pt, via, err := b.reach(ctx, p, t.Ref, t.limit(), needEnabled)
		return pt, via, err
	case t.X != nil && t.Y != nil:
		return proto.Point{X: *t.X, Y: *t.Y}, "", nil
	}
	return proto.Point{}, "", errcode.New(errcode.BadArgs, "give a ref from a snapshot, or x and y")
}

// resize sets the window's size, as the page sees it (its layout, its
// screenshots).
func (b *Browser) resize(ctx context.Context, args json.RawMessage) (*devicectl.Result, error) {
	var a struct {
		Width  int `json:"width"`
		Height int `json:"height"`
	}
	if err := devicectl.DecodeArgs(args, &a); err != nil {
		return nil, err
	}
	if a.Width < 200 || a.Height < 200 || a.Width > 4096 || a.Height > 4096 {
		return nil, errcode.New(errcode.BadArgs, "width and height are 200 to 4096 CSS pixels")
	}
	p, err := b.current(ctx)
	if err != nil {
		return nil, err
	}
	if err := p.SetViewport(&proto.EmulationSetDeviceMetricsOverride{Width: a.Width, Height: a.Height, DeviceScaleFactor: 1}); err != nil {
		return nil, err
	}
	res, err := p.Eval(`() => [innerWidth, innerHeight]`)
	if err != nil {
		return nil, err
	}
	var wh [2]int
	if err := json.Unmarshal([]byte(res.Value.JSON("", "")), &wh); err != nil {
		return nil, err
	}
	return devicectl.JSONResult(struct {
		pageState
		Width  int `json:"width"`
		Height int `json:"height"`
	}{state(p), wh[0], wh[1]})
}

// MaxPDF bounds a page printed to PDF.
const MaxPDF = 16 << 20

// pdf prints the page to a PDF, returned as the result's bytes.
func (b *Browser) pdf(ctx context.Context, args json.RawMessage) (*devicectl.Result, error) {
	var a struct {
		Landscape  bool `json:"landscape"`
		Background bool `json:"background"`
	}
	if err := devicectl.DecodeArgs(args, &a); err != nil {
		return nil, err
	}
	p, err := b.current(ctx)
	if err != nil {
		return nil, err
	}
	res, err := proto.PagePrintToPDF{Landscape: a.Landscape, PrintBackground: a.Background}.Call(p)
	if err != nil {
		return nil, errcode.Wrap(errcode.BrowserError, err, "this browser could not print the page to PDF")
	}
	if len(res.Data) > MaxPDF {
		return nil, errcode.New(errcode.TooLarge, "the PDF is %d MiB, over %d MiB", len(res.Data)>>20, MaxPDF>>20)
	}
	meta, err := json.Marshal(struct {
		pageState
		Type  string `json:"type"`
		Bytes int    `json:"bytes"`
	}{state(p), "application/pdf", len(res.Data)})
	if err != nil {
		return nil, err
	}
	return &devicectl.Result{JSON: meta, Blob: res.Data}, nil
}

// A tab's console and network, as they happen, the latest kept.
const keptEntries = 500

// ConsoleEntry is one console message or uncaught error of the tab.
type ConsoleEntry struct {
	Time  string `json:"time"`
	Level string `json:"level"`
	Text  string `json:"text"`
	URL   string `json:"url,omitempty"`
}

// NetworkEntry is one request of the tab and how it ended.
type NetworkEntry struct {
	ID     string `json:"-"`
	Method string `json:"method"`
	URL    string `json:"url"`
	Type   string `json:"type,omitempty"`
	Status int    `json:"status,omitempty"`
	Failed string `json:"failed,omitempty"`
}

// tabLog keeps what one tab said and fetched.
type tabLog struct {
	console []ConsoleEntry
	network []NetworkEntry
}

func keep[T any](list []T, e T) []T {
	list = append(list, e)
	if len(list) > keptEntries {
		list = list[len(list)-keptEntries:]
	}
	return list
}

// watchTab starts keeping a tab's console and network, once per tab.
func (b *Browser) watchTab(p *rod.Page) {
	b.mu.Lock()
	if b.logs == nil {
		b.logs = map[proto.TargetTargetID]*tabLog{}
	}
	if _, ok := b.logs[p.TargetID]; ok {
		b.mu.Unlock()
		return
	}
	l := &tabLog{}
	b.logs[p.TargetID] = l
	b.mu.Unlock()
	if err := (proto.RuntimeEnable{}).Call(p); err != nil {
		b.log.Debug("console not kept", "err", err)
	}
	if err := (proto.NetworkEnable{}).Call(p); err != nil {
		b.log.Debug("network not kept", "err", err)
	}
	now := func() string { return time.Now().UTC().Format(time.RFC3339Nano) }
	go p.Context(b.evCtx).EachEvent(
		func(e *proto.RuntimeConsoleAPICalled) {
			text := ""
			for i, a := range e.Args {
				if i > 0 {
					text += " "
				}
				if a.Value.Nil() {
					text += a.Description
				} else if s := a.Value.Str(); s != "" {
					text += s
				} else {
					text += a.Value.JSON("", "")
				}
			}
			b.mu.Lock()
			l.console = keep(l.console, ConsoleEntry{Time: now(), Level: string(e.Type), Text: text})
			b.mu.Unlock()
		},
		func(e *proto.RuntimeExceptionThrown) {
			text := e.ExceptionDetails.Text
			if ex := e.ExceptionDetails.Exception; ex != nil {
				text += " " + ex.Description
			}
			b.mu.Lock()
			l.console = keep(l.console, ConsoleEntry{Time: now(), Level: "error", Text: text, URL: e.ExceptionDetails.URL})
			b.mu.Unlock()
		},
		func(e *proto.NetworkRequestWillBeSent) {
			b.mu.Lock()
			l.network = keep(l.network, NetworkEntry{ID: string(e.RequestID), Method: e.Request.Method, URL: e.Request.URL, Type: string(e.Type)})
			b.mu.Unlock()
		},
		func(e *proto.NetworkResponseReceived) {
			b.mu.Lock()
			for i := range l.network {
				if l.network[i].ID == string(e.RequestID) {
					l.network[i].Status = e.Response.Status
				}
			}
			b.mu.Unlock()
		},
		func(e *proto.NetworkLoadingFailed) {
			b.mu.Lock()
			for i := range l.network {
				if l.network[i].ID == string(e.RequestID) {
					l.network[i].Failed = e.ErrorText
				}
			}
			b.mu.Unlock()
		},
	)()
}

// logged answers what the tab kept of one kind (its console, its
// network), emptying it when asked.
func logged[T any](b *Browser, ctx context.Context, args json.RawMessage, key string, list func(*tabLog) *[]T) (*devicectl.Result, error) {
	var a struct {
		Clear bool `json:"clear"`
	}
	if err := devicectl.DecodeArgs(args, &a); err != nil {
		return nil, err
	}
	p, err := b.current(ctx)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	out := []T{}
	if l := b.logs[p.TargetID]; l != nil {
		out = append(out, *list(l)...)
		if a.Clear {
			*list(l) = nil
		}
	}
	b.mu.Unlock()
	st := state(p)
	return devicectl.JSONResult(map[string]any{"url": st.URL, "title": st.Title, key: out})
}

func (b *Browser) console(ctx context.Context, args json.RawMessage) (*devicectl.Result, error) {
	return logged(b, ctx, args, "messages", func(l *tabLog) *[]ConsoleEntry { return &l.console })
}

func (b *Browser) network(ctx context.Context, args json.RawMessage) (*devicectl.Result, error) {
	return logged(b, ctx, args, "requests", func(l *tabLog) *[]NetworkEntry { return &l.network })
}
