// Package hub is the box: its HTTP API and web app, the admin socket the
// lowkey commands use, the pairing and signaling endpoints, the registry of
// paired computers with their live links, and the Badger store behind them.
//
// It must not drive devices itself: every device action goes through a
// devicectl link to the computer that performs it.
package hub
