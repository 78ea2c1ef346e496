package companion

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/lowkeyhq/lowkey/pairing"
)

// The answer page: on this computer's loopback only, for the person here
// to answer questions (and for "lowkey-companion approve|deny"). Every
// request carries the token in state/answer.token (owner-only), and the
// Host must be the loopback address itself, so neither another web page in
// the person's browser nor a name that resolves to loopback can use it.

var (
	//go:embed answer.html
	answerPage []byte
	//go:embed answer.js
	answerScript []byte
	//go:embed answer.css
	answerStyle []byte
)

// answerServer serves the page and its API until Close.
type answerServer struct {
	srv   *http.Server
	ln    net.Listener
	token string
	ask   *asker
}

func startAnswerServer(st State, ask *asker) (*answerServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("the answer page: %w", err)
	}
	token := rand.Text()
	if err := pairing.WriteFileAtomic(st.path("answer.token"), []byte(token+"\n")); err != nil {
		ln.Close()
		return nil, err
	}
	a := &answerServer{ln: ln, token: token, ask: ask}
	mux := http.NewServeMux()
	for path, f := range map[string]struct {
		typ  string
		body []byte
	}{"/{$}": {"text/html; charset=utf-8", answerPage}, "/answer.js": {"text/javascript", answerScript}, "/answer.css": {"text/css", answerStyle}} {
		mux.HandleFunc("GET "+path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", f.typ)
			w.Header().Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; form-action 'none'; base-uri 'none'")
			w.Header().Set("Referrer-Policy", "no-referrer")
			w.Header().Set("X-Content-Type-Options", "nosniff")
			_, _ = w.Write(f.body)
		})
	}
	mux.HandleFunc("GET /api/questions", a.authed(func(w http.ResponseWriter, r *http.Request) {
		writeAnswerJSON(w, http.StatusOK, a.ask.list())
	}))
	mux.HandleFunc("POST /api/answer", a.authed(func(w http.ResponseWriter, r *http.Request) {
		var req struct{ ID, Answer string }
		if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil {
			writeAnswerJSON(w, http.StatusBadRequest, map[string]string{"error": "send {\"id\", \"answer\"}"})
			return
		}
		q, err := a.ask.answer(req.ID, req.Answer)
		if err != nil {
			writeAnswerJSON(w, http.StatusConflict, map[string]string{"error": err.Error()})
			return
		}
		writeAnswerJSON(w, http.StatusOK, map[string]any{"question": q, "answer": req.Answer})
	}))
	a.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second}
	go func() { _ = a.srv.Serve(ln) }()
	return a, nil
}

// URL is the page's address, with the token for the page's script.
func (a *answerServer) URL() string { return "http://" + a.ln.Addr().String() + "/#" + a.token }

func (a *answerServer) authed(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Host != a.ln.Addr().String() {
			writeAnswerJSON(w, http.StatusForbidden, map[string]string{"error": "ask on " + a.ln.Addr().String()})
			return
		}
		got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		if subtle.ConstantTimeCompare([]byte(got), []byte(a.token)) != 1 {
			writeAnswerJSON(w, http.StatusUnauthorized, map[string]string{"error": "the token in answer.token is needed"})
			return
		}
		next(w, r)
	}
}

func writeAnswerJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (a *answerServer) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = a.srv.Shutdown(ctx)
}

// Answer gives the running companion's question id (or the only one open,
// with id "") its answer, through its answer page. It is what
// "lowkey-companion approve|deny" does.
func Answer(ctx context.Context, st State, id, answer string) (*Question, error) {
	s, err := ReadStatus(st)
	if err != nil || !s.Running() || s.AnswerAddr == "" {
		return nil, errors.New(`no companion is running here ("lowkey-companion run")`)
	}
	tok, err := os.ReadFile(st.path("answer.token"))
	if err != nil {
		return nil, err
	}
	body, _ := json.Marshal(map[string]string{"id": id, "answer": answer})
	req, err := http.NewRequestWithContext(ctx, "POST", "http://"+s.AnswerAddr+"/api/answer", strings.NewReader(string(body)))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("the running companion's answer page: %w", err)
	}
	defer resp.Body.Close()
	var out struct {
		Question *Question `json:"question"`
		Error    string    `json:"error"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&out); err != nil {
		return nil, fmt.Errorf("the running companion's answer page: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, errors.New(out.Error)
	}
	return out.Question, nil
}
