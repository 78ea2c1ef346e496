// Package devicectl owns what the box can ask of a paired computer and how
// the ask travels: the action vocabulary, the link RPC over WebRTC data
// channels (ids, deadlines, cancel, chunked and flow-controlled results),
// and the peer connection set-up with pinned DTLS certificates.
//
// It must not know about HTTP: signaling reaches it through the Signaler
// interface, whatever carries it.
package devicectl
