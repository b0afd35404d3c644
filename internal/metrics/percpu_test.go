package metrics

import (
	"net/http"
	"runtime"
	"slices"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestInflightSumsShards: the in-flight count (Begin to Done) is exact
// across goroutines on every P, and its shards stay the fixed set however
// often the pool is emptied.
func TestInflightSumsShards(t *testing.T) {
	m := New(prometheus.NewRegistry())
	shards := m.http.shards.All()
	const goroutines, each = 16, 1000
	var started, ended sync.WaitGroup
	release := make(chan struct{})
	foreign := make(chan *httpShard, goroutines*each)
	for range goroutines {
		started.Add(1)
		ended.Go(func() {
			var held []Request
			for i := range each {
				if i%100 == 0 {
					runtime.GC() // empties the pool: Get falls back to New
				}
				r := m.Begin()
				if !slices.Contains(shards, r.shard) {
					foreign <- r.shard
				}
				held = append(held, r)
			}
			started.Done()
			<-release
			for _, r := range held {
				r.Done(RouteHello, http.StatusOK, false)
			}
		})
	}
	started.Wait()
	if got := m.Inflight(); got != goroutines*each {
		t.Errorf("Inflight() with %d in flight = %d", goroutines*each, got)
	}
	close(release)
	ended.Wait()
	if got := m.Inflight(); got != 0 {
		t.Errorf("Inflight() after every one ended = %d; want 0", got)
	}
	if got := m.RequestsByCode()["200"]; got != goroutines*each {
		t.Errorf(`requests_by_code["200"] = %v; want %d`, got, goroutines*each)
	}
	if len(foreign) > 0 {
		t.Errorf("Begin used %d shards outside the %d made", len(foreign), len(shards))
	}
}
