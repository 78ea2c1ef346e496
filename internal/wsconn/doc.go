// Package wsconn adapts a WebSocket to the message interfaces of pairing
// and devicectl, with size limits and deadlines, for both the box and the
// companion.
package wsconn
