package app

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// noRequests is a count of requests in flight that is always 0: these tests
// drive connection states alone.
func noRequests() int64 { return 0 }

// quietNow reports whether waitQuiet finds t quiet without waiting.
func quietNow(t *connTracker) bool {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return t.waitQuiet(ctx) == nil
}

// pipeConn returns one end of a net.Pipe, closed when the test ends.
func pipeConn(t *testing.T) net.Conn {
	t.Helper()
	c, peer := net.Pipe()
	t.Cleanup(func() {
		c.Close()
		peer.Close()
	})
	return c
}

// TestConnTrackerCounts: a connection is busy while new (for newConnIdle)
// or serving a request, quiet when idle, closed or hijacked.
func TestConnTrackerCounts(t *testing.T) {
	for _, c := range []struct {
		name   string
		states []http.ConnState
		quiet  bool
	}{
		{"new", []http.ConnState{http.StateNew}, false},
		{"serving its first request", []http.ConnState{http.StateNew, http.StateActive}, false},
		{"idle", []http.ConnState{http.StateNew, http.StateActive, http.StateIdle}, true},
		{"serving its second request", []http.ConnState{http.StateNew, http.StateActive, http.StateIdle, http.StateActive}, false},
		{"closed while serving", []http.ConnState{http.StateNew, http.StateActive, http.StateClosed}, true},
		{"hijacked", []http.ConnState{http.StateNew, http.StateActive, http.StateHijacked}, true},
		{"closed new", []http.ConnState{http.StateNew, http.StateClosed}, true},
		{"active again after close (not tracked)", []http.ConnState{http.StateNew, http.StateClosed, http.StateActive}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr := newConnTracker(noRequests)
			conn := pipeConn(t)
			for _, s := range c.states {
				tr.hook(conn, s)
			}
			if got := quietNow(tr); got != c.quiet {
				t.Errorf("after %v: quiet = %t; want %t", c.states, got, c.quiet)
			}
		})
	}
	t.Run("new, past newConnIdle", func(t *testing.T) {
		tr := newConnTracker(noRequests)
		conn := pipeConn(t)
		tr.hook(conn, http.StateNew)
		if n, recheck := tr.busyNow(time.Now().Add(newConnIdle), false); n != 0 || recheck != 0 {
			t.Errorf("busyNow(newConnIdle after accepting) = %d, %s; want 0, 0", n, recheck)
		}
		if n, recheck := tr.busyNow(time.Now(), false); n != 1 || recheck <= 0 || recheck > newConnIdle {
			t.Errorf("busyNow(now) = %d, %s; want 1 and a recheck within %s", n, recheck, newConnIdle)
		}
	})
}

// TestConnTrackerWakesOnLastRequest: waitQuiet returns when the last busy
// connection goes idle, while requests come and go on many connections at
// once (run with -race).
func TestConnTrackerWakesOnLastRequest(t *testing.T) {
	tr := newConnTracker(noRequests)
	const conns, requests = 8, 200
	cs := make([]net.Conn, conns)
	for i := range cs {
		cs[i] = pipeConn(t)
		tr.hook(cs[i], http.StateNew)
		tr.hook(cs[i], http.StateActive)
		tr.hook(cs[i], http.StateIdle)
	}
	last := cs[0]
	tr.hook(last, http.StateActive) // the request the shutdown waits for

	quiet := make(chan error, 1)
	go func() { quiet <- tr.waitQuiet(context.Background()) }()
	var wg sync.WaitGroup
	for _, c := range cs[1:] {
		wg.Go(func() {
			for range requests {
				tr.hook(c, http.StateActive)
				tr.hook(c, http.StateIdle)
			}
		})
	}
	wg.Wait()
	select {
	case err := <-quiet:
		t.Fatalf("waitQuiet returned %v with a request still being served", err)
	default:
	}
	tr.hook(last, http.StateIdle)
	select {
	case err := <-quiet:
		if err != nil {
			t.Fatalf("waitQuiet = %v; want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("waitQuiet still waiting 10s after the last request finished")
	}
}

// TestConnTrackerWaitEndsWithContext: waitQuiet reports its context's end.
func TestConnTrackerWaitEndsWithContext(t *testing.T) {
	tr := newConnTracker(noRequests)
	conn := pipeConn(t)
	tr.hook(conn, http.StateNew)
	tr.hook(conn, http.StateActive)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := tr.waitQuiet(ctx); err != context.DeadlineExceeded {
		t.Errorf("waitQuiet with a request being served = %v; want context.DeadlineExceeded", err)
	}
}

// TestConnTrackerWakesOnRequestDone: a request that ends with its
// connection already idle (an HTTP/2 stream its client reset) ends the wait
// when its count drops and requestDone is told, with no connection state
// changing (run with -race).
func TestConnTrackerWakesOnRequestDone(t *testing.T) {
	var inflight atomic.Int64
	tr := newConnTracker(inflight.Load)
	conn := pipeConn(t)
	tr.hook(conn, http.StateNew)
	tr.hook(conn, http.StateActive)
	tr.hook(conn, http.StateIdle) // the connection is idle; its reset stream's handler runs on
	inflight.Add(1)
	quiet := make(chan error, 1)
	go func() { quiet <- tr.waitQuiet(context.Background()) }()
	// Other requests come and go meanwhile, each telling the tracker.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 200 {
				inflight.Add(1)
				inflight.Add(-1)
				tr.requestDone()
			}
		})
	}
	wg.Wait()
	select {
	case err := <-quiet:
		t.Fatalf("waitQuiet returned %v with a request in flight", err)
	default:
	}
	inflight.Add(-1)
	tr.requestDone()
	select {
	case err := <-quiet:
		if err != nil {
			t.Fatalf("waitQuiet = %v; want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("waitQuiet still waiting 10s after the last request ended")
	}
}
