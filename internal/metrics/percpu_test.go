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

// TestInflightDropsAfterTotals: once Inflight reads 0, every request it
// counted is in lameduck_http_requests_total: the shutdown reads the totals
// for its account once nothing is in flight.
func TestInflightDropsAfterTotals(t *testing.T) {
	m := New(prometheus.NewRegistry())
	const trials, each = 300, 4
	for trial := range trials {
		var reqs [each]Request
		for i := range reqs {
			reqs[i] = m.Begin()
		}
		var ended sync.WaitGroup
		for i := range reqs {
			ended.Go(func() { reqs[i].Done(RouteHello, http.StatusOK, false) })
		}
		for m.Inflight() != 0 {
			runtime.Gosched()
		}
		if got, want := m.RequestsByCode()["200"], float64((trial+1)*each); got != want {
			t.Fatalf("trial %d: requests_by_code[200] = %v as Inflight read 0; want %v", trial, got, want)
		}
		ended.Wait()
	}
}
