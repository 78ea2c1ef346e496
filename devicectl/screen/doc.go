// Package screen sees and drives the computer's own display: capture
// (MIT-SHM where the X server offers it), pointer and keyboard through
// XTEST. It serves the screen.* actions of the device vocabulary. X11 is
// the one display system supported so far; elsewhere every action says so.
package screen
