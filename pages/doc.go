// Package pages stores published pages (static snapshots of a directory)
// and serves them from their own origin, where no script runs and no
// cookie is set or read. Publishing arrives with the pages work; until
// then the package holds nothing but this description.
package pages
