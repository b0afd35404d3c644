package idempotency_test

import (
	"testing"
	"time"

	"github.com/lameduck/lameduck/internal/idempotency"
)

// FuzzStore feeds a store a stream of keys cut from the input and checks its
// invariants after each: a key just remembered answers its id, the byte and
// count bounds hold, and Bytes is the sum of what it holds.
func FuzzStore(f *testing.F) {
	f.Add([]byte("a\x00b\x00a\x00c"), uint16(400), uint8(3))
	f.Add([]byte("\x00\x00\x00"), uint16(1), uint8(1))
	f.Add(make([]byte, 600), uint16(1000), uint8(2))
	f.Fuzz(func(t *testing.T, stream []byte, maxBytes uint16, maxKeys uint8) {
		if maxKeys == 0 {
			maxKeys = 1
		}
		s := idempotency.New(time.Hour, int(maxKeys), int64(maxBytes))
		n := 0
		for i, key := range splitKeys(stream) {
			id, _, err := s.Do(key, func() (string, error) { n++; return string(rune('a' + n%26)), nil })
			if err != nil {
				t.Fatalf("Do #%d: %v", i, err)
			}
			if idempotency.Cost(key, id) <= int64(maxBytes) {
				if again, seen, _ := s.Do(key, nil); !seen || again != id {
					t.Fatalf("Do(%q) right after remembering it = %q, seen %t; want %q, true", key, again, seen, id)
				}
			}
			if s.Bytes() > int64(maxBytes) || s.Bytes() < 0 {
				t.Fatalf("Bytes() = %d; want within [0, %d]", s.Bytes(), maxBytes)
			}
			if s.Len() > int(maxKeys) {
				t.Fatalf("Len() = %d; want at most %d", s.Len(), maxKeys)
			}
			if (s.Len() == 0) != (s.Bytes() == 0) {
				t.Fatalf("Len() = %d but Bytes() = %d", s.Len(), s.Bytes())
			}
		}
	})
}

// splitKeys cuts b at zero bytes.
func splitKeys(b []byte) []string {
	var keys []string
	start := 0
	for i, c := range b {
		if c == 0 {
			keys = append(keys, string(b[start:i]))
			start = i + 1
		}
	}
	return append(keys, string(b[start:]))
}
