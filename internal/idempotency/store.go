// Package idempotency remembers Idempotency-Key headers for a bounded time, a
// bounded number of keys and a bounded number of bytes, so a retried request
// is answered with the result of the first instead of being performed twice.
package idempotency

import (
	"container/list"
	"sync"
	"time"
)

// Store maps keys to the id of the job they created. The zero value is not
// usable; create one with New. It is safe for concurrent use.
type Store struct {
	ttl      time.Duration
	max      int
	maxBytes int64
	now      func() time.Time

	mu    sync.Mutex
	byKey map[string]*list.Element
	order *list.List // of *entry, oldest first
	bytes int64      // Cost of every entry remembered
}

// EntryOverhead is what remembering one key takes beyond the bytes of the
// key and the id: the map slot, the list element and the entry, with the
// allocator's rounding (measured by TestEntryBytes on linux/amd64).
const EntryOverhead = 176

// Cost is the memory one remembered key takes, as the byte bound counts it.
func Cost(key, id string) int64 { return int64(len(key)+len(id)) + EntryOverhead }

type entry struct {
	key     string
	id      string
	expires time.Time
}

// New returns a Store that remembers a key for ttl, and at most max keys
// whose Cost adds up to at most maxBytes at once, forgetting the oldest
// first.
func New(ttl time.Duration, max int, maxBytes int64) *Store {
	return &Store{ttl: ttl, max: max, maxBytes: maxBytes, now: time.Now, byKey: map[string]*list.Element{}, order: list.New()}
}

// Do returns the id stored for key, with seen true, when key is remembered.
// Otherwise it calls create while holding the store's lock (so concurrent
// requests with one key create once) and, when create succeeds, remembers its
// id. create must not block.
func (s *Store) Do(key string, create func() (string, error)) (id string, seen bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.expire(now)
	if e, ok := s.byKey[key]; ok {
		return e.Value.(*entry).id, true, nil
	}
	id, err = create()
	if err != nil {
		return "", false, err
	}
	cost := Cost(key, id)
	if cost > s.maxBytes {
		return id, false, nil // never fits: created, not remembered
	}
	for s.order.Len() >= s.max || s.bytes+cost > s.maxBytes {
		s.remove(s.order.Front())
	}
	s.byKey[key] = s.order.PushBack(&entry{key: key, id: id, expires: now.Add(s.ttl)})
	s.bytes += cost
	return id, false, nil
}

// Len returns the number of keys remembered.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.order.Len()
}

// Bytes returns the memory the remembered keys take, as Cost counts it.
func (s *Store) Bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

// expire forgets the keys whose time is up; entries are in expiry order.
func (s *Store) expire(now time.Time) {
	for f := s.order.Front(); f != nil && !now.Before(f.Value.(*entry).expires); f = s.order.Front() {
		s.remove(f)
	}
}

func (s *Store) remove(e *list.Element) {
	en := e.Value.(*entry)
	delete(s.byKey, en.key)
	s.order.Remove(e)
	s.bytes -= Cost(en.key, en.id)
}
