// Package devicectl owns what the box can ask of a paired computer and how
// the ask travels: the action vocabulary, the gate every action passes on
// the box (grant, policy, confirmation, audit record), the link RPC over
// WebRTC data channels (ids, deadlines, cancel, chunked and flow-controlled
// results, the live screen's frames), and the peer connection set-up with
// pinned DTLS certificates. The drivers live below: browser (rod) and
// screen (X11).
//
// It must not know about HTTP: signaling reaches it through the Signaler
// interface, whatever carries it.
package devicectl
