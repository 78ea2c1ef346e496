// Package companion is the paired computer's side: it pairs with a box,
// keeps the authenticated link to it up (reconnecting by itself, finding
// the box again over mDNS when its address changes), and serves device
// actions on this computer.
//
// It must not import Badger, cgroups or the hub.
package companion
