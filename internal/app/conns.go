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
// ConnState hook. It lets the shutdown return the moment the last request
// finishes (http.Server.Shutdown polls, up to 500 ms late). What a deadline
// cuts is counted by server.Clients, which sees handlers, not connections.
//
// Each connection has its own record, its state in an atomic: a request
// (StateActive, then StateIdle) finds its record with a lock-free read of
// the map and writes only to it, so requests on different connections share
// no written memory and take no lock. The map is written when a connection
// opens and closes; the lock is taken only while a shutdown waits, and the
// counting is done then, by the waiter.
type connTracker struct {
	conns   sync.Map     // net.Conn → *trackedConn, from StateNew until StateClosed or StateHijacked
	waiters atomic.Int32 // waitQuiet calls under way: only then do hooks wake anyone

	mu      sync.Mutex
	changed chan struct{} // closed (and set to nil) when a connection stops being busy; made only for a waiter
}

// trackedConn is one connection's record.
type trackedConn struct {
	state atomic.Int32 // its http.ConnState
	since time.Time    // when it was accepted
}

func newConnTracker() *connTracker {
	return &connTracker{}
}

// hook is the http.Server ConnState callback. net/http calls it for one
// connection at a time, from the goroutine serving it (StateNew from the
// accepting one, before that goroutine starts).
func (t *connTracker) hook(c net.Conn, s http.ConnState) {
	// A request runs this twice (active, then idle): it allocates nothing
	// and reads the clock only for new connections.
	var prev http.ConnState
	switch s {
	case http.StateNew:
		tc := &trackedConn{since: time.Now()}
		tc.state.Store(int32(http.StateNew))
		t.conns.Store(c, tc)
		return // busier, not quieter: no one to wake
	case http.StateActive, http.StateIdle:
		v, ok := t.conns.Load(c)
		if !ok {
			return // not seen new (the hook was set after it was accepted)
		}
		prev = http.ConnState(v.(*trackedConn).state.Swap(int32(s)))
	default: // closed, hijacked
		v, ok := t.conns.LoadAndDelete(c)
		if !ok {
			return
		}
		prev = http.ConnState(v.(*trackedConn).state.Swap(int32(s)))
	}
	// The state is written before waiters is read, and waitQuiet sets
	// waiters before it counts: a change its count missed wakes it.
	if s != http.StateActive && prev != http.StateIdle && t.waiters.Load() > 0 {
		t.wake()
	}
}

// wake tells a waitQuiet that a connection stopped being busy.
func (t *connTracker) wake() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.changed != nil {
		close(t.changed)
		t.changed = nil
	}
}

// waitQuiet returns nil once no connection is serving a request or new (a
// new connection counts as idle after newConnIdle), or ctx's error when it
// ends first.
func (t *connTracker) waitQuiet(ctx context.Context) error {
	t.waiters.Add(1)
	defer t.waiters.Add(-1)
	for {
		changed := t.arm()
		n, recheck := t.busyNow(time.Now())
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

// busyNow counts the busy connections at now; recheck, when positive, is when
// the oldest new connection turns idle.
func (t *connTracker) busyNow(now time.Time) (n int, recheck time.Duration) {
	t.conns.Range(func(_, v any) bool {
		tc := v.(*trackedConn)
		switch http.ConnState(tc.state.Load()) {
		case http.StateActive:
			n++
		case http.StateNew:
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
