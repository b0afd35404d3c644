package idempotency_test

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lameduck/lameduck/internal/idempotency"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// counter returns a create function that makes ids id-1, id-2... and counts
// its calls.
func counter() (create func() (string, error), calls *atomic.Int64) {
	calls = &atomic.Int64{}
	return func() (string, error) {
		return fmt.Sprintf("id-%d", calls.Add(1)), nil
	}, calls
}

func TestDoCreatesOncePerKey(t *testing.T) {
	s := idempotency.New(time.Hour, 100, 1<<30)
	create, calls := counter()
	steps := []struct {
		key      string
		wantID   string
		wantSeen bool
	}{
		{"a", "id-1", false},
		{"a", "id-1", true},
		{"b", "id-2", false},
		{"a", "id-1", true},
		{"b", "id-2", true},
		{"c", "id-3", false},
	}
	for _, st := range steps {
		id, seen, err := s.Do(st.key, create)
		if err != nil || id != st.wantID || seen != st.wantSeen {
			t.Errorf("Do(%q) = %q, %t, %v; want %q, %t, nil", st.key, id, seen, err, st.wantID, st.wantSeen)
		}
	}
	if got := calls.Load(); got != 3 {
		t.Errorf("create called %d times for 3 keys; want 3", got)
	}
	if got := s.Len(); got != 3 {
		t.Errorf("Len() = %d; want 3", got)
	}
}

func TestDoConcurrentSameKeyCreatesOnce(t *testing.T) {
	const goroutines = 64
	s := idempotency.New(time.Hour, 100, 1<<30)
	count, calls := counter()
	create := func() (string, error) {
		// Yield, so that without the store's lock other goroutines would
		// overtake this one and create too.
		for range 100 {
			runtime.Gosched()
		}
		return count()
	}
	start := make(chan struct{})
	ids := make([]string, goroutines)
	seen := make([]bool, goroutines)
	errs := make([]error, goroutines)
	var wg sync.WaitGroup
	for i := range goroutines {
		wg.Go(func() {
			<-start
			ids[i], seen[i], errs[i] = s.Do("key", create)
		})
	}
	close(start)
	wg.Wait()

	if got := calls.Load(); got != 1 {
		t.Fatalf("create called %d times by %d concurrent Do(%q); want 1", got, goroutines, "key")
	}
	firsts := 0
	for i := range goroutines {
		if errs[i] != nil || ids[i] != "id-1" {
			t.Errorf("goroutine %d: Do(%q) = %q, %v; want %q, nil", i, "key", ids[i], errs[i], "id-1")
		}
		if !seen[i] {
			firsts++
		}
	}
	if firsts != 1 {
		t.Errorf("Do(%q) reported seen=false %d times; want once", "key", firsts)
	}
}

func TestDoConcurrentManyKeys(t *testing.T) {
	const keys, perKey = 20, 8
	s := idempotency.New(time.Hour, 1000, 1<<30)
	create, calls := counter()
	var mu sync.Mutex
	idsByKey := map[string]map[string]bool{}
	var wg sync.WaitGroup
	for k := range keys {
		for range perKey {
			wg.Go(func() {
				key := fmt.Sprintf("k%d", k)
				id, _, err := s.Do(key, create)
				if err != nil {
					t.Errorf("Do(%q) = %v", key, err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if idsByKey[key] == nil {
					idsByKey[key] = map[string]bool{}
				}
				idsByKey[key][id] = true
			})
		}
	}
	wg.Wait()
	if got := calls.Load(); got != keys {
		t.Errorf("create called %d times for %d keys; want %d", got, keys, keys)
	}
	for key, ids := range idsByKey {
		if len(ids) != 1 {
			t.Errorf("Do(%q) answered %d different ids %v; want 1", key, len(ids), ids)
		}
	}
}

func TestMaxKeysEvictsOldest(t *testing.T) {
	s := idempotency.New(time.Hour, 3, 1<<30)
	create, _ := counter()
	do := func(key string) (string, bool) {
		t.Helper()
		id, seen, err := s.Do(key, create)
		if err != nil {
			t.Fatalf("Do(%q) = %v", key, err)
		}
		return id, seen
	}
	for _, k := range []string{"a", "b", "c"} {
		do(k)
	}
	do("d") // the store is full: "a", the oldest, goes
	if got := s.Len(); got != 3 {
		t.Errorf("Len() after 4 keys with max 3 = %d; want 3", got)
	}
	for _, tt := range []struct {
		key      string
		wantSeen bool
	}{
		{"b", true},
		{"c", true},
		{"d", true},
		{"a", false}, // forgotten; remembering it again forgets "b"
		{"b", false},
	} {
		if _, seen := do(tt.key); seen != tt.wantSeen {
			t.Errorf("Do(%q) seen = %t; want %t", tt.key, seen, tt.wantSeen)
		}
	}
	if got := s.Len(); got != 3 {
		t.Errorf("Len() = %d; want 3", got)
	}
}

func TestCreateErrorIsNotRemembered(t *testing.T) {
	s := idempotency.New(time.Hour, 10, 1<<30)
	errFull := errors.New("queue is full")
	fails := 0
	id, seen, err := s.Do("k", func() (string, error) {
		fails++
		return "lost", errFull
	})
	if !errors.Is(err, errFull) || id != "" || seen {
		t.Errorf("Do(%q) with a failing create = %q, %t, %v; want \"\", false, %v", "k", id, seen, err, errFull)
	}
	if got := s.Len(); got != 0 {
		t.Errorf("Len() after a failed create = %d; want 0", got)
	}
	create, calls := counter()
	id, seen, err = s.Do("k", create)
	if err != nil || id != "id-1" || seen {
		t.Errorf("Do(%q) after a failed create = %q, %t, %v; want %q, false, nil", "k", id, seen, err, "id-1")
	}
	if calls.Load() != 1 || fails != 1 {
		t.Errorf("create calls: %d failing, %d succeeding; want 1 and 1", fails, calls.Load())
	}
}
