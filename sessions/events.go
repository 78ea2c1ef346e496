package sessions

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"
)

// Store is where sessions keep their records (the box's Badger store).
type Store interface {
	Put(key string, v any) error
	Get(key string, v any) error
	Each(prefix string, fn func(key string, raw []byte) error) error
	Delete(key string) error
}

// Event is one thing that happened in a session. Seq numbers start at 1
// and have no gaps, so a client that reconnects with the last one it saw
// misses nothing.
type Event struct {
	Seq  uint64          `json:"seq"`
	Time time.Time       `json:"time"`
	Type string          `json:"type"`
	Turn string          `json:"turn,omitempty"`
	Job  string          `json:"job,omitempty"`
	Data json.RawMessage `json:"data,omitempty"`
}

func eventKey(session string, seq uint64) string {
	return fmt.Sprintf("event/%s/%020d", session, seq)
}

// eventLog numbers, stores and fans out one session's events.
type eventLog struct {
	store   Store
	session string

	mu   sync.Mutex
	seq  uint64
	subs map[chan Event]struct{}
}

func openEventLog(store Store, session string) *eventLog {
	l := &eventLog{store: store, session: session, subs: map[chan Event]struct{}{}}
	_ = store.Each("event/"+session+"/", func(_ string, raw []byte) error {
		var e Event
		if json.Unmarshal(raw, &e) == nil && e.Seq > l.seq {
			l.seq = e.Seq
		}
		return nil
	})
	return l
}

// emit stores an event before anyone sees it: what a client was shown is
// on disk.
func (l *eventLog) emit(typ, turn, job string, data any) Event {
	raw, _ := json.Marshal(data)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	e := Event{Seq: l.seq, Time: time.Now().UTC(), Type: typ, Turn: turn, Job: job, Data: raw}
	_ = l.store.Put(eventKey(l.session, e.Seq), e)
	for ch := range l.subs {
		select {
		case ch <- e:
		default:
			// A subscriber that cannot keep up is cut off; it reconnects
			// with since= and replays from the store.
			delete(l.subs, ch)
			close(ch)
		}
	}
	return e
}

// Subscribe replays events after since, then streams new ones. The
// channel closes when the subscriber falls behind or cancel is called.
func (l *eventLog) subscribe(since uint64) (replay []Event, live chan Event, cancel func()) {
	live = make(chan Event, 1024)
	l.mu.Lock()
	l.subs[live] = struct{}{}
	last := l.seq
	l.mu.Unlock()
	_ = l.store.Each("event/"+l.session+"/", func(_ string, raw []byte) error {
		var e Event
		if json.Unmarshal(raw, &e) == nil && e.Seq > since && e.Seq <= last {
			replay = append(replay, e)
		}
		return nil
	})
	return replay, live, func() {
		l.mu.Lock()
		if _, ok := l.subs[live]; ok {
			delete(l.subs, live)
			close(live)
		}
		l.mu.Unlock()
	}
}
