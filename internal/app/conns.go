package app

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"
)

// newConnIdle is how long a connection may stay new (accepted, no request
// read yet) before it counts as idle, as in http.Server.Shutdown.
const newConnIdle = 5 * time.Second

type connInfo struct {
	state http.ConnState
	since time.Time
}

// connTracker follows the app server's connections through http.Server's
// ConnState hook. It lets the shutdown return the moment the last request
// finishes (http.Server.Shutdown polls, up to 500 ms late). What a deadline
// cuts is counted by server.Clients, which sees handlers, not connections.
type connTracker struct {
	mu      sync.Mutex
	busy    map[net.Conn]connInfo // connections that are new or serving a request
	changed chan struct{}         // closed (and set to nil) when busy shrinks; made only for a waiter
}

func newConnTracker() *connTracker {
	return &connTracker{busy: map[net.Conn]connInfo{}}
}

// hook is the http.Server ConnState callback.
func (t *connTracker) hook(c net.Conn, s http.ConnState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	// This runs twice per request (active, then idle): it allocates nothing
	// and reads the clock only for new connections.
	switch s {
	case http.StateNew:
		t.busy[c] = connInfo{state: s, since: time.Now()}
	case http.StateActive:
		t.busy[c] = connInfo{state: s}
	default: // idle, hijacked, closed
		if _, ok := t.busy[c]; ok {
			delete(t.busy, c)
			if t.changed != nil {
				close(t.changed)
				t.changed = nil
			}
		}
	}
}

// waitQuiet returns nil once no connection is serving a request or new (a
// new connection counts as idle after newConnIdle), or ctx's error when it
// ends first.
func (t *connTracker) waitQuiet(ctx context.Context) error {
	for {
		n, recheck, changed := t.busyNow(time.Now())
		if n == 0 {
			return nil
		}
		if err := waitChange(ctx, changed, recheck); err != nil {
			return err
		}
	}
}

// busyNow counts the busy connections at now; recheck, when positive, is when
// the oldest new connection turns idle.
func (t *connTracker) busyNow(now time.Time) (n int, recheck time.Duration, changed <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, ci := range t.busy {
		if ci.state == http.StateNew {
			left := newConnIdle - now.Sub(ci.since)
			if left <= 0 {
				continue
			}
			if recheck == 0 || left < recheck {
				recheck = left
			}
		}
		n++
	}
	if t.changed == nil {
		t.changed = make(chan struct{})
	}
	return n, recheck, t.changed
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
