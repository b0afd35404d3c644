package loadtest

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// steadyPacer is a vegeta.Pacer for a constant rate that does not catch up.
// vegeta's ConstantPacer, once a stream falls behind (every allowed request
// in flight), sends the missed ticks back to back as soon as it can, so a
// slow moment is followed by a burst at full concurrency. steadyPacer instead
// counts the ticks more than a short slack behind as skipped and paces on
// from now: the achieved rate dips, and the report says by how much.
//
// vegeta calls Pace from one goroutine per attack; skipped is read by the
// report after the attack ends, and is atomic only so that it may be read
// while the attack runs.
type steadyPacer struct {
	interval time.Duration // between two ticks
	slack    uint64        // ticks the pacer may fall behind before it skips
	skipped  atomic.Uint64
}

func newSteadyPacer(perSecond int) *steadyPacer {
	interval := time.Second / time.Duration(perSecond)
	// 100ms of ticks absorbs the scheduler's jitter without skipping.
	return &steadyPacer{interval: interval, slack: uint64(max(1, 100*time.Millisecond/interval))}
}

// Pace returns how long to wait before the next tick, given the ticks sent
// so far. It never stops the attack: Load.Stop does.
func (p *steadyPacer) Pace(elapsed time.Duration, hits uint64) (time.Duration, bool) {
	due := uint64(elapsed / p.interval) // ticks due by now
	n := hits + p.skipped.Load()
	if due > n+p.slack {
		p.skipped.Add(due - n - p.slack)
		n = due - p.slack
	}
	next := time.Duration(n) * p.interval
	if next <= elapsed {
		return 0, false
	}
	return next - elapsed, false
}

// Rate is what vegeta asks of a pacer for its reports: hits per second.
func (p *steadyPacer) Rate(time.Duration) float64 { return float64(time.Second) / float64(p.interval) }

// connCounter counts a transport's open connections and their peak.
type connCounter struct {
	open, peak atomic.Int64
}

// track returns c, counted until it is closed.
func (cc *connCounter) track(c net.Conn) net.Conn {
	n := cc.open.Add(1)
	for {
		p := cc.peak.Load()
		if n <= p || cc.peak.CompareAndSwap(p, n) {
			break
		}
	}
	return &countedConn{Conn: c, cc: cc}
}

type countedConn struct {
	net.Conn
	cc   *connCounter
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.cc.open.Add(-1) })
	return c.Conn.Close()
}
