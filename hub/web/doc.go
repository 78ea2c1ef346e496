// Package web is the web app the box serves: static assets embedded in
// the binary (no build step, nothing fetched from elsewhere at run time).
package web
