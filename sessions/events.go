package sessions

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Store is where sessions keep their records (the box's Badger store).
type Store interface {
	Put(key string, v any) error
	// PutAll stores every key in one transaction.
	PutAll(kv map[string]any) error
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

// eventLog numbers, stores and fans out one session's events. Events
// are written in batches (one disk sync for all that came in meanwhile)
// and shown only once they are on disk: what a client was shown is
// there after a crash, and a chatty worker is not held to one sync per
// line.
type eventLog struct {
	store   Store
	session string
	mask    *Masker
	log     *slog.Logger

	mu      sync.Mutex
	seq     uint64 // the last event numbered
	saved   uint64 // the last event on disk, and shown
	pending []Event
	writing bool
	moved   *sync.Cond // saved moved on
	subs    map[chan Event]struct{}
}

// errPageFull stops reading a replay at its page's end.
var errPageFull = errors.New("replay page full")

// maxReplayBytes is one page of a replay (a variable for tests).
var maxReplayBytes = 8 << 20

const (
	// An emitter that gets this far ahead of the disk waits for it.
	maxPendingEvents = 4096
	// Events written in one transaction.
	eventBatch = 256
)

// openEventLog opens a session's log where it left off. A log whose end
// cannot be read is not opened: new events would be numbered over old.
func openEventLog(store Store, session string, mask *Masker, log *slog.Logger) (*eventLog, error) {
	l := &eventLog{store: store, session: session, mask: mask, log: log, subs: map[chan Event]struct{}{}}
	l.moved = sync.NewCond(&l.mu)
	err := store.Each("event/"+session+"/", func(_ string, raw []byte) error {
		var e Event
		if json.Unmarshal(raw, &e) == nil && e.Seq > l.seq {
			l.seq = e.Seq
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the conversation's events: %w", err)
	}
	l.saved = l.seq
	return l, nil
}

// emit numbers an event and queues it for the disk; subscribers see it
// once it is written. flush waits for that.
func (l *eventLog) emit(typ, turn, job string, data any) Event {
	raw, _ := json.Marshal(data)
	raw = l.mask.JSON(raw)
	l.mu.Lock()
	defer l.mu.Unlock()
	for len(l.pending) >= maxPendingEvents {
		l.moved.Wait()
	}
	l.seq++
	e := Event{Seq: l.seq, Time: time.Now().UTC(), Type: typ, Turn: turn, Job: job, Data: raw}
	l.pending = append(l.pending, e)
	if !l.writing {
		l.writing = true
		go l.drain()
	}
	return e
}

// drain writes queued events in batches, in order, and shows them.
func (l *eventLog) drain() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for len(l.pending) > 0 {
		batch := l.pending[:min(len(l.pending), eventBatch)]
		l.mu.Unlock()
		kv := make(map[string]any, len(batch))
		for _, e := range batch {
			kv[eventKey(l.session, e.Seq)] = e
		}
		err := l.write(kv)
		l.mu.Lock()
		l.pending = l.pending[len(batch):]
		if len(l.pending) == 0 {
			l.pending = nil
		}
		l.saved = batch[len(batch)-1].Seq
		if err != nil {
			// Not on disk, so never shown: a client sees only what a
			// restart would give it again.
			l.log.Error("events could not be stored and are not shown", "session", l.session,
				"from", batch[0].Seq, "to", batch[len(batch)-1].Seq, "err", err)
			l.moved.Broadcast()
			continue
		}
	subs:
		for ch := range l.subs {
			for _, e := range batch {
				select {
				case ch <- e:
				default:
					// A subscriber that cannot keep up is cut off; it
					// reconnects with since= and replays from the store.
					delete(l.subs, ch)
					close(ch)
					continue subs
				}
			}
		}
		l.moved.Broadcast()
	}
	l.writing = false
}

// write stores a batch, trying again a few times over about three
// seconds (a disk that filled up may get room back).
func (l *eventLog) write(kv map[string]any) error {
	var err error
	for wait := 100 * time.Millisecond; wait <= 1600*time.Millisecond; wait *= 2 {
		if err = l.store.PutAll(kv); err == nil {
			return nil
		}
		time.Sleep(wait)
	}
	return err
}

// flush waits until every event numbered so far is on disk (or given up).
func (l *eventLog) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for target := l.seq; l.saved < target; {
		l.moved.Wait()
	}
}

// Subscribe replays events after since, then streams new ones. The
// channel closes when the subscriber falls behind or cancel is called.
func (l *eventLog) subscribe(since uint64) (replay []Event, live chan Event, cancel func()) {
	live = make(chan Event, 1024)
	l.mu.Lock()
	// Whatever was emitted before the call is in the replay.
	for target := l.seq; l.saved < target; {
		l.moved.Wait()
	}
	l.subs[live] = struct{}{}
	last := l.saved
	l.mu.Unlock()
	// A replay is read in pages: never the whole log in memory. A page
	// that is full ends the stream after it, and the client reconnects
	// with since= for the next one, as one that fell behind does.
	size := 0
	full := false
	err := l.store.Each("event/"+l.session+"/", func(_ string, raw []byte) error {
		var e Event
		if json.Unmarshal(raw, &e) != nil || e.Seq <= since || e.Seq > last {
			return nil
		}
		if size += len(raw); size > maxReplayBytes {
			full = true
			return errPageFull
		}
		replay = append(replay, e)
		return nil
	})
	if err != nil && !errors.Is(err, errPageFull) {
		// What could be read is sent; the client comes back for the rest.
		l.log.Error("reading a conversation's events for a replay", "session", l.session, "err", err)
		full = true
	}
	if full {
		l.mu.Lock()
		if _, ok := l.subs[live]; ok {
			delete(l.subs, live)
			close(live)
		}
		l.mu.Unlock()
	}
	return replay, live, func() {
		l.mu.Lock()
		if _, ok := l.subs[live]; ok {
			delete(l.subs, live)
			close(live)
		}
		l.mu.Unlock()
	}
}
