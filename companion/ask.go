package companion

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/lowkeyhq/lowkey/devicectl"
	"github.com/lowkeyhq/lowkey/errcode"
)

// Answers the person at this computer can give a question.
const (
	AllowConversation = "conversation" // for as long as the conversation lasts
	AllowHour         = "hour"         // for an hour
	Deny              = "deny"
)

// DefaultAskWait is how long a question waits for the person before it is
// a Deny (shorter when the action's own deadline comes first).
const DefaultAskWait = 2 * time.Minute

// maxQuestions bounds the questions open at once (one per conversation and
// capability; more are refused without asking).
const maxQuestions = 16

// Question is an action waiting for the person at this computer.
type Question struct {
	ID           string    `json:"id"`
	Conversation string    `json:"conversation"`
	Capability   string    `json:"capability"`
	Action       string    `json:"action"`
	Since        time.Time `json:"since"`
	Deadline     time.Time `json:"deadline"`
}

type question struct {
	Question
	answer chan string
	done   chan struct{}
	result error
}

// asker asks the person at this computer before a conversation's first
// action on a capability whose rule is Ask.
type asker struct {
	state State
	log   *slog.Logger
	wait  time.Duration
	// tell tells the box; changed tells whoever shows the open questions.
	tell    func(devicectl.ConsentNotice)
	changed func([]Question)
	// changing keeps changed's calls in order, each with the list as it
	// is then: two questions ending at once never leave an old list shown.
	changing sync.Mutex

	mu   sync.Mutex
	open map[string]*question // by ID
}

func newAsker(st State, log *slog.Logger, wait time.Duration) *asker {
	if wait <= 0 {
		wait = DefaultAskWait
	}
	return &asker{state: st, log: log, wait: wait, open: map[string]*question{}, tell: func(devicectl.ConsentNotice) {}, changed: func([]Question) {}}
}

// check lets the action through when the rule is Trust or an answer given
// here covers it; otherwise it asks and waits. A failure to read the rules
// never lets an action through.
func (a *asker) check(ctx context.Context, conversation string, capability devicectl.Capability, action string) error {
	c, err := a.state.Consent()
	if err != nil {
		return &errcode.Error{Code: errcode.Declined, Message: "this computer could not read its consent rules: " + err.Error()}
	}
	if c.Rule(capability) == Trust || c.Allows(conversation, capability, time.Now()) {
		return nil
	}
	q, err := a.question(ctx, conversation, capability, action)
	if err != nil {
		return err
	}
	select {
	case <-q.done:
		return q.result
	case <-ctx.Done():
		// The action gave up; the question stays for the others waiting
		// on it until its own deadline.
		return &errcode.Error{Code: errcode.Declined, Message: "no answer from the person at this computer before the action's deadline: that is a no"}
	}
}

// question opens a question, or joins the one already open for the same
// conversation and capability.
func (a *asker) question(ctx context.Context, conversation string, capability devicectl.Capability, action string) (*question, error) {
	a.mu.Lock()
	for _, q := range a.open {
		if q.Conversation == conversation && q.Capability == string(capability) {
			a.mu.Unlock()
			return q, nil
		}
	}
	if len(a.open) >= maxQuestions {
		a.mu.Unlock()
		return nil, &errcode.Error{Code: errcode.Declined, Message: "too many questions wait for the person at this computer already"}
	}
	deadline := time.Now().Add(a.wait)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	q := &question{Question: Question{ID: strings.ToLower(rand.Text()[:6]), Conversation: conversation, Capability: string(capability),
		Action: action, Since: time.Now().UTC(), Deadline: deadline.UTC()}, answer: make(chan string, 1), done: make(chan struct{})}
	a.open[q.ID] = q
	a.mu.Unlock()
	a.log.Warn("waiting for the person at this computer", "question", q.ID, "conversation", conversation, "capability", capability, "action", action,
		"answer", fmt.Sprintf("lowkey-companion approve %s (or deny %s)", q.ID, q.ID))
	a.tell(devicectl.ConsentNotice{Conversation: conversation, Capability: string(capability), Action: action, State: devicectl.ConsentWaiting})
	a.showOpen()
	go a.await(q, time.Until(deadline))
	return q, nil
}

// await waits for the answer or the deadline, records it and tells.
func (a *asker) await(q *question, wait time.Duration) {
	t := time.NewTimer(wait)
	defer t.Stop()
	var answer string
	select {
	case answer = <-q.answer:
	case <-t.C:
	}
	cp := devicectl.Capability(q.Capability)
	n := devicectl.ConsentNotice{Conversation: q.Conversation, Capability: q.Capability, Action: q.Action}
	switch answer {
	case AllowConversation, AllowHour:
		var until time.Time
		if answer == AllowHour {
			until = time.Now().Add(time.Hour).UTC()
		}
		if err := a.state.approve(q.Conversation, cp, until); err != nil {
			// Not kept: this action goes through, the next one asks again.
			a.log.Error("could not keep the answer", "err", err)
		}
		n.State, n.Until = devicectl.ConsentAllowed, until
	case Deny:
		n.State = devicectl.ConsentDenied
		q.result = &errcode.Error{Code: errcode.Declined, Message: fmt.Sprintf("the person at this computer denied %s access for this conversation", q.Capability)}
	default:
		n.State = devicectl.ConsentUnanswered
		q.result = &errcode.Error{Code: errcode.Declined, Message: fmt.Sprintf("no answer from the person at this computer in time for %s access: that is a no", q.Capability)}
	}
	a.mu.Lock()
	delete(a.open, q.ID)
	a.mu.Unlock()
	// Shown and told before the action learns its fate: whoever sees the
	// action's answer sees the question gone.
	a.showOpen()
	a.log.Info("the person at this computer answered", "question", q.ID, "conversation", q.Conversation, "capability", q.Capability, "answer", n.State)
	a.tell(n)
	close(q.done)
}

// showOpen hands changed the questions open now.
func (a *asker) showOpen() {
	a.changing.Lock()
	defer a.changing.Unlock()
	a.changed(a.list())
}

// answer gives an open question its answer; with id "" the only one open.
func (a *asker) answer(id, answer string) (*Question, error) {
	if answer != AllowConversation && answer != AllowHour && answer != Deny {
		return nil, fmt.Errorf("the answer is %s, %s or %s", AllowConversation, AllowHour, Deny)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	q := a.open[id]
	if id == "" {
		if len(a.open) != 1 {
			return nil, fmt.Errorf("%d questions are open: name one (lowkey-companion status lists them)", len(a.open))
		}
		for _, only := range a.open {
			q = only
		}
	}
	if q == nil {
		return nil, fmt.Errorf("no open question %q (it was answered, or its time ran out)", id)
	}
	select {
	case q.answer <- answer:
	default:
		return nil, fmt.Errorf("question %s is answered already", q.ID)
	}
	out := q.Question
	return &out, nil
}

func (a *asker) list() []Question {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.listLocked()
}

func (a *asker) listLocked() []Question {
	out := make([]Question, 0, len(a.open))
	for _, q := range a.open {
		out = append(out, q.Question)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Since.Before(out[j].Since) })
	return out
}
