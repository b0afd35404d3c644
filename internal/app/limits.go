package app

import (
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lameduck/lameduck/internal/metrics"
)

// limitListener accepts at most max connections open at once. A connection
// over the cap is closed as soon as it is accepted (and counted), before a
// byte of it is read: it costs no memory, and its client fails at once and
// can retry elsewhere, where a listener that stopped accepting would leave it
// waiting in the kernel's backlog. Only the app listener is limited; the
// admin listener, which the kubelet probes, is not.
type limitListener struct {
	net.Listener
	max     int64
	open    atomic.Int64
	peak    atomic.Int64 // the most open at once
	refused atomic.Int64
	closed  atomic.Bool
	metrics *metrics.Limits

	epoch time.Time    // the coarse deadlines count from it
	now   atomic.Int64 // the enforcer's last clock reading since epoch (0: none runs)
	set   connSet      // the open connections, for the enforcer
}

func limitConns(ln net.Listener, max int, m *metrics.Limits) *limitListener {
	return &limitListener{Listener: ln, max: int64(max), metrics: m, epoch: time.Now()}
}

// Close closes the listener; Accept then returns http.ErrServerClosed, so
// that http.Server.Serve returns it, as after a Shutdown.
func (l *limitListener) Close() error {
	l.closed.Store(true)
	return l.Listener.Close()
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if l.closed.Load() {
				return nil, http.ErrServerClosed
			}
			return nil, err
		}
		n := l.open.Add(1)
		if n > l.max {
			l.open.Add(-1)
			l.refused.Add(1)
			l.metrics.ConnsRefused.Inc()
			_ = c.Close()
			continue
		}
		for p := l.peak.Load(); n > p && !l.peak.CompareAndSwap(p, n); p = l.peak.Load() {
		}
		l.metrics.Conns.Inc()
		lc := &limitConn{Conn: c, l: l}
		l.set.add(lc)
		return lc, nil
	}
}

// Peak returns the most connections that were open at once, and how many
// were refused over the cap: the exit's account reports both, so that a
// client's failed connection can be told from the service losing it.
func (l *limitListener) Peak() (peak, refused int64) { return l.peak.Load(), l.refused.Load() }

// limitConn gives its slot back when it closes, once. It also carries the
// connection's record for the connTracker, which then finds it without a
// map lookup on every request, and keeps its deadlines coarse (deadlines.go).
type limitConn struct {
	net.Conn
	l      *limitListener
	once   sync.Once
	track  trackedConn
	rd, wd coarseDeadline // read and write deadlines (deadlines.go)
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.set.remove(c)
		c.l.open.Add(-1)
		c.l.metrics.Conns.Dec()
	})
	return err
}

// CloseWrite keeps net/http's half-close before it closes a connection
// (which lets the client read a final 408 or 431 instead of a reset).
func (c *limitConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
