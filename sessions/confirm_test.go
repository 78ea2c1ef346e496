package sessions

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestConfirmationAnswers(t *testing.T) {
	cs := NewConfirmations()
	ask := func(timeout time.Duration) (chan string, string) {
		ch := make(chan string, 1)
		go func() { a, _ := cs.Ask(context.Background(), "s1", "test", "do it?", timeout); ch <- a }()
		for {
			if p := cs.Pending("s1"); len(p) == 1 {
				return ch, p[0].ID
			}
			time.Sleep(time.Millisecond)
		}
	}
	ch, id := ask(time.Minute)
	if err := cs.Answer("s2", id, AnswerYes, "ada"); !errors.Is(err, ErrNoConfirmation) {
		t.Fatalf("answered from another session: %v", err)
	}
	if err := cs.Answer("s1", id, "sure", "ada"); !errors.Is(err, ErrBadAnswer) {
		t.Fatalf("bad answer: %v", err)
	}
	if err := cs.Answer("s1", id, AnswerYes, "ada"); err != nil {
		t.Fatal(err)
	}
	if a := <-ch; a != AnswerYes {
		t.Fatalf("got %s", a)
	}
	if err := cs.Answer("s1", id, AnswerNo, "ada"); !errors.Is(err, ErrConfirmationClosed) {
		t.Fatalf("second answer: %v", err)
	}
	// Unanswered: no, and closed.
	ch, id = ask(50 * time.Millisecond)
	if a := <-ch; a != AnswerNo {
		t.Fatalf("expired to %s", a)
	}
	if err := cs.Answer("s1", id, AnswerYes, "ada"); !errors.Is(err, ErrConfirmationClosed) {
		t.Fatalf("late answer: %v", err)
	}
	// The asker going away is a no too.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if a, _ := cs.Ask(ctx, "s1", "test", "x", time.Minute); a != AnswerNo {
		t.Fatalf("cancelled ask: %s", a)
	}
}
