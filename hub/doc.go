// Package hub is the box: its HTTP API and web app, the admin socket the
// lowkey commands use, the pairing and signaling endpoints, the registry of
// paired computers with their live links, and the Badger store behind them
// (its schema version and migrations, backups by hand and on a timer), and
// the doctor that checks a box from inside.
//
// It must not drive devices itself: every device action goes through a
// devicectl link to the computer that performs it.
package hub
