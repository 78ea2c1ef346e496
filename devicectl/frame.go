package devicectl

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cespare/xxhash/v2"
)

// Frame types on the link's data channels.
const (
	frameRequest  byte = 1 // id, JSON requestHeader
	frameResponse byte = 2 // id, binary responseHeader, JSON, inline blob
	frameChunk    byte = 3 // id, index, blob bytes
	frameCancel   byte = 4 // id
	framePing     byte = 5 // id, sender's clock
	framePong     byte = 6 // id, echoed clock
	frameNotice   byte = 7 // JSON Notice, one way
	frameEnd      byte = 8 // id, checksum of the whole chunked result
)

const (
	headerSize = 1 + 8
	// respFixed is flags(1) jsonLen(4) blobSize(8) checksum(8).
	respFixed = 1 + 4 + 8 + 8
	// MaxControlMessage bounds a control frame: requests, response headers
	// with their JSON and inline blobs, notices.
	MaxControlMessage = 256 << 10
	// MaxResultSize bounds one action's result, on both ends: a long
	// page's full-page screenshot fits; a computer that lies cannot make
	// the box hold more than this per action in flight.
	MaxResultSize = 64 << 20
	// MaxChunkSize bounds one chunk frame's payload.
	MaxChunkSize = 64 << 10
)

// The result checksum is XXH64. It catches a result put together wrongly
// (a chunk lost, doubled or misplaced); it is not there against an
// attacker: DTLS already authenticates every byte between the two pinned
// peers. A cryptographic hash (SHA-256 was used first) cost both sides
// about 3 ms per 5 MiB, a tenth of the transfer on a small machine.
func checksum(b []byte) uint64 { return xxhash.Sum64(b) }

func newChecksum() *xxhash.Digest { return xxhash.New() }

// Response flags.
const (
	flagErr     byte = 1
	flagChunked byte = 2
)

// ErrBadFrame is a frame that does not decode.
var ErrBadFrame = errors.New("malformed link frame")

type frame struct {
	typ     byte
	id      uint64
	index   uint32 // chunk
	payload []byte // request JSON, notice JSON, chunk data, ping clock
	resp    responseHeader
}

type responseHeader struct {
	isErr    bool
	json     []byte
	blobSize uint64
	// chunked: the blob follows in chunk frames (their sizes vary: the
	// sender makes them smaller while small calls are being answered)
	// and then an end frame.
	chunked bool
	// blobHash is set for inline results; a chunked result's checksum
	// comes last, in its end frame, so checksumming overlaps the transfer.
	blobHash uint64
	inline   []byte
}

func encodeSimple(typ byte, id uint64, payload []byte) []byte {
	b := make([]byte, headerSize+len(payload))
	b[0] = typ
	binary.BigEndian.PutUint64(b[1:], id)
	copy(b[headerSize:], payload)
	return b
}

func encodeChunk(id uint64, index uint32, data []byte) []byte {
	return encodeChunkInto(nil, id, index, data)
}

// encodeChunkInto encodes into buf when it is large enough.
func encodeChunkInto(buf []byte, id uint64, index uint32, data []byte) []byte {
	n := headerSize + 4 + len(data)
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	b := buf[:n]
	b[0] = frameChunk
	binary.BigEndian.PutUint64(b[1:], id)
	binary.BigEndian.PutUint32(b[headerSize:], index)
	copy(b[headerSize+4:], data)
	return b
}

func encodeResponse(id uint64, h *responseHeader) []byte {
	b := make([]byte, headerSize+respFixed, headerSize+respFixed+len(h.json)+len(h.inline))
	b[0] = frameResponse
	binary.BigEndian.PutUint64(b[1:], id)
	p := b[headerSize:]
	if h.isErr {
		p[0] |= flagErr
	}
	if h.chunked {
		p[0] |= flagChunked
	}
	binary.BigEndian.PutUint32(p[1:], uint32(len(h.json)))
	binary.BigEndian.PutUint64(p[5:], h.blobSize)
	binary.BigEndian.PutUint64(p[13:], h.blobHash)
	b = append(b, h.json...)
	return append(b, h.inline...)
}

// decodeFrame parses one data channel message. It never panics on any input
// and never trusts a length it has not checked.
func decodeFrame(b []byte) (*frame, error) {
	if len(b) < headerSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadFrame, len(b))
	}
	f := &frame{typ: b[0], id: binary.BigEndian.Uint64(b[1:])}
	p := b[headerSize:]
	switch f.typ {
	case frameRequest, frameNotice:
		if len(p) == 0 || len(p) > MaxControlMessage {
			return nil, fmt.Errorf("%w: body of %d bytes", ErrBadFrame, len(p))
		}
		f.payload = p
	case frameCancel:
		if len(p) != 0 {
			return nil, fmt.Errorf("%w: cancel with a body", ErrBadFrame)
		}
	case frameEnd:
		if len(p) != 8 {
			return nil, fmt.Errorf("%w: end frame", ErrBadFrame)
		}
		f.payload = p
	case framePing, framePong:
		if len(p) != 8 {
			return nil, fmt.Errorf("%w: ping", ErrBadFrame)
		}
		f.payload = p
	case frameChunk:
		if len(p) < 4 || len(p)-4 > MaxChunkSize {
			return nil, fmt.Errorf("%w: chunk of %d bytes", ErrBadFrame, len(p))
		}
		f.index = binary.BigEndian.Uint32(p)
		f.payload = p[4:]
	case frameResponse:
		if len(p) < respFixed || len(p) > MaxControlMessage+respFixed {
			return nil, fmt.Errorf("%w: response of %d bytes", ErrBadFrame, len(p))
		}
		h := &f.resp
		if p[0]&^(flagErr|flagChunked) != 0 {
			return nil, fmt.Errorf("%w: response flags %d", ErrBadFrame, p[0])
		}
		h.isErr = p[0]&flagErr != 0
		h.chunked = p[0]&flagChunked != 0
		jl := binary.BigEndian.Uint32(p[1:])
		h.blobSize = binary.BigEndian.Uint64(p[5:])
		h.blobHash = binary.BigEndian.Uint64(p[13:])
		rest := p[respFixed:]
		if uint64(jl) > uint64(len(rest)) {
			return nil, fmt.Errorf("%w: JSON length %d past the end", ErrBadFrame, jl)
		}
		h.json, h.inline = rest[:jl], rest[jl:]
		if h.blobSize > MaxResultSize {
			return nil, fmt.Errorf("%w: result of %d bytes is over the limit", ErrBadFrame, h.blobSize)
		}
		if h.chunked && (len(h.inline) > 0 || h.blobSize == 0 || h.isErr) {
			return nil, fmt.Errorf("%w: a chunked result of %d bytes with %d inline", ErrBadFrame, h.blobSize, len(h.inline))
		}
		if !h.chunked && uint64(len(h.inline)) != h.blobSize {
			return nil, fmt.Errorf("%w: inline result does not match its size", ErrBadFrame)
		}
	default:
		return nil, fmt.Errorf("%w: type %d", ErrBadFrame, f.typ)
	}
	return f, nil
}
