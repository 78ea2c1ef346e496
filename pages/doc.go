// Package pages publishes static snapshots of a directory (HTML, CSS,
// images, fonts, PDFs) and serves them from their own origin, where no
// script runs and no cookie is set or read. It refuses anything that could
// leave the snapshot: paths out of it, links, special files, other types.
//
// It must not share an origin or cookies with the hub.
package pages
