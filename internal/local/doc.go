// Package local runs a box and a companion on this machine, paired through
// the real flow (admin socket code, CPace over the pairing WebSocket) and
// linked over loopback: the demo, the benchmarks and the tests share it.
package local
