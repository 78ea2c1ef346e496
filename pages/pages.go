package pages

import (
	"archive/tar"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Limits of one page.
const (
	MaxFileBytes  = 10 << 20
	MaxTotalBytes = 50 << 20
	MaxFiles      = 1000
	maxDepth      = 16
)

// Types are the files a page may hold, each with the Content-Type it is
// served with: nothing is ever sniffed.
var Types = map[string]string{
	".html": "text/html; charset=utf-8", ".htm": "text/html; charset=utf-8",
	".css": "text/css; charset=utf-8", ".txt": "text/plain; charset=utf-8",
	".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
	".webp": "image/webp", ".svg": "image/svg+xml", ".ico": "image/x-icon",
	".woff": "font/woff", ".woff2": "font/woff2", ".ttf": "font/ttf", ".otf": "font/otf",
	".pdf": "application/pdf",
}

// ErrRefused is a snapshot that cannot be published; ErrTooLarge one over
// the limits. Both wrap a message that says which file and why.
var (
	ErrRefused  = errors.New("refused")
	ErrTooLarge = errors.New("too large")
)

func refuse(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrRefused, fmt.Sprintf(format, a...))
}

// Page is one published snapshot.
type Page struct {
	ID      string    `json:"id"`
	Session string    `json:"session"`
	Token   string    `json:"token"`
	Files   []string  `json:"files"`
	Bytes   int64     `json:"bytes"`
	Created time.Time `json:"created"`
}

// Store is where page records live (the box's store).
type Store interface {
	Put(key string, v any) error
	Get(key string, v any) error
	Each(prefix string, fn func(key string, raw []byte) error) error
	Delete(key string) error
}

// Pages publishes snapshots into dir and keeps their records. Every file
// under dir is made, read and removed through an os.Root: a name that
// would leave dir, by ".." or by a symbolic link, however it came to be
// there, is refused by the kernel walk itself, not by a check beforehand.
type Pages struct {
	root  *os.Root
	store Store
	// beforeWrite, for tests, runs after a file's directories are made
	// and before the file is created.
	beforeWrite func(page, name string)
}

// New opens the page store in dir.
func New(dir string, store Store) (*Pages, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	return &Pages{root: root, store: store}, nil
}

// Close lets go of the page directory.
func (p *Pages) Close() error { return p.root.Close() }

// checkName refuses names that could leave the snapshot or confuse a
// server or a browser.
func checkName(name string) (string, error) {
	// tar -C site -cf site.tar . writes every name as ./name.
	for strings.HasPrefix(name, "./") {
		name = name[2:]
	}
	if name == "" || strings.ContainsAny(name, "\\\x00") || strings.HasPrefix(name, "/") {
		return "", refuse("the file name %q is not allowed", name)
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return "", refuse("the file name %q has a control character", name)
		}
	}
	clean := path.Clean(name)
	if clean != name || clean == "." || clean == ".." || strings.HasPrefix(clean, "../") {
		return "", refuse("the path %q leaves the snapshot or is not clean", name)
	}
	parts := strings.Split(clean, "/")
	if len(parts) > maxDepth {
		return "", refuse("%q is nested too deep", name)
	}
	for _, p := range parts {
		if p == ".." || p == "." || len(p) > 255 || strings.HasPrefix(p, ".") {
			return "", refuse("the path %q has a part that is not allowed (hidden files are not published)", name)
		}
	}
	if _, ok := Types[strings.ToLower(path.Ext(clean))]; !ok {
		return "", refuse("%q: only HTML, CSS, text, images, fonts and PDFs are published", name)
	}
	return clean, nil
}

// file is one accepted file on its way in.
type file struct {
	name string
	open func() (io.ReadCloser, error)
	size int64
}

func checkSizes(files []file) error {
	if len(files) == 0 {
		return refuse("there is nothing to publish")
	}
	if len(files) > MaxFiles {
		return fmt.Errorf("%w: %d files; a page holds at most %d", ErrTooLarge, len(files), MaxFiles)
	}
	var total int64
	for _, f := range files {
		if f.size > MaxFileBytes {
			return fmt.Errorf("%w: %s is %d bytes; a file may be at most %d", ErrTooLarge, f.name, f.size, MaxFileBytes)
		}
		total += f.size
	}
	if total > MaxTotalBytes {
		return fmt.Errorf("%w: %d bytes in all; a page may be at most %d", ErrTooLarge, total, MaxTotalBytes)
	}
	return nil
}

// FromTar publishes a tar stream: regular files and directories only.
func (p *Pages) FromTar(session string, r io.Reader) (*Page, error) {
	tmp := ".incoming-" + strings.ToLower(rand.Text()[:16])
	if err := p.root.Mkdir(tmp, 0o700); err != nil {
		return nil, err
	}
	defer p.root.RemoveAll(tmp)
	tr := tar.NewReader(r)
	var files []file
	var total int64
	seen := map[string]bool{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, refuse("the upload is not a tar archive: %v", err)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if _, err := checkDir(h.Name); err != nil {
				return nil, err
			}
			continue
		case tar.TypeReg:
		default:
			return nil, refuse("%s is a link or a special file: only regular files are published", h.Name)
		}
		name, err := checkName(h.Name)
		if err != nil {
			return nil, err
		}
		if seen[name] {
			return nil, refuse("%s appears twice", name)
		}
		seen[name] = true
		if h.Size > MaxFileBytes {
			return nil, fmt.Errorf("%w: %s is %d bytes; a file may be at most %d", ErrTooLarge, name, h.Size, MaxFileBytes)
		}
		if total += h.Size; total > MaxTotalBytes {
			return nil, fmt.Errorf("%w: more than %d bytes in all", ErrTooLarge, MaxTotalBytes)
		}
		if len(seen) > MaxFiles {
			return nil, fmt.Errorf("%w: more than %d files", ErrTooLarge, MaxFiles)
		}
		stage := path.Join(tmp, strconv.Itoa(len(files)))
		f, err := p.root.OpenFile(stage, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, err
		}
		n, err := io.Copy(f, io.LimitReader(tr, MaxFileBytes+1))
		f.Close()
		if err != nil {
			return nil, err
		}
		files = append(files, file{name: name, size: n, open: func() (io.ReadCloser, error) { return p.root.Open(stage) }})
	}
	return p.publish(session, files)
}

func checkDir(name string) (string, error) {
	clean := strings.TrimSuffix(path.Clean(name), "/")
	if clean == "." {
		return clean, nil
	}
	if strings.HasPrefix(name, "/") || strings.HasPrefix(clean, "..") || strings.Contains(name, "\\") {
		return "", refuse("the directory %q leaves the snapshot", name)
	}
	return clean, nil
}

// publish copies checked files into the page's own directory.
func (p *Pages) publish(session string, files []file) (*Page, error) {
	if err := checkSizes(files); err != nil {
		return nil, err
	}
	pg := &Page{ID: "pg-" + strings.ToLower(rand.Text()[:16]), Session: session, Token: rand.Text() + rand.Text(), Created: time.Now().UTC()}
	if err := p.root.Mkdir(pg.ID, 0o700); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			p.root.RemoveAll(pg.ID)
		}
	}()
	dst, err := p.root.OpenRoot(pg.ID)
	if err != nil {
		return nil, err
	}
	defer dst.Close()
	for _, f := range files {
		if dir := path.Dir(f.name); dir != "." {
			if err := dst.MkdirAll(dir, 0o700); err != nil {
				return nil, err
			}
		}
		if p.beforeWrite != nil {
			p.beforeWrite(pg.ID, f.name)
		}
		in, err := f.open()
		if err != nil {
			return nil, err
		}
		w, err := dst.OpenFile(f.name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			in.Close()
			return nil, err
		}
		n, err := io.Copy(w, io.LimitReader(in, MaxFileBytes+1))
		in.Close()
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, err
		}
		if n > MaxFileBytes {
			return nil, fmt.Errorf("%w: %s grew past %d bytes while it was copied", ErrTooLarge, f.name, MaxFileBytes)
		}
		pg.Files = append(pg.Files, f.name)
		pg.Bytes += n
	}
	sort.Strings(pg.Files)
	if err := p.store.Put("page/"+pg.ID, pg); err != nil {
		return nil, err
	}
	if err := p.store.Put("pagetoken/"+pg.Token, pg.ID); err != nil {
		// A page without its URL is no page.
		if derr := p.store.Delete("page/" + pg.ID); derr != nil {
			return nil, errors.Join(err, derr)
		}
		return nil, err
	}
	ok = true
	return pg, nil
}

// List gives a session's pages ("" for all).
func (p *Pages) List(session string) ([]Page, error) {
	out := []Page{}
	err := p.store.Each("page/", func(_ string, raw []byte) error {
		var pg Page
		if json.Unmarshal(raw, &pg) == nil && (session == "" || pg.Session == session) {
			out = append(out, pg)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the pages: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

// Get returns one page.
func (p *Pages) Get(id string) (*Page, error) {
	var pg Page
	if err := p.store.Get("page/"+id, &pg); err != nil {
		return nil, err
	}
	return &pg, nil
}

// Unpublish removes a page: its URL stops working at once.
func (p *Pages) Unpublish(id string) error {
	pg, err := p.Get(id)
	if err != nil {
		return err
	}
	// The URL goes first: if it cannot, the page is still published.
	if err := p.store.Delete("pagetoken/" + pg.Token); err != nil {
		return fmt.Errorf("the page's URL could not be removed, so it still works: %w", err)
	}
	if err := p.store.Delete("page/" + id); err != nil {
		return err
	}
	return p.root.RemoveAll(id)
}

// byToken finds a page from its URL token.
func (p *Pages) byToken(tok string) (*Page, bool) {
	var id string
	if p.store.Get("pagetoken/"+tok, &id) != nil {
		return nil, false
	}
	pg, err := p.Get(id)
	return pg, err == nil
}
