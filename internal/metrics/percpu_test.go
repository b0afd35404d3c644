package metrics

import (
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
)

// TestCountSumsShards: a Count is exact across goroutines on every P, and
// its shards stay the fixed set however often the pool is emptied.
func TestCountSumsShards(t *testing.T) {
	c := NewCount(2)
	var shards []*atomic.Int64
	for _, s := range c.shards.All() {
		shards = append(shards, &s.n)
	}
	const goroutines, each = 16, 1000
	var started, ended sync.WaitGroup
	release := make(chan struct{})
	foreign := make(chan *atomic.Int64, goroutines*each)
	for range goroutines {
		started.Add(1)
		ended.Go(func() {
			var held []*atomic.Int64
			for i := range each {
				if i%100 == 0 {
					runtime.GC() // empties the pool: Get falls back to New
				}
				s := c.Shard()
				if !slices.Contains(shards, s) {
					foreign <- s
				}
				s.Add(1)
				held = append(held, s)
			}
			started.Done()
			<-release
			for _, s := range held {
				s.Add(-1)
			}
		})
	}
	started.Wait()
	if got := c.Load(); got != goroutines*each {
		t.Errorf("Load() with %d in progress = %d", goroutines*each, got)
	}
	close(release)
	ended.Wait()
	if got := c.Load(); got != 0 {
		t.Errorf("Load() after every one ended = %d; want 0", got)
	}
	if len(foreign) > 0 {
		t.Errorf("Shard() returned %d pointers outside the %d shards made", len(foreign), len(shards))
	}
}
