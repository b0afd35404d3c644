package idempotency

import (
	"fmt"
	"testing"
	"time"
)

// This test is internal to set the store's clock.

func TestTTL(t *testing.T) {
	const ttl = time.Minute
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	now := t0
	s := New(ttl, 10, 1<<30)
	s.now = func() time.Time { return now }
	n := 0
	create := func() (string, error) {
		n++
		return fmt.Sprintf("id-%d", n), nil
	}

	steps := []struct {
		at       time.Duration // since t0
		key      string
		wantID   string
		wantSeen bool
		wantLen  int
	}{
		{0, "a", "id-1", false, 1},
		{30 * time.Second, "b", "id-2", false, 2},
		{ttl - time.Nanosecond, "a", "id-1", true, 2},   // a's last moment
		{ttl, "a", "id-3", false, 2},                    // a expired (b still there) and is created anew
		{ttl + 30*time.Second, "c", "id-4", false, 2},   // b expired
		{2*ttl - time.Nanosecond, "a", "id-3", true, 2}, // a's second life
		{10 * ttl, "z", "id-5", false, 1},               // everything else expired
	}
	for _, st := range steps {
		now = t0.Add(st.at)
		id, seen, err := s.Do(st.key, create)
		if err != nil || id != st.wantID || seen != st.wantSeen {
			t.Errorf("at t0+%s: Do(%q) = %q, %t, %v; want %q, %t, nil", st.at, st.key, id, seen, err, st.wantID, st.wantSeen)
		}
		if got := s.Len(); got != st.wantLen {
			t.Errorf("at t0+%s: Len() after Do(%q) = %d; want %d", st.at, st.key, got, st.wantLen)
		}
	}
}
