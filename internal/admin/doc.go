// Package admin is the client side of the hub's admin socket, used by the
// lowkey commands on the box.
package admin
