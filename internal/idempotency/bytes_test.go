package idempotency_test

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/lameduck/lameduck/internal/idempotency"
)

func TestMaxBytesEvictsOldest(t *testing.T) {
	const id = "0123456789abcdef0123456789abcdef" // a job id's length
	key := func(c byte) string { return strings.Repeat(string(c), 256) }
	per := idempotency.Cost(key('a'), id)
	s := idempotency.New(time.Hour, 1000, 3*per) // room for three 256-byte keys, whatever the count allows
	remember := func(k string) (seen bool) {
		t.Helper()
		_, seen, err := s.Do(k, func() (string, error) { return id, nil })
		if err != nil {
			t.Fatalf("Do: %v", err)
		}
		return seen
	}
	for _, c := range []byte("abcd") {
		remember(key(c))
	}
	if got, want := s.Bytes(), 3*per; got != want {
		t.Errorf("Bytes() after 4 keys with room for 3 = %d; want %d", got, want)
	}
	if got := s.Len(); got != 3 {
		t.Errorf("Len() after 4 keys with room for 3 = %d; want 3", got)
	}
	if remember(key('a')) {
		t.Errorf("the oldest key was still remembered after the byte bound was reached; want it forgotten")
	}
	if !remember(key('d')) {
		t.Errorf("the newest key was forgotten; want it remembered")
	}
	// Small keys: the byte bound now holds more of them.
	for i := range 10 {
		remember(fmt.Sprint(i))
	}
	if got := s.Bytes(); got > 3*per {
		t.Errorf("Bytes() = %d; want at most the bound %d", got, 3*per)
	}
	if got := s.Len(); got <= 3 {
		t.Errorf("Len() with 1-byte keys = %d; want more than three 256-byte keys' worth", got)
	}
}

func TestTooBigForTheBoundIsNotRemembered(t *testing.T) {
	s := idempotency.New(time.Hour, 10, 100)
	id, seen, err := s.Do(strings.Repeat("k", 200), func() (string, error) { return "id", nil })
	if err != nil || id != "id" || seen {
		t.Errorf("Do with a key over the byte bound = %q, %t, %v; want the new id, not seen", id, seen, err)
	}
	if s.Len() != 0 || s.Bytes() != 0 {
		t.Errorf("Len(), Bytes() = %d, %d; want 0, 0", s.Len(), s.Bytes())
	}
}

// TestEntryBytes checks that Cost does not undercount what an entry really
// takes on the heap, so the byte bound is a bound on memory.
func TestEntryBytes(t *testing.T) {
	if testing.Short() {
		t.Skip("measures the heap")
	}
	const n = 20000
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%0256d", i)
	}
	id := strings.Repeat("f", 32)
	s := idempotency.New(time.Hour, n, 1<<30)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, k := range keys {
		// A fresh id per entry, as the handler makes one per job.
		if _, _, err := s.Do(k, func() (string, error) { return strings.Clone(id), nil }); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := float64(after.HeapAlloc-before.HeapAlloc) / n // the keys themselves were allocated before
	real := heap + 256                                    // add the key's bytes back: the store keeps them
	counted := float64(s.Bytes()) / n
	t.Logf("per entry: heap %.0f B + key 256 B = %.0f B; Cost counts %.0f B", heap, real, counted)
	if counted < real*0.95 {
		t.Errorf("Cost counts %.0f B per 256-byte key; the heap holds %.0f B: raise EntryOverhead", counted, real)
	}
	runtime.KeepAlive(keys)
}
