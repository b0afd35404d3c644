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
	since time.Time // set for new connections only
}

// connTracker follows the app server's connections through http.Server's
// ConnState hook, and its requests through the count middleware. It lets the
// shutdown return the moment the last request finishes (http.Server.Shutdown
// polls, up to 500 ms late). What a deadline cuts is counted by
// server.Clients, which sees handlers, not connections.
//
// It counts requests, not only connections, because an HTTP/2 connection
// multiplexes them: net/http reports it active while any of its streams is
// open and idle when none is, but a stream the client reset (RST_STREAM), or
// a connection the client closed, leaves its handler running with the
// connection idle or gone. On HTTP/1.1 a connection is active for as long as
// its one request's handler runs, so the two counts agree.
type connTracker struct {
	mu       sync.Mutex
	conns    map[net.Conn]connInfo // every open connection, by its last state
	requests int                   // requests (HTTP/2: streams) inside a handler
	changed  chan struct{}         // closed (and set to nil) when the busy set or conns shrink; made only for a waiter
}

func newConnTracker() *connTracker {
	return &connTracker{conns: map[net.Conn]connInfo{}}
}

// hook is the http.Server ConnState callback. For an HTTP/2 connection,
// net/http reports new and closed, and its HTTP/2 server active (when the
// first stream opens) and idle (when the last one closes).
func (t *connTracker) hook(c net.Conn, s http.ConnState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	// This runs twice per request on HTTP/1.1 (active, then idle): it
	// allocates nothing and reads the clock only for new connections.
	switch s {
	case http.StateNew:
		t.conns[c] = connInfo{state: s, since: time.Now()}
	case http.StateActive:
		t.conns[c] = connInfo{state: s}
	case http.StateIdle:
		if _, ok := t.conns[c]; ok {
			t.conns[c] = connInfo{state: s}
			t.notifyLocked()
		}
	default: // hijacked, closed
		if _, ok := t.conns[c]; ok {
			delete(t.conns, c)
			t.notifyLocked()
		}
	}
}

// count is the middleware that counts the requests inside next.
func (t *connTracker) count(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.mu.Lock()
		t.requests++
		t.mu.Unlock()
		defer func() {
			t.mu.Lock()
			t.requests--
			t.notifyLocked()
			t.mu.Unlock()
		}()
		next.ServeHTTP(w, r)
	})
}

func (t *connTracker) notifyLocked() {
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
	for {
		n, recheck, changed := t.busyNow(time.Now(), closed)
		if n == 0 {
			return nil
		}
		if err := waitChange(ctx, changed, recheck); err != nil {
			return err
		}
	}
}

// busyNow counts the requests in handlers and the busy connections at now
// (with all, every open connection); recheck, when positive, is when the
// oldest new connection turns idle.
func (t *connTracker) busyNow(now time.Time, all bool) (n int, recheck time.Duration, changed <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n = t.requests
	for _, ci := range t.conns {
		switch {
		case all:
		case ci.state == http.StateIdle:
			continue
		case ci.state == http.StateNew:
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
