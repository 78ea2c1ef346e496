// Package e2e drives the built binaries the way a person would: a box, a
// computer paired with a code, the link between them, over loopback and
// across network namespaces, and the web app in a real Chromium.
package e2e
