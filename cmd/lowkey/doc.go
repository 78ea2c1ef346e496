// Command lowkey is the box: it runs the hub and talks to a running hub
// over its admin socket.
package main
