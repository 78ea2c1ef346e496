package sessions

import (
	"context"
	"errors"
	"sort"
	"sync"
	"time"
)

// Confirmation is a question waiting for a person: a confirm card with
// Yes / No / Cancel. Unanswered by its deadline, it is a No.
type Confirmation struct {
	ID       string    `json:"id"`
	Session  string    `json:"session"`
	Kind     string    `json:"kind"`
	Summary  string    `json:"summary"`
	Deadline time.Time `json:"deadline"`
	Answer   string    `json:"answer,omitempty"`
	// By is who answered; "" when nobody did (no in time, or the turn
	// ended first).
	By string `json:"by,omitempty"`
}

// Answers a person can give.
const (
	AnswerYes    = "yes"
	AnswerNo     = "no"
	AnswerCancel = "cancel"
)

var (
	// ErrNoConfirmation: no such question in that session.
	ErrNoConfirmation = errors.New("no such confirmation")
	// ErrConfirmationClosed: it was answered already or it expired.
	ErrConfirmationClosed = errors.New("this confirmation is closed: it was answered or it expired (no answer counts as no)")
	// ErrBadAnswer: not yes, no or cancel.
	ErrBadAnswer = errors.New(`answer is "yes", "no" or "cancel"`)
)

// Confirmations holds the open questions of every session.
type Confirmations struct {
	mu     sync.Mutex
	open   map[string]*waiting
	closed map[string]closedQ // recently closed, to say why an answer is late
	// OnChange is told when a question opens or closes (event streams).
	OnChange func(Confirmation)
}

type waiting struct {
	c      Confirmation
	answer chan reply
}

// reply is an answer and who gave it.
type reply struct{ answer, by string }

type closedQ struct {
	session string
	at      time.Time
}

// NewConfirmations makes an empty set.
func NewConfirmations() *Confirmations {
	return &Confirmations{open: map[string]*waiting{}, closed: map[string]closedQ{}}
}

// Ask opens a question and waits for the answer, the deadline (a No) or
// ctx (a No). It never returns yes by failure.
func (cs *Confirmations) Ask(ctx context.Context, session, kind, summary string, timeout time.Duration) (string, Confirmation) {
	w := &waiting{c: Confirmation{ID: "c-" + randomID(), Session: session, Kind: kind, Summary: summary, Deadline: time.Now().Add(timeout).UTC()},
		answer: make(chan reply, 1)}
	cs.mu.Lock()
	cs.open[w.c.ID] = w
	cs.mu.Unlock()
	cs.changed(w.c)
	got := reply{answer: AnswerNo}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case got = <-w.answer:
	case <-t.C:
	case <-ctx.Done():
	}
	cs.mu.Lock()
	delete(cs.open, w.c.ID)
	cs.closed[w.c.ID] = closedQ{session: session, at: time.Now()}
	for id, q := range cs.closed {
		if time.Since(q.at) > time.Hour {
			delete(cs.closed, id)
		}
	}
	// An answer that raced the deadline still counts if it got in first.
	select {
	case got = <-w.answer:
	default:
	}
	cs.mu.Unlock()
	w.c.Answer, w.c.By = got.answer, got.by
	cs.changed(w.c)
	return got.answer, w.c
}

func (cs *Confirmations) changed(c Confirmation) {
	if cs.OnChange != nil {
		cs.OnChange(c)
	}
}

// Answer answers an open question in the name of by.
func (cs *Confirmations) Answer(session, id, answer, by string) error {
	if answer != AnswerYes && answer != AnswerNo && answer != AnswerCancel {
		return ErrBadAnswer
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	w, ok := cs.open[id]
	if !ok || w.c.Session != session {
		if q, ok := cs.closed[id]; ok && q.session == session {
			return ErrConfirmationClosed
		}
		return ErrNoConfirmation
	}
	if time.Now().After(w.c.Deadline) {
		return ErrConfirmationClosed
	}
	select {
	case w.answer <- reply{answer, by}:
		delete(cs.open, id)
		cs.closed[id] = closedQ{session: session, at: time.Now()}
		return nil
	default:
		return ErrConfirmationClosed
	}
}

// Pending lists a session's open questions, oldest first.
func (cs *Confirmations) Pending(session string) []Confirmation {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	out := []Confirmation{}
	for _, w := range cs.open {
		if w.c.Session == session {
			out = append(out, w.c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Deadline.Before(out[j].Deadline) })
	return out
}
