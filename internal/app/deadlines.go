package app

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Coarse deadlines on app connections.
//
// net/http moves an HTTP/1.1 connection's deadlines several times per
// request: the read deadline to the idle timeout, to the header timeout,
// then clears it; the write deadline to the write timeout, then clears it.
// Each move of a socket's deadline is a runtime timer operation, and
// together they cost a GET /hello about 4% of its CPU here (make bench:
// net/http with lameduck's timeouts against net/http without). An app
// connection therefore keeps a deadline further off than coarseHorizon as a
// number only, which costs a compare-and-swap. One goroutine, the enforcer,
// checks every connection's deadlines each coarseTick, and sets a deadline
// that has passed on the socket, in the past, which fails the read or write
// blocked on it at once, as the socket's own deadline would have: such a
// deadline fires up to coarseTick late. A deadline in the past or nearer than
// coarseHorizon (net/http aborting a background read, a short timeout) is
// set on the socket at once, exactly, and so is every deadline while no
// enforcer runs.
const (
	coarseTick    = 50 * time.Millisecond
	coarseHorizon = 250 * time.Millisecond
)

// coarseDeadline is one direction's deadline of a connection. Its state is
// one word, so that the usual move, a far deadline replacing another or
// cleared, is one compare-and-swap with no lock: the deadline kept (since the
// listener's epoch; 0: none kept here) shifted left by one, and in the low
// bit, onSocket, whether a deadline is set on the socket. Every move that
// touches the socket holds mu, the enforcer's included, so that a passed
// deadline the enforcer sets on the socket never lands after the deadline
// moved: a set that finds onSocket waits for mu, then lifts it.
type coarseDeadline struct {
	mu    sync.Mutex
	state atomic.Int64
}

const (
	onSocket = 1
	// farthest caps a kept deadline (146 years off), so that it shifts
	// without overflow: as good as none, as a socket's would be.
	farthest = time.Duration(math.MaxInt64 >> 2)
)

// kept returns the deadline kept as a number (0: none).
func (d *coarseDeadline) kept() time.Duration { return time.Duration(d.state.Load() >> 1) }

// set records t as the deadline, or sets it on the socket with setSocket.
// now is the enforcer's last reading of the clock (0: no enforcer runs).
func (d *coarseDeadline) set(t, epoch time.Time, now time.Duration, setSocket func(time.Time) error) error {
	var at time.Duration
	if !t.IsZero() {
		at = t.Sub(epoch)
		if now == 0 || at-now < coarseHorizon {
			d.mu.Lock()
			defer d.mu.Unlock()
			d.state.Store(onSocket)
			return setSocket(t)
		}
		at = min(at, farthest)
	}
	if s := d.state.Load(); s&onSocket == 0 && d.state.CompareAndSwap(s, int64(at)<<1) {
		return nil
	}
	// A nearer deadline, or one the enforcer set, is on the socket: lift it.
	d.mu.Lock()
	defer d.mu.Unlock()
	lift := d.state.Swap(int64(at)<<1)&onSocket != 0
	if lift {
		return setSocket(time.Time{})
	}
	return nil
}

// enforce sets the deadline on the socket once it has passed at now.
func (d *coarseDeadline) enforce(now time.Duration, epoch time.Time, setSocket func(time.Time) error) {
	s := d.state.Load()
	if s&onSocket != 0 || s == 0 || time.Duration(s>>1) > now {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.state.CompareAndSwap(s, onSocket) {
		return // moved meanwhile: the next tick looks again
	}
	_ = setSocket(epoch.Add(time.Duration(s >> 1))) // in the past: a blocked call fails now; an error means the socket closed
}

// SetReadDeadline keeps t as the read deadline (see coarseDeadline).
func (c *limitConn) SetReadDeadline(t time.Time) error {
	return c.rd.set(t, c.l.epoch, c.l.coarseNow(), c.Conn.SetReadDeadline)
}

// SetWriteDeadline keeps t as the write deadline (see coarseDeadline).
func (c *limitConn) SetWriteDeadline(t time.Time) error {
	return c.wd.set(t, c.l.epoch, c.l.coarseNow(), c.Conn.SetWriteDeadline)
}

// SetDeadline keeps t as both deadlines.
func (c *limitConn) SetDeadline(t time.Time) error {
	return errors.Join(c.SetReadDeadline(t), c.SetWriteDeadline(t))
}

// coarseNow is the enforcer's last reading of the clock, since epoch, or 0
// while no enforcer runs.
func (l *limitListener) coarseNow() time.Duration { return time.Duration(l.now.Load()) }

// enforceDeadlines is the enforcer: until ctx ends, every coarseTick, it sets
// on the socket each open connection's deadline that has passed. Deadlines
// set while it runs count on it; run it until every connection is closed.
func (l *limitListener) enforceDeadlines(ctx context.Context) {
	tick := time.NewTicker(coarseTick)
	defer tick.Stop()
	l.now.Store(int64(max(time.Since(l.epoch), 1)))
	defer l.now.Store(0)
	var conns []*limitConn
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := max(time.Since(l.epoch), 1)
		l.now.Store(int64(now))
		conns = l.openConns(conns[:0])
		for _, c := range conns {
			c.rd.enforce(now, l.epoch, c.Conn.SetReadDeadline)
			c.wd.enforce(now, l.epoch, c.Conn.SetWriteDeadline)
		}
		clear(conns) // keep no closed connection reachable until the next tick
	}
}

// connSet is the listener's open connections, for the enforcer.
type connSet struct {
	mu    sync.Mutex
	conns map[*limitConn]struct{}
}

func (s *connSet) add(c *limitConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns == nil {
		s.conns = map[*limitConn]struct{}{}
	}
	s.conns[c] = struct{}{}
}

func (s *connSet) remove(c *limitConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
}

// openConns appends the open connections to buf.
func (l *limitListener) openConns(buf []*limitConn) []*limitConn {
	l.set.mu.Lock()
	defer l.set.mu.Unlock()
	for c := range l.set.conns {
		buf = append(buf, c)
	}
	return buf
}
