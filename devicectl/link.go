package devicectl

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/lowkeyhq/lowkey/errcode"
	"github.com/pion/webrtc/v4"
)

// ErrLinkClosed is returned for calls on, or cut off by, a closed link.
var ErrLinkClosed = errors.New("the link to the computer closed")

// Request is one action asked over the link.
type Request struct {
	ID           uint64          `json:"-"`
	Action       string          `json:"action"`
	Conversation string          `json:"conversation,omitempty"`
	Args         json.RawMessage `json:"args,omitempty"`
	// TimeoutMS is the caller's remaining time when it sent the request.
	TimeoutMS int64 `json:"timeout_ms,omitempty"`
}

// Result is what an action returns: a small JSON description and an
// optional binary payload (a screenshot, a download) that travels chunked.
type Result struct {
	JSON json.RawMessage
	Blob []byte
}

// Handler serves requests on the computer's side of a link.
type Handler func(ctx context.Context, req *Request) (*Result, error)

// Notice is a one-way message on the link (grant changes, goodbyes).
type Notice struct {
	Type string          `json:"type"`
	Body json.RawMessage `json:"body,omitempty"`
}

// ConsentNotice is what a computer tells the box about a question it asks
// the person there before a conversation's first action on a capability:
// that it waits, then how they answered (allowed, denied, unanswered).
type ConsentNotice struct {
	Conversation string    `json:"conversation"`
	Capability   string    `json:"capability"`
	Action       string    `json:"action"`
	State        string    `json:"state"`
	Until        time.Time `json:"until,omitzero"`
}

// Consent notice states.
const (
	ConsentWaiting    = "waiting"
	ConsentAllowed    = "allowed"
	ConsentDenied     = "denied"
	ConsentUnanswered = "unanswered"
)

// Notice wraps it for the link.
func (n ConsentNotice) Notice() Notice {
	b, _ := json.Marshal(n)
	return Notice{Type: "consent", Body: b}
}

// LinkConfig tunes a link; the zero value works.
type LinkConfig struct {
	// Handler serves incoming requests; nil refuses them.
	Handler Handler
	// OnNotice receives notices from the peer.
	OnNotice func(Notice)
	// ChunkSize is the payload of one chunk frame (default DefaultChunkSize).
	ChunkSize int
	// HighWater stops sending chunks while this much is buffered (default
	// 64 KiB). It bounds what a control message can find in flight ahead
	// of it (up to HighWater plus one chunk), and keeps the peer's receive
	// window from ever filling. Measured on loopback with both ends on two
	// cores: against 128 KiB, 64 KiB moves 5 MiB as fast (within the noise)
	// and a small call that meets a transfer waits half as long; 1 MiB
	// moves it about 5% faster but keeps such a call waiting 7–14 ms;
	// 32 KiB is slower.
	HighWater uint64
	// LowWater resumes sending chunks (default half of HighWater).
	LowWater uint64
	// DrainRecheck is how long the writer waits for the drain signal
	// before it looks at the buffer again (default 50 ms): a signal can
	// be lost when the channel reopens.
	DrainRecheck time.Duration
	Logger       *slog.Logger
}

const inlineMax = 16 << 10

// DefaultChunkSize is the payload of one chunk frame. Each data channel
// message costs a fixed amount of work on both sides, so larger chunks move
// bulk faster; 60 KiB stays well under SCTP's and browsers' message limits.
const DefaultChunkSize = 60 << 10

// Link is request/response RPC over two data channels: "ctl", unordered,
// for requests, response headers, cancels and pings, and "bulk", ordered,
// for result chunks. The SCTP sender drains unordered messages first, and
// one writer per link sends queued control frames before any chunk, so a
// small call is not stuck behind a large result.
type Link struct {
	ctl, bulk *webrtc.DataChannel
	cfg       LinkConfig
	log       *slog.Logger

	ctlQ    chan []byte
	wake    chan struct{}
	low     chan struct{}
	closed  chan struct{}
	closeMu sync.Once
	wg      sync.WaitGroup

	// lastSmall is when this side last answered a small call while a
	// result was moving: while small calls come and go during transfers,
	// less bulk is kept in flight ahead of them.
	lastSmall atomic.Int64

	mu       sync.Mutex
	nextID   uint64
	calls    map[uint64]*call
	pings    map[uint64]chan time.Duration
	served   map[uint64]context.CancelFunc
	early    map[uint64]time.Time // cancels that overtook their request
	jobs     []*bulkJob
	chunkBuf []byte // the writer's
	lowMark  uint64 // the writer's: the bulk channel's low threshold now
	shut     bool   // closed: no new handlers
	rootCtx  context.Context
	rootStop context.CancelFunc
}

type call struct {
	done chan struct{}
	// result and err are set under the link's lock, before done closes.
	result *Result
	err    error

	mu     sync.Mutex // the receiving state below
	over   bool       // finished: later frames are ignored
	hdr    *responseHeader
	buf    []byte
	next   uint32
	sum    *xxhash.Digest
	endSum uint64
	ended  bool
}

type bulkJob struct {
	id    uint64
	blob  []byte
	off   int
	index uint32
	sum   *xxhash.Digest
}

// NewLink wraps two negotiated data channels. It starts the writer at once;
// frames that arrive before the channels open are fine.
func NewLink(ctx context.Context, ctl, bulk *webrtc.DataChannel, cfg LinkConfig) *Link {
	if cfg.ChunkSize <= 0 || cfg.ChunkSize > MaxChunkSize {
		cfg.ChunkSize = DefaultChunkSize
	}
	if cfg.HighWater == 0 {
		cfg.HighWater = 64 << 10
	}
	if cfg.DrainRecheck <= 0 {
		cfg.DrainRecheck = 50 * time.Millisecond
	}
	if cfg.LowWater == 0 || cfg.LowWater >= cfg.HighWater {
		cfg.LowWater = cfg.HighWater / 2
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	// The link's requests end when it closes, not before: the caller's
	// ctx gives its values, Close the end.
	ctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	l := &Link{
		ctl: ctl, bulk: bulk, cfg: cfg, log: cfg.Logger,
		ctlQ: make(chan []byte, 1024), wake: make(chan struct{}, 1), low: make(chan struct{}, 1),
		closed: make(chan struct{}),
		calls:  map[uint64]*call{}, pings: map[uint64]chan time.Duration{},
		served: map[uint64]context.CancelFunc{}, early: map[uint64]time.Time{},
		rootCtx: ctx, rootStop: stop,
	}
	l.lowMark = cfg.LowWater
	bulk.SetBufferedAmountLowThreshold(cfg.LowWater)
	bulk.OnBufferedAmountLow(func() { signal(l.low) })
	ctl.OnMessage(func(m webrtc.DataChannelMessage) { l.receive(m.Data) })
	bulk.OnMessage(func(m webrtc.DataChannelMessage) { l.receive(m.Data) })
	ctl.OnClose(func() { l.Close() })
	bulk.OnClose(func() { l.Close() })
	l.wg.Add(1)
	go l.writer()
	return l
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Done is closed when the link closes.
func (l *Link) Done() <-chan struct{} { return l.closed }

// Close ends the link: pending calls fail with ErrLinkClosed and served
// requests are cancelled. It waits for the link's goroutines. The data
// channels belong to the peer connection, which its owner closes.
func (l *Link) Close() error {
	l.closeMu.Do(func() {
		close(l.closed)
		l.rootStop()
		l.mu.Lock()
		l.shut = true
		for id, c := range l.calls {
			c.err = ErrLinkClosed
			close(c.done)
			delete(l.calls, id)
		}
		for id, p := range l.pings {
			close(p)
			delete(l.pings, id)
		}
		l.jobs = nil
		l.mu.Unlock()
	})
	l.wg.Wait()
	return nil
}

func (l *Link) sendCtl(b []byte) error {
	select {
	case <-l.closed:
		return ErrLinkClosed
	case l.ctlQ <- b:
		return nil
	}
}

// writer is the one goroutine that sends on this link.
func (l *Link) writer() {
	defer l.wg.Done()
	// One timer for every wait on the drain signal: at the small pace
	// there is a wait for every 8 KiB.
	fallback := time.NewTimer(time.Hour)
	defer fallback.Stop()
	for {
		select {
		case <-l.closed:
			return
		case b := <-l.ctlQ:
			_ = l.ctl.Send(b)
			continue
		default:
		}
		window, chunk := l.pace()
		if l.bulk.BufferedAmount() < window {
			if b := l.nextChunk(chunk); b != nil {
				_ = l.bulk.Send(b)
				continue
			}
			select {
			case <-l.closed:
				return
			case b := <-l.ctlQ:
				_ = l.ctl.Send(b)
			case <-l.wake:
			}
			continue
		}
		// Resume once the buffer has drained to half the window in force:
		// the signal fires when the buffered amount falls below the
		// threshold, so the threshold follows the window.
		low := min(l.cfg.LowWater, window/2)
		if low != l.lowMark {
			l.lowMark = low
			l.bulk.SetBufferedAmountLowThreshold(low)
			if l.bulk.BufferedAmount() < window {
				continue
			}
		}
		fallback.Reset(l.cfg.DrainRecheck)
		select {
		case <-l.closed:
			return
		case b := <-l.ctlQ:
			_ = l.ctl.Send(b)
		case <-l.low:
		case <-fallback.C:
			// A low-water signal can be lost when the channel reopens;
			// looking again costs nothing.
		}
	}
}

// While small calls are being answered during transfers, bulk moves in
// small chunks with little in flight: a small answer waits behind every
// bulk byte in flight (up to the window plus one chunk), and each of those
// bytes costs CPU on both sides while it waits.
const (
	smallWindow = 8 << 10
	smallChunk  = 8 << 10
)

// pace is how much bulk may be buffered and how large the next chunk is:
// small while small calls are being answered, large otherwise (each data
// channel message costs a fixed amount of work, so large chunks move bulk
// faster).
func (l *Link) pace() (window uint64, chunk int) {
	if time.Since(time.Unix(0, l.lastSmall.Load())) < 100*time.Millisecond {
		return min(l.cfg.HighWater, smallWindow), min(l.cfg.ChunkSize, smallChunk)
	}
	return l.cfg.HighWater, l.cfg.ChunkSize
}

func (l *Link) nextChunk(size int) []byte {
	l.mu.Lock()
	if len(l.jobs) == 0 {
		l.mu.Unlock()
		return nil
	}
	j := l.jobs[0]
	if j.off >= len(j.blob) {
		l.jobs = l.jobs[1:]
		l.mu.Unlock()
		return encodeSimple(frameEnd, j.id, binary.BigEndian.AppendUint64(nil, j.sum.Sum64()))
	}
	if len(l.jobs) > 1 {
		// Round robin, so one large result does not hold up another.
		l.jobs = append(l.jobs[1:], j)
	}
	l.mu.Unlock()
	// Only this goroutine moves a job along, so the copy and the hash
	// need no lock (and hold up no call while they run).
	start, end := j.off, min(j.off+size, len(j.blob))
	// The data channel copies what it is given before Send returns: one
	// buffer serves every chunk.
	l.chunkBuf = encodeChunkInto(l.chunkBuf, j.id, j.index, j.blob[start:end])
	j.sum.Write(j.blob[start:end])
	j.off = end
	j.index++
	return l.chunkBuf
}

// Call asks the peer to run an action and waits for its result. The
// context's deadline travels with the request; cancelling the context
// cancels the action on the computer.
func (l *Link) Call(ctx context.Context, action, conversation string, args any) (*Result, error) {
	var raw json.RawMessage
	switch a := args.(type) {
	case nil:
	case json.RawMessage:
		raw = a
	case []byte:
		raw = a
	default:
		b, err := json.Marshal(a)
		if err != nil {
			return nil, fmt.Errorf("encode arguments: %w", err)
		}
		raw = b
	}
	req := Request{Action: action, Conversation: conversation, Args: raw}
	if dl, ok := ctx.Deadline(); ok {
		req.TimeoutMS = max(1, time.Until(dl).Milliseconds())
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if len(body) > MaxControlMessage {
		return nil, fmt.Errorf("arguments of %d bytes are too large for one request", len(body))
	}
	c := &call{done: make(chan struct{})}
	l.mu.Lock()
	select {
	case <-l.closed:
		l.mu.Unlock()
		return nil, ErrLinkClosed
	default:
	}
	l.nextID++
	id := l.nextID
	l.calls[id] = c
	l.mu.Unlock()
	if err := l.sendCtl(encodeSimple(frameRequest, id, body)); err != nil {
		l.forget(id)
		return nil, err
	}
	select {
	case <-c.done:
		return c.result, c.err
	case <-ctx.Done():
		l.forget(id)
		_ = l.sendCtl(encodeSimple(frameCancel, id, nil))
		return nil, ctx.Err()
	}
}

func (l *Link) forget(id uint64) {
	l.mu.Lock()
	delete(l.calls, id)
	l.mu.Unlock()
}

// Ping measures the round trip over the control channel.
func (l *Link) Ping(ctx context.Context) (time.Duration, error) {
	ch := make(chan time.Duration, 1)
	l.mu.Lock()
	l.nextID++
	id := l.nextID
	l.pings[id] = ch
	l.mu.Unlock()
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], uint64(time.Now().UnixNano()))
	if err := l.sendCtl(encodeSimple(framePing, id, ts[:])); err != nil {
		return 0, err
	}
	select {
	case d, ok := <-ch:
		if !ok {
			return 0, ErrLinkClosed
		}
		return d, nil
	case <-ctx.Done():
		l.mu.Lock()
		delete(l.pings, id)
		l.mu.Unlock()
		return 0, ctx.Err()
	}
}

// Notify sends a one-way notice.
func (l *Link) Notify(n Notice) error {
	b, err := json.Marshal(n)
	if err != nil {
		return err
	}
	return l.sendCtl(encodeSimple(frameNotice, 0, b))
}

func (l *Link) receive(b []byte) {
	f, err := decodeFrame(b)
	if err != nil {
		l.log.Warn("dropped a link frame", "err", err)
		return
	}
	switch f.typ {
	case frameRequest:
		l.serve(f)
	case frameCancel:
		l.cancelServed(f.id)
	case frameResponse:
		l.onResponse(f)
	case frameChunk:
		l.onChunk(f)
	case frameEnd:
		l.onEnd(f)
	case framePing:
		_ = l.sendCtl(encodeSimple(framePong, f.id, f.payload))
	case framePong:
		l.mu.Lock()
		ch := l.pings[f.id]
		delete(l.pings, f.id)
		l.mu.Unlock()
		if ch != nil {
			ch <- time.Since(time.Unix(0, int64(binary.BigEndian.Uint64(f.payload))))
		}
	case frameNotice:
		var n Notice
		if err := json.Unmarshal(f.payload, &n); err != nil {
			l.log.Warn("dropped a malformed notice", "err", err)
			return
		}
		if l.cfg.OnNotice != nil {
			l.cfg.OnNotice(n)
		}
	}
}

func (l *Link) cancelServed(id uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if stop, ok := l.served[id]; ok {
		stop()
		return
	}
	for i, j := range l.jobs {
		if j.id == id {
			l.jobs = append(l.jobs[:i], l.jobs[i+1:]...)
			return
		}
	}
	now := time.Now()
	for k, t := range l.early {
		if now.Sub(t) > time.Minute {
			delete(l.early, k)
		}
	}
	if len(l.early) < 4096 {
		l.early[id] = now
	}
}

func (l *Link) serve(f *frame) {
	var req Request
	if err := json.Unmarshal(f.payload, &req); err != nil || req.Action == "" {
		l.respondErr(f.id, &errcode.Error{Code: errcode.BadRequest, Message: "the request did not decode"})
		return
	}
	req.ID = f.id
	ctx, stop := context.WithCancel(l.rootCtx)
	if req.TimeoutMS > 0 {
		ctx, stop = context.WithTimeout(l.rootCtx, time.Duration(req.TimeoutMS)*time.Millisecond)
	}
	l.mu.Lock()
	if _, cancelled := l.early[f.id]; cancelled || l.shut {
		delete(l.early, f.id)
		l.mu.Unlock()
		stop()
		return
	}
	l.served[f.id] = stop
	// Added under the lock Close takes before it waits, so no handler
	// starts after Close began waiting.
	l.wg.Add(1)
	l.mu.Unlock()
	go func() {
		defer l.wg.Done()
		defer func() {
			l.mu.Lock()
			delete(l.served, f.id)
			l.mu.Unlock()
			stop()
		}()
		var res *Result
		var err error
		if l.cfg.Handler == nil {
			err = &errcode.Error{Code: errcode.Unsupported, Message: "this side of the link serves no actions"}
		} else {
			res, err = l.cfg.Handler(ctx, &req)
		}
		if ctx.Err() != nil {
			// The caller gave up or the link closed: nobody waits for an answer.
			return
		}
		if err != nil {
			var ae *errcode.Error
			if !errors.As(err, &ae) {
				ae = &errcode.Error{Code: errcode.Failed, Message: err.Error()}
			}
			l.respondErr(f.id, ae)
			return
		}
		l.respond(f.id, res)
	}()
}

func (l *Link) respondErr(id uint64, ae *errcode.Error) {
	b, _ := json.Marshal(ae)
	_ = l.sendCtl(encodeResponse(id, &responseHeader{isErr: true, json: b}))
}

func (l *Link) respond(id uint64, res *Result) {
	if res == nil {
		res = &Result{}
	}
	if len(res.JSON)+inlineMax > MaxControlMessage {
		l.respondErr(id, &errcode.Error{Code: errcode.Failed, Message: "the action's description is too large"})
		return
	}
	if len(res.Blob) > MaxResultSize {
		l.respondErr(id, &errcode.Error{Code: errcode.TooLarge, Message: fmt.Sprintf("result of %d bytes is over the %d byte limit", len(res.Blob), MaxResultSize)})
		return
	}
	h := &responseHeader{json: res.JSON, blobSize: uint64(len(res.Blob))}
	if len(res.Blob) <= inlineMax {
		h.blobHash = checksum(res.Blob)
		h.inline = res.Blob
		l.mu.Lock()
		moving := len(l.jobs) > 0
		l.mu.Unlock()
		if moving {
			// Calls one after another (a click, then a screenshot) keep
			// the full pace: nothing waits behind the bulk then.
			l.lastSmall.Store(time.Now().UnixNano())
		}
		_ = l.sendCtl(encodeResponse(id, h))
		return
	}
	h.chunked = true
	if err := l.sendCtl(encodeResponse(id, h)); err != nil {
		return
	}
	l.mu.Lock()
	l.jobs = append(l.jobs, &bulkJob{id: id, blob: res.Blob, sum: newChecksum()})
	l.mu.Unlock()
	signal(l.wake)
}

// The receiving side of a call keeps its state under the call's own lock,
// so that copying and hashing a chunk never holds up new calls, pings or
// other results (a goroutine can be descheduled while holding a lock, and
// then everyone waiting on it waits for the scheduler too). Lock order:
// a call's lock, then the link's.

// lockCall returns the pending call with this id, locked, or nil.
func (l *Link) lockCall(id uint64) *call {
	l.mu.Lock()
	c := l.calls[id]
	l.mu.Unlock()
	if c != nil {
		c.mu.Lock()
	}
	return c
}

func (l *Link) onResponse(f *frame) {
	c := l.lockCall(f.id)
	if c == nil {
		return
	}
	defer c.mu.Unlock()
	if c.hdr != nil {
		return
	}
	h := f.resp
	c.hdr = &h
	if h.isErr {
		var ae errcode.Error
		if err := json.Unmarshal(h.json, &ae); err != nil || ae.Code == "" {
			ae = errcode.Error{Code: "failed", Message: "the computer sent an unreadable error"}
		}
		l.finish(f.id, c, nil, &ae)
		return
	}
	if !h.chunked {
		if uint64(len(h.inline)) != h.blobSize || checksum(h.inline) != h.blobHash {
			l.finish(f.id, c, nil, fmt.Errorf("%w: inline result does not match its size or hash", ErrBadFrame))
			return
		}
		l.complete(f.id, c, h.inline)
		return
	}
	l.maybeComplete(f.id, c)
}

func (l *Link) onEnd(f *frame) {
	c := l.lockCall(f.id)
	if c == nil {
		return
	}
	defer c.mu.Unlock()
	c.endSum, c.ended = binary.BigEndian.Uint64(f.payload), true
	l.maybeComplete(f.id, c)
}

func (l *Link) onChunk(f *frame) {
	c := l.lockCall(f.id)
	if c == nil {
		return
	}
	defer c.mu.Unlock()
	if c.over {
		return
	}
	if f.index != c.next {
		l.finish(f.id, c, nil, fmt.Errorf("%w: chunk %d arrived, expected %d", ErrBadFrame, f.index, c.next))
		return
	}
	need := uint64(len(c.buf) + len(f.payload))
	if need > MaxResultSize || (c.hdr != nil && need > c.hdr.blobSize) {
		l.finish(f.id, c, nil, fmt.Errorf("%w: result longer than announced", ErrBadFrame))
		return
	}
	if need > uint64(cap(c.buf)) && c.hdr != nil {
		// Once: chunks usually arrive after their header.
		buf := make([]byte, len(c.buf), c.hdr.blobSize)
		copy(buf, c.buf)
		c.buf = buf
	}
	c.buf = append(c.buf, f.payload...)
	if c.sum == nil {
		c.sum = newChecksum()
	}
	c.sum.Write(f.payload)
	c.next++
	l.maybeComplete(f.id, c)
}

// maybeComplete hands a chunked result over once the header and the end
// frame are in (chunks travel in order ahead of their end frame), and its
// size and hash check out. The caller holds c.mu.
func (l *Link) maybeComplete(id uint64, c *call) {
	if c.over || c.hdr == nil || !c.ended {
		return
	}
	if uint64(len(c.buf)) != c.hdr.blobSize || c.sum == nil || c.sum.Sum64() != c.endSum {
		l.finish(id, c, nil, fmt.Errorf("%w: result of %d bytes does not match its size or hash", ErrBadFrame, len(c.buf)))
		return
	}
	l.complete(id, c, c.buf)
}

func (l *Link) complete(id uint64, c *call, blob []byte) {
	if len(blob) == 0 {
		blob = nil
	}
	l.finish(id, c, &Result{JSON: c.hdr.json, Blob: blob}, nil)
}

// finish hands a call its outcome, unless Close or the caller got there
// first. The caller holds c.mu.
func (l *Link) finish(id uint64, c *call, res *Result, err error) {
	c.over = true
	c.buf = nil
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.calls[id] != c {
		return
	}
	delete(l.calls, id)
	c.result, c.err = res, err
	close(c.done)
}
