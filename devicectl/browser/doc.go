// Package browser drives a Chromium on the paired computer through the
// DevTools protocol (rod): the system's own browser, never a downloaded
// one, with a persistent profile so logins survive.
//
// It serves the browser.* actions of the device vocabulary. The companion
// decides whether an action may run; this package only runs it.
package browser
