// Package pairing owns who is who between the box and a paired computer:
// long-term identities (Ed25519 keys and persistent DTLS certificates),
// short pairing codes and the window they are valid in, the CPace exchange
// with key confirmation that turns a code into pinned keys, the signed
// challenges that authenticate every later connection, and mDNS advertise
// and browse.
//
// It must not know about sessions, HTTP routes or data channels.
package pairing
