package pages

import (
	"net/http"
	"path"
	"strings"
)

// CSP lets a published page show itself and nothing more: it is a sandbox
// (an opaque origin: no cookies, no storage), no script runs, nothing
// loads from anywhere but the page itself.
const CSP = "sandbox; default-src 'none'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; font-src 'self'; frame-ancestors 'none'; form-action 'none'; base-uri 'none'"

// Handler serves published pages at /p/<token>/<file>. GET and HEAD only;
// cookies are never set and never read.
func (p *Pages) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", CSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Resource-Policy", "same-site")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cache-Control", "no-cache")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "published pages are read-only", http.StatusMethodNotAllowed)
			return
		}
		rest, ok := strings.CutPrefix(r.URL.Path, "/p/")
		if !ok {
			http.NotFound(w, r)
			return
		}
		tok, file, _ := strings.Cut(rest, "/")
		pg, found := p.byToken(tok)
		if !found {
			http.NotFound(w, r)
			return
		}
		if file == "" {
			if !strings.HasSuffix(r.URL.Path, "/") {
				http.Redirect(w, r, r.URL.Path+"/", http.StatusMovedPermanently)
				return
			}
			file = "index.html"
		}
		if strings.HasSuffix(file, "/") {
			file += "index.html"
		}
		name, err := checkName(file)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		f, err := p.root.Open(pg.ID + "/" + name)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil || !fi.Mode().IsRegular() {
			http.NotFound(w, r)
			return
		}
		h.Set("Content-Type", Types[strings.ToLower(path.Ext(name))])
		http.ServeContent(w, r, "", fi.ModTime(), f)
	})
}
