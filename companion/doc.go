// Package companion is the paired computer's side: it pairs with a box,
// keeps the authenticated link to it up (reconnecting by itself, finding
// the box again over mDNS when its address changes), keeps its own copy
// of the conversations' grants, and serves device actions through the
// browser and screen drivers, refusing whatever no grant covers and
// everything while the person has paused it. It also writes the service
// that keeps it running for the person signed in (systemd user unit,
// launchd agent, Windows startup entry).
//
// It must not import Badger, cgroups or the hub.
package companion
