// Package demo is "lowkey demo": a hub on a temporary data dir, a companion
// on this machine paired through the real flow, and a first action over
// the link, all driven the way a person would drive them.
package demo
