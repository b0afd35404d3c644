package app

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// newConnIdle is how long a connection may stay new (accepted, no request
// read yet) before it counts as idle, as in http.Server.Shutdown.
const newConnIdle = 5 * time.Second

// connTracker follows the app server's connections through http.Server's
// ConnState hook, and reads the requests in flight from the count the
// server's middleware keeps (metrics.Metrics.Inflight), which tells it when
// one ends (requestDone). It lets the shutdown return the moment the last
// request finishes (http.Server.Shutdown polls, up to 500 ms late). The same
// count is what a deadline cuts.
//
// It counts requests, not only connections, because an HTTP/2 connection
// multiplexes them: net/http reports it active while any of its streams is
// open and idle when none is, but a stream the client reset (RST_STREAM), or
// a connection the client closed, leaves its handler running with the
// connection idle or gone. On HTTP/1.1 a connection is active for as long as
// its one request's handler runs, so the two counts agree.
//
// The hot path takes no lock: each connection has its own record, its state
// in an atomic, which a request writes only to; the request count is on
// per-CPU shards. An app connection (limitConn) carries its record, so a
// request reaches it without a lookup; the map, which a waiter ranges over,
// is written only when a connection opens and closes. The lock is taken only
// while a shutdown waits, and the counting is done then, by the waiter.
type connTracker struct {
	conns    sync.Map     // net.Conn → *trackedConn, from StateNew until StateClosed or StateHijacked
	requests func() int64 // requests (HTTP/2: streams) in flight now
	waiters  atomic.Int32 // waits under way: only then do hooks and requests wake anyone

	mu      sync.Mutex
	changed chan struct{} // closed (and set to nil) on a change a waiter may await; made only for a waiter
}

// trackedConn is one connection's record.
type trackedConn struct {
	state atomic.Int32 // its http.ConnState
	seen  atomic.Bool  // the hook saw it new: it is in the map
	since time.Time    // when it was accepted
}

// newConnTracker returns a tracker that reads the requests in flight from
// requests; whatever counts them must call requestDone as each one ends,
// after it no longer counts it.
func newConnTracker(requests func() int64) *connTracker {
	return &connTracker{requests: requests}
}

// hook is the http.Server ConnState callback. net/http calls it for one
// connection at a time: new (from the accepting goroutine), active and idle
// (HTTP/1.1: around each request; HTTP/2: when the first stream opens and the
// last one closes), then closed or hijacked.
func (t *connTracker) hook(c net.Conn, s http.ConnState) {
	// A request runs this twice (active, then idle): it allocates nothing
	// and reads the clock only for new connections.
	var prev http.ConnState
	switch s {
	case http.StateNew:
		tc := new(trackedConn)
		if lc, ok := c.(*limitConn); ok {
			tc = &lc.track
		}
		tc.since = time.Now()
		tc.state.Store(int32(http.StateNew))
		tc.seen.Store(true)
		t.conns.Store(c, tc)
		return // busier, not quieter: no one to wake
	case http.StateActive, http.StateIdle:
		tc := t.record(c)
		if tc == nil {
			return // not seen new (the hook was set after it was accepted)
		}
		prev = http.ConnState(tc.state.Swap(int32(s)))
	default: // closed, hijacked
		if _, ok := t.conns.LoadAndDelete(c); !ok {
			return
		}
	}
	// Quieter: a connection turned idle, or closed (which waitClosed awaits
	// even when it was idle). The state is written before waiters is read,
	// and a wait sets waiters before it counts: a change its count missed
	// wakes it.
	if s != http.StateActive && !(s == http.StateIdle && prev == http.StateIdle) && t.waiters.Load() > 0 {
		t.wake()
	}
}

// record returns c's record, or nil when the hook did not see c new.
func (t *connTracker) record(c net.Conn) *trackedConn {
	if lc, ok := c.(*limitConn); ok {
		if !lc.track.seen.Load() {
			return nil
		}
		return &lc.track
	}
	v, ok := t.conns.Load(c)
	if !ok {
		return nil
	}
	return v.(*trackedConn)
}

// requestDone is told that a request ended, after its count dropped: a
// request's count is written before waiters is read, and a wait sets waiters
// before it counts, so a request ending that a wait's count missed wakes it.
func (t *connTracker) requestDone() {
	if t.waiters.Load() > 0 {
		t.wake()
	}
}

// wake tells a waiter that something it counts may have ended.
func (t *connTracker) wake() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.changed != nil {
		close(t.changed)
		t.changed = nil
	}
}

// waitQuiet returns nil once no request is inside a handler and no
// connection is serving one or new (a new connection counts as idle after
// newConnIdle), or ctx's error when it ends first.
func (t *connTracker) waitQuiet(ctx context.Context) error {
	return t.wait(ctx, false)
}

// waitClosed returns nil once no request is inside a handler and every
// connection has closed, or ctx's error when it ends first.
func (t *connTracker) waitClosed(ctx context.Context) error {
	return t.wait(ctx, true)
}

func (t *connTracker) wait(ctx context.Context, closed bool) error {
	t.waiters.Add(1)
	defer t.waiters.Add(-1)
	for {
		changed := t.arm()
		n, recheck := t.busyNow(time.Now(), closed)
		if n == 0 {
			return nil
		}
		if err := waitChange(ctx, changed, recheck); err != nil {
			return err
		}
	}
}

// arm returns the channel the next change closes.
func (t *connTracker) arm() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.changed == nil {
		t.changed = make(chan struct{})
	}
	return t.changed
}

// busyNow counts the requests in handlers and the busy connections at now
// (with all, every open connection); recheck, when positive, is when the
// oldest new connection turns idle.
func (t *connTracker) busyNow(now time.Time, all bool) (n int, recheck time.Duration) {
	n = int(t.requests())
	t.conns.Range(func(_, v any) bool {
		tc := v.(*trackedConn)
		switch st := http.ConnState(tc.state.Load()); {
		case all, st == http.StateActive:
			n++
		case st == http.StateNew:
			left := newConnIdle - now.Sub(tc.since)
			if left <= 0 {
				break
			}
			if recheck == 0 || left < recheck {
				recheck = left
			}
			n++
		}
		return true
	})
	return n, recheck
}

// waitChange waits for changed to close, for recheck (when positive) to pass,
// or for ctx to end, which it reports.
func waitChange(ctx context.Context, changed <-chan struct{}, recheck time.Duration) error {
	var wake <-chan time.Time
	if recheck > 0 {
		timer := time.NewTimer(recheck)
		defer timer.Stop()
		wake = timer.C
	}
	select {
	case <-changed:
	case <-wake:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}
