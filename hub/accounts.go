package hub

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/lowkeyhq/lowkey/errcode"
	"golang.org/x/crypto/bcrypt"
)

// People on a box: one owner, and members the owner adds. Everyone on a
// box can drive its agents; only the owner manages people and devices.
const (
	RoleOwner  = "owner"
	RoleMember = "member"
)

// User is a person who can sign in to the web app.
type User struct {
	Name    string    `json:"name"`
	Role    string    `json:"role"`
	Hash    []byte    `json:"hash,omitempty"`
	Created time.Time `json:"created"`
}

// webSession is a signed-in browser.
type webSession struct {
	User    string    `json:"user"`
	CSRF    string    `json:"csrf"`
	Expires time.Time `json:"expires"`
}

// CookieName is the web app's session cookie: __Host- keeps it to this
// origin, over HTTPS (or localhost), for the whole path.
const CookieName = "__Host-lowkey"

const webSessionLife = 30 * 24 * time.Hour

var userName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,31}$`)

// randomToken is a web session's token, a CSRF token or a setup link's:
// 260 bits.
func randomToken() string { return rand.Text() + rand.Text() }

func hashToken(t string) string {
	s := sha256.Sum256([]byte(t))
	return hex.EncodeToString(s[:])
}

// loginLimiter slows password guessing: ten failures a minute per name.
// loginLimiter counts sign-in attempts per name and per remote address.
// An attempt is counted when it starts, before the password is checked,
// so a burst of guesses in parallel is held to the limit like a series.
type loginLimiter struct {
	mu    sync.Mutex
	tries map[string]*loginTries
}

type loginTries struct {
	fails   []time.Time // in the last minute
	pending int         // being checked now
}

// reserve takes a place for one attempt under every key, or refuses.
// done says how it went: a success frees the place, a failure keeps it
// for a minute.
func (l *loginLimiter) reserve(keys ...string) (done func(ok bool), allowed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.tries == nil {
		l.tries = map[string]*loginTries{}
	}
	now := time.Now()
	for _, k := range keys {
		t := l.tries[k]
		if t == nil {
			continue
		}
		t.prune(now)
		if len(t.fails)+t.pending >= loginsPerMinute {
			return nil, false
		}
	}
	if len(l.tries)+len(keys) > maxLoginKeys {
		for k, t := range l.tries {
			if t.prune(now); len(t.fails) == 0 && t.pending == 0 {
				delete(l.tries, k)
			}
		}
		if len(l.tries)+len(keys) > maxLoginKeys {
			// Full of live attempts: refuse rather than grow.
			return nil, false
		}
	}
	held := make([]*loginTries, 0, len(keys))
	for _, k := range keys {
		t := l.tries[k]
		if t == nil {
			t = &loginTries{}
			l.tries[k] = t
		}
		t.pending++
		held = append(held, t)
	}
	return func(ok bool) {
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, t := range held {
			t.pending--
			if !ok {
				t.fails = append(t.fails, time.Now())
			}
		}
	}, true
}

func (t *loginTries) prune(now time.Time) {
	i := 0
	for i < len(t.fails) && now.Sub(t.fails[i]) >= time.Minute {
		i++
	}
	t.fails = t.fails[i:]
}

func (h *Hub) users() ([]User, error) {
	var out []User
	err := h.store.Each("user/", func(_ string, raw []byte) error {
		var u User
		if json.Unmarshal(raw, &u) == nil {
			out = append(out, u)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the accounts: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// hasOwner says whether the box has its accounts; an unreadable list
// counts as having them, so a setup link is never opened by a failed read.
func (h *Hub) hasOwner() bool {
	us, err := h.users()
	return err != nil || len(us) > 0
}

// prepareSetup makes the one-time link that creates the owner, while the
// box has none.
func (h *Hub) prepareSetup() error {
	us, err := h.users()
	if err != nil {
		return err
	}
	if len(us) > 0 {
		return nil
	}
	h.setupToken = randomToken()
	return h.store.Put("meta/setup", hashToken(h.setupToken))
}

// SetupURL is the one-time link that creates the owner ("" once there is
// one).
func (h *Hub) SetupURL() string {
	if h.setupToken == "" || h.hasOwner() {
		return ""
	}
	return h.WebURL() + "/#/setup/" + h.setupToken
}

// WebURL is the address to open the web app at. On loopback it is
// "localhost": browsers treat it as a secure context, which the app's
// __Host- cookie needs over plain HTTP.
func (h *Hub) WebURL() string {
	return strings.Replace(h.URL(), "://127.0.0.1:", "://localhost:", 1)
}

// signIn starts a web session for u and answers with it; a session that
// cannot be stored is an error, not a cookie that leads nowhere.
func (h *Hub) signIn(w http.ResponseWriter, u User) {
	ws, err := h.startWebSession(w, u)
	if err != nil {
		h.log.Error("could not store a web session", "user", u.Name, "err", err)
		fail(w, errcode.Internal, "could not sign in: the box could not store the session")
		return
	}
	h.me(w, u, ws)
}

func (h *Hub) startWebSession(w http.ResponseWriter, u User) (webSession, error) {
	tok := randomToken()
	ws := webSession{User: u.Name, CSRF: randomToken(), Expires: time.Now().Add(webSessionLife).UTC()}
	if err := h.store.Put("websess/"+hashToken(tok), ws); err != nil {
		return ws, err
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: tok, Path: "/", HttpOnly: true, Secure: true,
		SameSite: http.SameSiteStrictMode, Expires: ws.Expires})
	return ws, nil
}

// webUser finds the signed-in person of a request.
func (h *Hub) webUser(r *http.Request) (*User, *webSession, string) {
	c, err := r.Cookie(CookieName)
	if err != nil || c.Value == "" {
		return nil, nil, ""
	}
	key := "websess/" + hashToken(c.Value)
	var ws webSession
	if err := h.store.Get(key, &ws); err != nil || time.Now().After(ws.Expires) {
		return nil, nil, ""
	}
	var u User
	if err := h.store.Get("user/"+ws.User, &u); err != nil {
		return nil, nil, "" // removed: access stops at once
	}
	return &u, &ws, key
}

type principal struct {
	name string
	role string
}

type principalKey struct{}

// auth admits a request: the admin socket and the bearer token are the
// owner; a browser signs in with its cookie and must send its CSRF token
// with every request that changes something.
func (h *Hub) auth(admin bool, ownerOnly bool, next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p principal
		switch tok, bearer := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); {
		case admin:
			p = principal{"owner (on the box)", RoleOwner}
		case bearer:
			if subtle.ConstantTimeCompare([]byte(tok), []byte(h.Token())) != 1 {
				fail(w, errcode.Unauthorized, "that bearer token is not this box's: run \"lowkey token\" on the box")
				return
			}
			p = principal{"owner", RoleOwner}
		default:
			u, ws, _ := h.webUser(r)
			if u == nil {
				w.Header().Set("WWW-Authenticate", `Bearer realm="lowkey"`)
				fail(w, errcode.Unauthorized, "sign in, or send a bearer token (\"lowkey token\" on the box)")
				return
			}
			if r.Method != http.MethodGet && r.Method != http.MethodHead &&
				subtle.ConstantTimeCompare([]byte(r.Header.Get("X-CSRF-Token")), []byte(ws.CSRF)) != 1 {
				fail(w, errcode.CSRF, "this request needs the page's CSRF token: reload the page")
				return
			}
			p = principal{u.Name, u.Role}
		}
		if ownerOnly && p.role != RoleOwner {
			fail(w, errcode.OwnerOnly, "only the box's owner can do this")
			return
		}
		ctx := context.WithValue(r.Context(), whoKey{}, p.name)
		ctx = context.WithValue(ctx, principalKey{}, p)
		next(w, r.WithContext(ctx))
	})
}

type credentials struct {
	Token    string `json:"token,omitempty"`
	Name     string `json:"name"`
	Password string `json:"password"`
	Role     string `json:"role,omitempty"`
}

func checkNewUser(c credentials) error {
	if !userName.MatchString(c.Name) {
		return errors.New("a name is 1 to 32 letters, digits, '.', '_' or '-'")
	}
	if len(c.Password) < 10 || len(c.Password) > 72 {
		return errors.New("a password is 10 to 72 characters")
	}
	return nil
}

func (h *Hub) me(w http.ResponseWriter, u User, ws webSession) {
	writeJSON(w, http.StatusOK, map[string]string{"name": u.Name, "role": u.Role, "csrf": ws.CSRF, "box": h.cfg.Name})
}

// postSetup creates the owner with the one-time link's token.
func (h *Hub) postSetup(w http.ResponseWriter, r *http.Request) {
	var c credentials
	if !readJSON(w, r, &c) {
		return
	}
	var want string
	if h.store.Get("meta/setup", &want) != nil || h.hasOwner() {
		fail(w, errcode.AlreadySetUp, "this box has an owner already: sign in")
		return
	}
	if subtle.ConstantTimeCompare([]byte(hashToken(c.Token)), []byte(want)) != 1 {
		fail(w, errcode.BadToken, "this setup link is not valid: use the one the hub printed at start")
		return
	}
	if err := checkNewUser(c); err != nil {
		fail(w, errcode.BadRequest, err.Error())
		return
	}
	hash, _ := bcrypt.GenerateFromPassword([]byte(c.Password), bcrypt.DefaultCost)
	u := User{Name: c.Name, Role: RoleOwner, Hash: hash, Created: time.Now().UTC()}
	if err := h.store.Put("user/"+u.Name, u); err != nil {
		fail(w, errcode.Internal, "could not save the owner")
		return
	}
	h.setupToken = ""
	if err := h.store.Delete("meta/setup"); err != nil {
		// The link is refused now (there is an owner), whatever the store kept.
		h.log.Error("could not remove the used setup link", "err", err)
	}
	h.log.Info("owner created", "name", u.Name)
	h.signIn(w, u)
}

func (h *Hub) postLogin(w http.ResponseWriter, r *http.Request) {
	var c credentials
	if !readJSON(w, r, &c) {
		return
	}
	var u User
	err := h.store.Get("user/"+c.Name, &u)
	if err != nil && !errors.Is(err, ErrNotFound) {
		fail(w, errcode.Internal, "could not read the accounts: try again")
		return
	}
	// A name that is no account shares one count, so the limiter keeps
	// no entry per name ever tried.
	nameKey := "name\x00?"
	if err == nil {
		nameKey = "name\x00" + c.Name
	}
	addr, _, _ := net.SplitHostPort(r.RemoteAddr)
	done, ok := h.logins.reserve(nameKey, "addr\x00"+addr)
	if !ok {
		fail(w, errcode.TooMany, "too many sign-in attempts: wait a minute")
		return
	}
	select {
	case h.checking <- struct{}{}:
	case <-r.Context().Done():
		done(false)
		return
	}
	if err != nil {
		// Same work either way, so timing says nothing about the name.
		_ = bcrypt.CompareHashAndPassword([]byte("$2a$10$0000000000000000000000000000000000000000000000000000"), []byte(c.Password))
	} else {
		err = bcrypt.CompareHashAndPassword(u.Hash, []byte(c.Password))
	}
	<-h.checking
	done(err == nil)
	if err != nil {
		fail(w, errcode.BadLogin, "wrong name or password")
		return
	}
	h.signIn(w, u)
}

func (h *Hub) postLogout(w http.ResponseWriter, r *http.Request) {
	if _, _, key := h.webUser(r); key != "" {
		if err := h.store.Delete(key); err != nil {
			fail(w, errcode.Internal, "could not end the session: try again")
			return
		}
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	writeJSON(w, http.StatusOK, map[string]bool{"signed_out": true})
}

func (h *Hub) getMe(w http.ResponseWriter, r *http.Request) {
	if u, ws, _ := h.webUser(r); u != nil {
		h.me(w, *u, *ws)
		return
	}
	p, _ := r.Context().Value(principalKey{}).(principal)
	writeJSON(w, http.StatusOK, map[string]string{"name": p.name, "role": p.role, "csrf": "", "box": h.cfg.Name})
}

func (h *Hub) getUsers(w http.ResponseWriter, r *http.Request) {
	us, err := h.users()
	if err != nil {
		fail(w, errcode.Internal, err.Error())
		return
	}
	for i := range us {
		us[i].Hash = nil
	}
	if us == nil {
		us = []User{}
	}
	writeJSON(w, http.StatusOK, us)
}

func (h *Hub) postUser(w http.ResponseWriter, r *http.Request) {
	var c credentials
	if !readJSON(w, r, &c) {
		return
	}
	if err := checkNewUser(c); err != nil {
		fail(w, errcode.BadRequest, err.Error())
		return
	}
	if c.Role != "" && c.Role != RoleMember {
		fail(w, errcode.BadRequest, "people are added as members; a box has one owner")
		return
	}
	var existing User
	if h.store.Get("user/"+c.Name, &existing) == nil {
		fail(w, errcode.Exists, "someone is already called "+c.Name)
		return
	}
	hash, _ := bcrypt.GenerateFromPassword([]byte(c.Password), bcrypt.DefaultCost)
	u := User{Name: c.Name, Role: RoleMember, Hash: hash, Created: time.Now().UTC()}
	if err := h.store.Put("user/"+u.Name, u); err != nil {
		fail(w, errcode.Internal, "could not save")
		return
	}
	h.log.Info("member added", "name", u.Name, "by", who(r))
	h.changed(UsersChanged)
	u.Hash = nil
	writeJSON(w, http.StatusCreated, u)
}

// deleteUser removes a member; their signed-in browsers stop at once.
func (h *Hub) deleteUser(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var u User
	if h.store.Get("user/"+name, &u) != nil {
		fail(w, errcode.NotFound, "no one called "+name)
		return
	}
	if u.Role == RoleOwner {
		fail(w, errcode.BadRequest, "the owner cannot be removed")
		return
	}
	if err := h.store.Delete("user/" + name); err != nil {
		fail(w, errcode.Internal, "could not remove "+name+": they can still sign in")
		return
	}
	var keys []string
	if err := h.store.Each("websess/", func(key string, raw []byte) error {
		var ws webSession
		if json.Unmarshal(raw, &ws) == nil && ws.User == name {
			keys = append(keys, key)
		}
		return nil
	}); err != nil {
		h.log.Error("reading the web sessions of a removed member", "err", err)
	}
	for _, k := range keys {
		if err := h.store.Delete(k); err != nil {
			h.log.Error("could not end a removed member's web session", "name", name, "err", err)
		}
	}
	h.log.Info("member removed", "name", name, "by", who(r))
	h.changed(UsersChanged)
	writeJSON(w, http.StatusOK, map[string]string{"removed": name})
}
