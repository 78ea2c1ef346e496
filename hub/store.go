package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/gofrs/flock"
	"golang.org/x/sys/unix"
)

// ErrNotFound is a missing key.
var ErrNotFound = errors.New("not found")

// ErrDiskFull: the store's disk has less room than a write may need.
var ErrDiskFull = errors.New("the box's disk is almost full")

// diskReserve is the room the store keeps free. Badger writes through
// memory-mapped files that it grows on demand: on a disk with no room
// left, a write there kills the process (SIGBUS) instead of failing. So
// writes stop while less than this is free (two memtables, a flush and
// a compaction's worth).
const diskReserve = 128 << 20

// Store is the hub's state in an embedded Badger database: synchronous
// writes (an acknowledged write survives a crash), small memtables for a
// small box, and value-log GC on a timer.
type Store struct {
	dir  string
	db   *badger.DB
	stop context.CancelFunc
	wg   sync.WaitGroup
}

// ErrInUse: another hub holds the data directory's lock.
var ErrInUse = errors.New("another hub is already using the data directory")

// lockDataDir takes the data directory's lock (DIR/hub.lock, an flock the
// kernel drops when the process ends, however it ends), or says who holds
// it. A hub and a restore each hold it while they use the directory.
func lockDataDir(dir string) (*flock.Flock, error) {
	l := flock.New(filepath.Join(dir, "hub.lock"), flock.SetFlag(os.O_CREATE|os.O_RDWR), flock.SetPermissions(0o600))
	ok, err := l.TryLock()
	if err != nil {
		return nil, fmt.Errorf("locking the data directory %s: %w", dir, err)
	}
	if !ok {
		return nil, fmt.Errorf("%w %s: stop it first, or give this one its own --data", ErrInUse, dir)
	}
	return l, nil
}

// OpenStore opens the store in dir (under a data directory whose lock the
// caller holds).
func OpenStore(dir string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.Default()
	}
	opts := badger.DefaultOptions(dir).
		WithSyncWrites(true).
		WithMemTableSize(8 << 20).
		WithNumMemtables(2).
		WithValueLogFileSize(64 << 20).
		WithBlockCacheSize(16 << 20).
		WithLogger(badgerLogger{log})
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open store in %s: %w", dir, err)
	}
	ctx, stop := context.WithCancel(context.Background())
	s := &Store{dir: dir, db: db, stop: stop}
	s.wg.Add(1)
	go s.gcLoop(ctx, 10*time.Minute)
	return s, nil
}

func (s *Store) gcLoop(ctx context.Context, every time.Duration) {
	defer s.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for s.db.RunValueLogGC(0.5) == nil {
			}
		}
	}
}

// Close stops GC and closes the database.
func (s *Store) Close() error {
	s.stop()
	s.wg.Wait()
	return s.db.Close()
}

// DiskBytes is the disk space the store's files take (blocks in use: Badger
// makes its files large and fills them as it goes).
func (s *Store) DiskBytes() (int64, error) {
	var n int64
	err := filepath.WalkDir(s.dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			n += st.Blocks * 512
		}
		return nil
	})
	return n, err
}

// Put stores v as JSON under key.
func (s *Store) Put(key string, v any) error { return s.PutAll(map[string]any{key: v}) }

// Room says whether the store's disk has room for writes, and if not,
// what to do.
func (s *Store) Room() error {
	var st unix.Statfs_t
	if err := unix.Statfs(s.dir, &st); err != nil {
		return nil // no figure: Badger's own errors will speak
	}
	if free := int64(st.Bavail) * int64(st.Bsize); free < diskReserve {
		return fmt.Errorf("%w: %d MiB free where the box keeps its data (%s), and it needs %d MiB to write safely: free some space; nothing was changed",
			ErrDiskFull, free>>20, s.dir, diskReserve>>20)
	}
	return nil
}

// PutAll stores each value as JSON under its key, in one transaction.
func (s *Store) PutAll(kv map[string]any) error {
	if err := s.Room(); err != nil {
		return err
	}
	enc := make(map[string][]byte, len(kv))
	for k, v := range kv {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		enc[k] = b
	}
	return s.db.Update(func(txn *badger.Txn) error {
		for k, b := range enc {
			if err := txn.Set([]byte(k), b); err != nil {
				return refused(k, len(b), err)
			}
		}
		return nil
	})
}

// refused describes a write the store would not take without the value:
// Badger's own error for an oversize value carries the whole value, and
// that must not reach a log.
func refused(key string, size int, err error) error {
	msg, _, _ := strings.Cut(err.Error(), "\n")
	if len(msg) > 200 {
		msg = msg[:200]
	}
	return fmt.Errorf("the store refused %d bytes under %s: %s", size, key, msg)
}

// Get loads the JSON at key into v.
func (s *Store) Get(key string, v any) error {
	return s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get([]byte(key))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		return it.Value(func(b []byte) error { return json.Unmarshal(b, v) })
	})
}

// Delete removes key.
func (s *Store) Delete(key string) error {
	if err := s.Room(); err != nil {
		return err
	}
	return s.db.Update(func(txn *badger.Txn) error { return txn.Delete([]byte(key)) })
}

// Each calls fn with the raw JSON of every key under prefix, in key order.
func (s *Store) Each(prefix string, fn func(key string, raw []byte) error) error {
	return s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix), PrefetchValues: true, PrefetchSize: 32})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			if err := item.Value(func(b []byte) error { return fn(string(item.Key()), b) }); err != nil {
				return err
			}
		}
		return nil
	})
}

type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any) {
	b.l.Error(strings.TrimSpace(fmt.Sprintf(f, a...)), "part", "store")
}
func (b badgerLogger) Warningf(f string, a ...any) {
	b.l.Warn(strings.TrimSpace(fmt.Sprintf(f, a...)), "part", "store")
}
func (b badgerLogger) Infof(string, ...any)  {}
func (b badgerLogger) Debugf(string, ...any) {}
