package hub

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/lowkeyhq/lowkey/errcode"
	"github.com/lowkeyhq/lowkey/pages"
)

// listenPages opens the pages' own origin, refusing one that is the hub's.
func (h *Hub) listenPages() error {
	hubURL, _ := url.Parse(h.URL())
	origin := h.cfg.PagesOrigin
	ln, err := net.Listen("tcp", h.cfg.PagesListen)
	if err != nil {
		return fmt.Errorf("pages: listen on %s: %w", h.cfg.PagesListen, err)
	}
	if origin == "" {
		a := ln.Addr().(*net.TCPAddr)
		host := a.IP.String()
		if a.IP.IsUnspecified() {
			host = hubURL.Hostname()
		}
		origin = "http://" + net.JoinHostPort(host, fmt.Sprint(a.Port))
	}
	o, err := url.Parse(origin)
	if err != nil || o.Host == "" || (o.Scheme != "http" && o.Scheme != "https") {
		ln.Close()
		return fmt.Errorf("--pages-origin %q is not an http(s) URL", origin)
	}
	if strings.EqualFold(o.Scheme, hubURL.Scheme) && strings.EqualFold(o.Host, hubURL.Host) {
		ln.Close()
		return fmt.Errorf("the pages origin %s is the hub's own: published pages must be served from another origin (--pages-listen on another port, or --pages-origin with another host name)", origin)
	}
	if strings.EqualFold(o.Hostname(), hubURL.Hostname()) {
		h.log.Warn("published pages share the hub's host name, so browsers send the hub's cookies to them too (the pages server never reads them); use --pages-origin with another host name", "pages", origin, "hub", h.URL())
	}
	h.pagesLn, h.pagesOrigin = ln, strings.TrimRight(origin, "/")
	h.log.Info("published pages", "origin", h.pagesOrigin)
	return nil
}

type pageView struct {
	pages.Page
	URL string `json:"url"`
}

func (h *Hub) pageURL(pg *pages.Page) string {
	if h.pagesOrigin == "" {
		return ""
	}
	return h.pagesOrigin + "/p/" + pg.Token + "/"
}

// publishError maps a refused snapshot to 400 and an oversize one to 413.
func publishError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, pages.ErrTooLarge):
		fail(w, errcode.TooLarge, err.Error())
	case errors.Is(err, pages.ErrRefused):
		fail(w, errcode.BadRequest, err.Error())
	default:
		fail(w, errcode.Internal, "could not publish: "+err.Error())
	}
}

// postPage publishes a tar archive of static files.
func (h *Hub) postPage(w http.ResponseWriter, r *http.Request) {
	s := h.session(w, r.PathValue("id"))
	if s == nil {
		return
	}
	if h.pagesOrigin == "" {
		fail(w, errcode.NoPagesOrigin, "this hub serves no pages: start it with --pages-listen")
		return
	}
	ct := r.Header.Get("Content-Type")
	if ct != "application/x-tar" && ct != "application/tar" {
		fail(w, errcode.BadType, "send the files as a tar archive (Content-Type: application/x-tar)")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, pages.MaxTotalBytes+(4<<20))
	pg, err := h.pages.FromTar(s.ID, r.Body)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) || (err != nil && strings.Contains(err.Error(), "request body too large")) {
		fail(w, errcode.TooLarge, fmt.Sprintf("a page may be at most %d bytes", pages.MaxTotalBytes))
		return
	}
	if err != nil {
		publishError(w, err)
		return
	}
	h.runtime.Emit(s.ID, "page.published", pageView{*pg, h.pageURL(pg)})
	writeJSON(w, http.StatusCreated, pageView{*pg, h.pageURL(pg)})
}

func (h *Hub) getPages(w http.ResponseWriter, r *http.Request) {
	s := h.session(w, r.PathValue("id"))
	if s == nil {
		return
	}
	pgs, err := h.pages.List(s.ID)
	if err != nil {
		fail(w, errcode.Internal, err.Error())
		return
	}
	out := []pageView{}
	for _, pg := range pgs {
		out = append(out, pageView{pg, h.pageURL(&pg)})
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *Hub) deletePage(w http.ResponseWriter, r *http.Request) {
	s := h.session(w, r.PathValue("id"))
	if s == nil {
		return
	}
	pg, err := h.pages.Get(r.PathValue("page"))
	if err != nil || pg.Session != s.ID {
		fail(w, errcode.NotFound, "no such page in this conversation")
		return
	}
	if err := h.pages.Unpublish(pg.ID); err != nil {
		fail(w, errcode.Internal, err.Error())
		return
	}
	h.runtime.Emit(s.ID, "page.unpublished", map[string]string{"id": pg.ID})
	writeJSON(w, http.StatusOK, map[string]string{"unpublished": pg.ID})
}

// agentPages lets an agent publish files of its session, as an archive
// its own account made.
type agentPages struct{ h *Hub }

func (a agentPages) Publish(session string, tar io.Reader) (any, error) {
	if a.h.pagesOrigin == "" {
		return nil, errors.New("this hub serves no pages: start it with --pages-listen")
	}
	pg, err := a.h.pages.FromTar(session, tar)
	if err != nil {
		return nil, err
	}
	a.h.runtime.Emit(session, "page.published", pageView{*pg, a.h.pageURL(pg)})
	return pageView{*pg, a.h.pageURL(pg)}, nil
}

// PagesOrigin is where published pages are served ("" when none are).
func (h *Hub) PagesOrigin() string { return h.pagesOrigin }
