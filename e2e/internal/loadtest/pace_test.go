package loadtest

import (
	"testing"
	"time"
)

func TestSteadyPacer(t *testing.T) {
	tests := []struct {
		name        string
		elapsed     time.Duration
		hits        uint64
		wantWait    time.Duration
		wantSkipped uint64
	}{
		{"first tick at once", 0, 0, 0, 0},
		{"on time: wait for the next tick", 5 * time.Millisecond, 1, 5 * time.Millisecond, 0},
		{"ahead: wait", 0, 3, 30 * time.Millisecond, 0},
		{"behind within the slack: send at once, skip nothing", 150 * time.Millisecond, 10, 0, 0},
		// 100 ticks due at 1s, 10 sent, 10 ticks (100ms) of slack: 80 skipped.
		{"far behind: skip all but the slack", time.Second, 10, 0, 80},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newSteadyPacer(100) // a tick every 10ms, a slack of 10 ticks
			wait, stop := p.Pace(tt.elapsed, tt.hits)
			if stop {
				t.Fatalf("Pace(%s, %d) stops the attack; want it never to", tt.elapsed, tt.hits)
			}
			if wait != tt.wantWait || p.skipped.Load() != tt.wantSkipped {
				t.Errorf("Pace(%s, %d) = %s with %d skipped; want %s with %d skipped",
					tt.elapsed, tt.hits, wait, p.skipped.Load(), tt.wantWait, tt.wantSkipped)
			}
		})
	}
}

// TestSteadyPacerNoBurst checks that once ticks were skipped the pacer paces
// on from now rather than sending the skipped ticks in a burst.
func TestSteadyPacerNoBurst(t *testing.T) {
	p := newSteadyPacer(100)
	if wait, _ := p.Pace(time.Second, 10); wait != 0 { // skips 80, sends the tick due
		t.Fatalf("first Pace waited %s; want 0", wait)
	}
	// 11 more sent at once (the slack and the tick due), then the next tick
	// is due one interval later.
	if wait, _ := p.Pace(time.Second, 21); wait != 10*time.Millisecond {
		t.Errorf("Pace after the slack was spent waited %s; want 10ms (one interval)", wait)
	}
}
