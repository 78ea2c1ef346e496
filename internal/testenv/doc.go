// Package testenv gives tests the real things they need from the machine
// (a virtual X display, the system Chromium) and fails, rather than skips,
// when CI should have provided them.
package testenv
