package devicectl

import (
	"io"
	"log/slog"
	"testing"
)

func FuzzDecodeFrame(f *testing.F) {
	f.Add(encodeSimple(frameRequest, 1, []byte(`{"action":"sys.info"}`)))
	f.Add(encodeChunk(2, 0, []byte("data")))
	f.Add(encodeResponse(3, &responseHeader{json: []byte(`{}`), blobSize: 3, inline: []byte("abc")}))
	f.Add(encodeResponse(4, &responseHeader{blobSize: 100000, chunked: true}))
	f.Add(encodeSimple(frameEnd, 4, make([]byte, 8)))
	f.Add(encodeSimple(framePing, 5, make([]byte, 8)))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := decodeFrame(b)
		if err != nil {
			return
		}
		if fr.typ == frameResponse {
			h := fr.resp
			if h.blobSize > MaxResultSize || len(h.json)+len(h.inline) > len(b) {
				t.Fatalf("accepted an impossible response %+v", h)
			}
		}
		if fr.typ == frameChunk && len(fr.payload) > MaxChunkSize {
			t.Fatal("accepted an oversized chunk")
		}
	})
}

// FuzzLinkReceive runs arbitrary frames through a link's receive path with
// a pending call: nothing may panic, and a result is only ever handed over
// whole.
func FuzzLinkReceive(f *testing.F) {
	f.Add(encodeResponse(1, &responseHeader{blobSize: 70000, chunked: true}), encodeChunk(1, 0, make([]byte, 60000)), encodeChunk(1, 1, make([]byte, 10000)))
	f.Add(encodeChunk(1, 5, []byte("x")), encodeSimple(frameEnd, 1, make([]byte, 8)), []byte{})
	f.Fuzz(func(t *testing.T, a, b, c []byte) {
		l := &Link{calls: map[uint64]*call{}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
		cl := &call{done: make(chan struct{})}
		l.calls[1] = cl
		for _, b := range [][]byte{a, b, c} {
			// Frames that answer back need a running writer; the
			// receive path for results is what is under test here.
			if len(b) > 0 && (b[0] == frameRequest || b[0] == framePing || b[0] == frameCancel || b[0] == frameNotice) {
				continue
			}
			l.receive(b)
		}
		select {
		case <-cl.done:
			if cl.err == nil && cl.result == nil {
				t.Fatal("call finished with neither result nor error")
			}
		default:
		}
	})
}

func FuzzDecodeSignal(f *testing.F) {
	f.Add([]byte(`{"seq":1,"body":{"type":"offer","sdp":"v=0"},"sig":"AAAA"}`))
	f.Add([]byte(`{"type":"candidate","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, body, _, err := DecodeEnvelope(b); err == nil {
			_, _ = DecodeSignal(body)
		}
		_, _ = DecodeSignal(b)
	})
}

func FuzzLiveAssembler(f *testing.F) {
	for _, p := range LiveParts(1, make([]byte, LivePart+10)) {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var a LiveAssembler
		if frame, ok := a.Add(b); ok && len(frame) > MaxLiveFrame {
			t.Fatalf("a frame of %d bytes", len(frame))
		}
		_, _ = DecodeLiveRequest(b)
	})
}

// An update that parses stays inside its picture, and reads back the
// same when written again.
func FuzzParseLiveUpdate(f *testing.F) {
	f.Add((&LiveUpdate{Key: true, Width: 64, Height: 32, Seq: 1, Ops: []LiveOp{{W: 64, H: 32, JPEG: []byte{0xff, 0xd8}}}}).Marshal())
	f.Add((&LiveUpdate{Width: 64, Height: 32, Seq: 2, Ops: []LiveOp{{Copy: true, W: 64, H: 16, SrcY: 16}, {X: 8, Y: 8, W: 8, H: 8, JPEG: []byte("x")}}}).Marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		u, err := ParseLiveUpdate(b)
		if err != nil {
			return
		}
		for _, op := range u.Ops {
			if op.X+op.W > u.Width || op.Y+op.H > u.Height || (op.Copy && (op.SrcX+op.W > u.Width || op.SrcY+op.H > u.Height)) {
				t.Fatalf("an op outside its %dx%d picture: %+v", u.Width, u.Height, op)
			}
		}
		again, err := ParseLiveUpdate(u.Marshal())
		if err != nil || again.Seq != u.Seq || len(again.Ops) != len(u.Ops) {
			t.Fatalf("written again it reads %v %+v", err, again)
		}
	})
}
