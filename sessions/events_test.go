package sessions

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"testing"
)

// memStore is a Store in memory, for the event log alone.
type memStore struct {
	mu sync.Mutex
	kv map[string][]byte
}

func (m *memStore) Put(key string, v any) error { return m.PutAll(map[string]any{key: v}) }
func (m *memStore) PutAll(kv map[string]any) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, v := range kv {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		m.kv[k] = b
	}
	return nil
}
func (m *memStore) Get(key string, v any) error { return fmt.Errorf("not used") }
func (m *memStore) Delete(key string) error     { return fmt.Errorf("not used") }
func (m *memStore) Each(prefix string, fn func(string, []byte) error) error {
	m.mu.Lock()
	var keys []string
	for k := range m.kv {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	m.mu.Unlock()
	for _, k := range keys {
		if err := fn(k, m.kv[k]); err != nil {
			return err
		}
	}
	return nil
}

// A long log is replayed in pages: each ends the stream, and a client
// that reconnects with since= gets the next one, until it has every
// event once, in order.
func TestReplayComesInPages(t *testing.T) {
	was := maxReplayBytes
	maxReplayBytes = 4 << 10
	t.Cleanup(func() { maxReplayBytes = was })
	l, err := openEventLog(&memStore{kv: map[string][]byte{}}, "s-1", &Masker{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		l.emit("turn.output", "t-1", "", map[string]string{"text": fmt.Sprintf("line %d", i)})
	}
	l.flush()
	var got []uint64
	since, pages := uint64(0), 0
	for pages < 100 {
		replay, live, cancel := l.subscribe(since)
		pages++
		for _, e := range replay {
			got = append(got, e.Seq)
			since = e.Seq
		}
		open := true
		select {
		case _, ok := <-live:
			open = ok
		default:
		}
		cancel()
		if len(replay) == 0 || open {
			break
		}
	}
	if pages < 3 {
		t.Fatalf("200 events came in %d page(s): the replay is not paged", pages)
	}
	if len(got) != 200 {
		t.Fatalf("%d events replayed, want 200", len(got))
	}
	for i, seq := range got {
		if seq != uint64(i+1) {
			t.Fatalf("event %d has seq %d", i, seq)
		}
	}
}

// failingStore refuses writes while fail is set, as a full disk does.
type failingStore struct {
	*memStore
	mu   sync.Mutex
	fail bool
}

func (f *failingStore) PutAll(kv map[string]any) error {
	f.mu.Lock()
	fail := f.fail
	f.mu.Unlock()
	if fail {
		return fmt.Errorf("no space left on device")
	}
	return f.memStore.PutAll(kv)
}

// Events the store refuses are never shown: a client sees only what a
// restart would give it again. Once the store takes writes, events flow.
func TestEventsTheStoreRefusesAreNotShown(t *testing.T) {
	st := &failingStore{memStore: &memStore{kv: map[string][]byte{}}}
	l, err := openEventLog(st, "s-1", &Masker{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	_, live, cancel := l.subscribe(0)
	defer cancel()
	l.emit("turn.output", "t-1", "", map[string]string{"text": "kept"})
	l.flush()
	st.mu.Lock()
	st.fail = true
	st.mu.Unlock()
	l.emit("turn.output", "t-1", "", map[string]string{"text": "refused"})
	l.flush() // the retries give up
	st.mu.Lock()
	st.fail = false
	st.mu.Unlock()
	l.emit("turn.output", "t-1", "", map[string]string{"text": "after"})
	l.flush()
	var shown []string
	for len(shown) < 2 {
		e := <-live
		shown = append(shown, string(e.Data))
	}
	if !strings.Contains(shown[0], "kept") || !strings.Contains(shown[1], "after") {
		t.Fatalf("shown: %q", shown)
	}
	replay, _, cancel2 := l.subscribe(0)
	cancel2()
	for _, e := range replay {
		if strings.Contains(string(e.Data), "refused") {
			t.Fatal("a refused event was stored")
		}
	}
	if len(replay) != 2 {
		t.Fatalf("%d events stored, want 2", len(replay))
	}
}

// A new turn is handed the end of its conversation that fits the bound,
// newest last; a short conversation whole.
func TestHistoryHandedToAWorkerIsBounded(t *testing.T) {
	var long []historyItem
	for i := range 100 {
		long = append(long, historyItem{"user", fmt.Sprintf("%d:%s", i, strings.Repeat("x", 10<<10))})
	}
	got := recentHistory(long)
	size := 0
	for _, h := range got {
		size += len(h.Text)
	}
	if size > maxHistory || len(got) == 0 || got[len(got)-1].Text != long[99].Text {
		t.Fatalf("%d items, %d bytes, last %.10q", len(got), size, got[len(got)-1].Text)
	}
	short := long[:3]
	if got := recentHistory(short); len(got) != 3 {
		t.Fatalf("a short conversation lost items: %d", len(got))
	}
}
