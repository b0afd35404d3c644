// Package conns owns the app listener's connections: how many may be open at
// once, what each one is doing, which ones yield to a newcomer when the cap
// is near, and whether any still carries a request, which the shutdown waits
// for. One record per connection serves all four, and the metrics.
//
// When a connection arrives and the open ones reach the reserve (the last
// 1/16 of LAMEDUCK_MAX_CONNS), the connections doing nothing longest yield:
// keep-alive connections idle between requests (HTTP/2: with no open
// stream), and connections that have not delivered a complete header block
// within HeaderShare. This follows nginx, which closes up to 32 of the
// longest-idle keep-alive connections when its free connections run low.
// A connection serving a request is never reclaimed: only when every slot
// carries one is a newcomer refused, at once.
//
// After the preStop delay the listener's socket passes, open, from the app
// server to a second server that answers every request late (Detach,
// Reattach): its connections count against the cap, but the shutdown does not
// wait for them. The Tracker also notes when the last connection arrived,
// which the adaptive preStop delay watches (LastArrival).
package conns

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// HeaderShare is how long a connection may take to deliver a complete
// header block (its first request's, or the next one's once it began
// sending it) before, under pressure, it counts as reclaimable.
// LAMEDUCK_READ_HEADER_TIMEOUT bounds it in any case.
const HeaderShare = time.Second

// reclaimBatch is the most connections one newcomer reclaims at once
// (nginx: 32): it leaves room for the next newcomers without a scan each.
const reclaimBatch = 32

// slotWait bounds how long a newcomer at the cap waits for the connections
// it reclaimed to close: an HTTP/1.1 one closes as soon as its goroutine
// sees its read fail (microseconds on an idle machine); an HTTP/2 one gets
// a GOAWAY first, and is closed without one reclaimAgain later if its
// client has not closed it by then.
const slotWait = 250 * time.Millisecond

// reclaimAgain is how long after it was reclaimed a connection still open
// is reclaimed again, without a GOAWAY: an HTTP/2 client that did not close
// its connection on the GOAWAY, or an HTTP/1.1 connection whose read
// deadline net/http moved just after ours (it had just gone idle).
const reclaimAgain = 50 * time.Millisecond

// newConnIdle is how long a connection still receiving its request keeps
// the shutdown waiting for it (http.Server.Shutdown waits 5 s for a new one).
const newConnIdle = 5 * time.Second

// Reasons a connection is reclaimed, the reason label of
// lameduck_http_connections_reclaimed_total.
const (
	ReasonIdle   = "idle"   // keep-alive, between requests
	ReasonHeader = "header" // no complete header block within HeaderShare
)

// What a connection is doing.
const (
	stateNew       int32 = iota // accepted, nothing read yet
	stateIdle                   // between requests (HTTP/2: no open stream)
	stateReading                // its next request's first bytes are in, its header block is not
	stateActive                 // serving a request (HTTP/2: a stream)
	stateReclaimed              // its read was failed to make room; it closes
)

// Tracker is the one record of the app connections. The zero value is not
// usable; make one with New. It is safe for concurrent use.
type Tracker struct {
	max, reserve int
	epoch        time.Time // since counts from it, on the monotonic clock
	refused      prometheus.Counter
	reclaimed    *prometheus.CounterVec

	arrived atomic.Int64 // when a connection last arrived (now), 0 before the first

	mu    sync.Mutex
	conns map[net.Conn]*conn // open, from Accept until net/http reports them closed
	peak  int
	freed chan struct{} // signalled when one closes, for a newcomer waiting for a slot
}

// New returns a Tracker that lets at most max connections be open at once,
// and registers its metrics with reg.
func New(max int, reg prometheus.Registerer) *Tracker {
	t := &Tracker{
		max: max, reserve: max / 16, epoch: time.Now(),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lameduck_http_connections_refused_total",
			Help: "App connections closed as soon as accepted: LAMEDUCK_MAX_CONNS were open, each serving a request.",
		}),
		reclaimed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lameduck_http_connections_reclaimed_total",
			Help: "App connections closed to make room for a newcomer, by reason: idle (between requests) or header (no complete header block within 1s).",
		}, []string{"reason"}),
		conns: map[net.Conn]*conn{},
		freed: make(chan struct{}, 1),
	}
	t.reclaimed.WithLabelValues(ReasonIdle)
	t.reclaimed.WithLabelValues(ReasonHeader)
	reg.MustRegister(t.refused, t.reclaimed, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "lameduck_http_connections", Help: "App connections open now (at most LAMEDUCK_MAX_CONNS).",
	}, func() float64 { return float64(t.Open()) }))
	return t
}

// Listener returns ln with the cap applied to its Accept. Closing it makes
// Accept return http.ErrServerClosed, so that http.Server.Serve returns it,
// as after a Shutdown.
func (t *Tracker) Listener(ln net.Listener) *Listener { return &Listener{Listener: ln, t: t} }

// Hook is the http.Server ConnState callback: net/http tells it when a
// connection starts and ends serving a request (HTTP/2: when its first
// stream opens and its last one closes), and when it closes.
func (t *Tracker) Hook(nc net.Conn, s http.ConnState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.conns[nc]
	if c == nil {
		return
	}
	switch s {
	case http.StateActive:
		c.state.Store(stateActive)
	case http.StateIdle:
		c.since.Store(t.now())
		c.state.Store(stateIdle)
	case http.StateClosed, http.StateHijacked:
		delete(t.conns, nc)
		select {
		case t.freed <- struct{}{}:
		default:
		}
	}
}

// Open returns the number of connections open now.
func (t *Tracker) Open() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns)
}

// Peak returns the most connections that were open at once.
func (t *Tracker) Peak() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.peak
}

// Remaining returns the number of connections open now but the late ones
// (see Listener.Reattach): those the shutdown closes once they are idle.
func (t *Tracker) Remaining() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, c := range t.conns {
		if !c.late {
			n++
		}
	}
	return n
}

// Busy returns the number of connections that serve a request, or are
// receiving one (for at most 5 s since their first byte, or since they were
// accepted): what the shutdown waits for before it closes the rest. Late
// connections are not counted: their requests are answered at once, and
// nothing waits for them.
func (t *Tracker) Busy() int {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, c := range t.conns {
		if c.late {
			continue
		}
		switch c.state.Load() {
		case stateActive:
			n++
		case stateNew, stateReading:
			if time.Duration(now-c.since.Load()) < newConnIdle {
				n++
			}
		}
	}
	return n
}

// LastArrival returns when a connection last arrived at the listener
// (accepted by the kernel and taken by Accept, whether admitted, refused or
// late), or the zero time if none has.
func (t *Tracker) LastArrival() time.Time {
	d := t.arrived.Load()
	if d == 0 {
		return time.Time{}
	}
	return t.epoch.Add(time.Duration(d))
}

// CloseIdle closes every connection idle now (between requests; HTTP/2:
// with no open stream) but the late ones, as a reclaimed one is closed:
// HTTP/1.1 at once, HTTP/2 after a GOAWAY. It returns how many. The shutdown
// calls it as the preStop delay ends, so that a client's pooled connection
// to this pod, idle since before the signal, goes now rather than meet a
// late answer when the client picks it again. A connection receiving its
// next request, or serving one, is left alone; one whose read deadline
// net/http moved just after this one (it had just gone idle) stays open
// until the HTTP phase closes it.
func (t *Tracker) CloseIdle() int {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, c := range t.conns {
		if c.late || !c.state.CompareAndSwap(stateIdle, stateReclaimed) {
			continue
		}
		c.failRead(now, true)
		n++
	}
	return n
}

// Refused and Reclaimed return the totals of the counters, for the exit's account.
func (t *Tracker) Refused() float64 { return value(t.refused) }

// Reclaimed returns how many connections were reclaimed, by reason.
func (t *Tracker) Reclaimed() map[string]float64 {
	return map[string]float64{
		ReasonIdle:   value(t.reclaimed.WithLabelValues(ReasonIdle)),
		ReasonHeader: value(t.reclaimed.WithLabelValues(ReasonHeader)),
	}
}

// admit returns nc as a tracked connection, or nil when every slot serves a
// request and nc was closed. At the reserve it reclaims the connections
// doing nothing longest; at the cap it waits, at most slotWait, for those it
// reclaimed to close.
func (t *Tracker) admit(nc net.Conn, late bool) *conn {
	deadline := time.Now().Add(slotWait)
	t.mu.Lock()
	for len(t.conns) >= t.max-t.reserve {
		closing := t.reclaim()
		if len(t.conns) < t.max {
			break
		}
		wait := time.Until(deadline)
		if closing == 0 || wait <= 0 {
			t.mu.Unlock()
			t.refused.Inc()
			_ = nc.Close()
			return nil
		}
		t.mu.Unlock()
		timer := time.NewTimer(min(wait, reclaimAgain+10*time.Millisecond))
		select {
		case <-t.freed:
		case <-timer.C:
		}
		timer.Stop()
		t.mu.Lock()
	}
	c := &conn{Conn: nc, t: t, late: late}
	c.since.Store(t.now())
	t.conns[c] = c // keyed by what net/http hands Hook: c itself
	t.peak = max(t.peak, len(t.conns))
	t.mu.Unlock()
	return c
}

// reclaim fails the reads of up to reclaimBatch connections doing nothing,
// longest first, and returns how many are closing (those already told to,
// and these). t.mu is held.
func (t *Tracker) reclaim() (closing int) {
	type candidate struct {
		c      *conn
		state  int32
		since  int64
		reason string
	}
	now := t.now()
	var cands []candidate
	for _, c := range t.conns {
		switch s, since := c.state.Load(), c.since.Load(); s {
		case stateReclaimed:
			if time.Duration(now-since) < reclaimAgain {
				closing++
				break
			}
			cands = append(cands, candidate{c, s, since, ""}) // still open: fail its read again
		case stateIdle:
			if c.h2.Load() && !c.h2Ready.Load() {
				// Its client's SETTINGS, the first frame, is not in: a
				// header block not delivered, as far as a GOAWAY goes.
				if time.Duration(now-since) >= HeaderShare {
					cands = append(cands, candidate{c, s, since, ReasonHeader})
				}
				break
			}
			cands = append(cands, candidate{c, s, since, ReasonIdle})
		case stateNew, stateReading:
			if time.Duration(now-since) >= HeaderShare {
				cands = append(cands, candidate{c, s, since, ReasonHeader})
			}
		}
	}
	slices.SortFunc(cands, func(a, b candidate) int { return cmp.Compare(a.since, b.since) })
	for _, k := range cands[:min(len(cands), reclaimBatch)] {
		if !k.c.state.CompareAndSwap(k.state, stateReclaimed) {
			continue // it started a request meanwhile
		}
		// A read deadline in the past fails the read net/http is blocked in
		// (waiting for the next request, or for the rest of a header block)
		// as a timeout, after which it closes the connection quietly, as
		// when its own idle or header timeout fires. A request whose header
		// block was complete by then is served: the deadline only bounds
		// reads, and its body, if any, is not read (408, no job taken).
		// The first time, an idle HTTP/2 connection's read returns a GOAWAY
		// from the client instead (conn.Read), which net/http answers with
		// its own GOAWAY before it closes the connection.
		k.c.failRead(now, k.reason == ReasonIdle)
		if k.reason != "" {
			t.reclaimed.WithLabelValues(k.reason).Inc()
		}
		closing++
	}
	return closing
}

func (t *Tracker) now() int64 { return int64(time.Since(t.epoch)) }

// Listener is the app listener: it applies the cap to Accept and notes when
// each connection arrives. Detach and Reattach hand its socket from one
// server to another without closing it, so that connections arriving after
// the preStop delay are answered rather than refused.
type Listener struct {
	net.Listener
	t        *Tracker
	late     bool // its connections are late (Reattach)
	closed   atomic.Bool
	detached atomic.Bool
}

// Accept waits for a connection, admits it under the cap (see the package
// comment) and returns it; it returns http.ErrServerClosed once l is closed
// or detached.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			if l.closed.Load() || l.detached.Load() {
				return nil, http.ErrServerClosed
			}
			return nil, err
		}
		l.t.arrived.Store(max(l.t.now(), 1))
		if c := l.t.admit(nc, l.late); c != nil {
			return c, nil
		}
	}
}

// Close closes the socket, unless l is detached from it: http.Server.Serve
// closes its listener as it returns, and after Detach that must not refuse
// the connections Reattach's listener is there to answer.
func (l *Listener) Close() error {
	if l.detached.Load() {
		return nil
	}
	l.closed.Store(true)
	return l.Listener.Close()
}

// deadliner is a listener whose Accept a deadline can end (*net.TCPListener).
type deadliner interface{ SetDeadline(time.Time) error }

// Detach ends l's Accept in progress, and every later one, with
// http.ErrServerClosed, without closing the socket: connections that arrive
// from now on wait in its backlog. Call Reattach, once the server serving l
// has returned from Serve, to accept them again.
func (l *Listener) Detach() error {
	d, ok := l.Listener.(deadliner)
	if !ok {
		return fmt.Errorf("conns: detach: %T has no SetDeadline", l.Listener)
	}
	l.detached.Store(true)
	if err := d.SetDeadline(time.Unix(1, 0)); err != nil { // a deadline in the past wakes a blocked Accept
		return fmt.Errorf("conns: detach: %w", err)
	}
	return nil
}

// Reattach returns a new Listener on l's socket, after Detach, for a server
// that answers late connections. Call it only once nothing calls l's Accept
// any more: it lifts the deadline that ended it. The connections it admits
// are late: under the same cap, but Busy and Remaining do not count them,
// so nothing waits for them. Closing the new Listener closes the socket.
func (l *Listener) Reattach() (*Listener, error) {
	if !l.detached.Load() {
		return nil, errors.New("conns: reattach: the listener is not detached")
	}
	if err := l.Listener.(deadliner).SetDeadline(time.Time{}); err != nil {
		return nil, fmt.Errorf("conns: reattach: %w", err)
	}
	return &Listener{Listener: l.Listener, t: l.t, late: true}, nil
}

// failRead ends c, reclaimed at now: it fails the read net/http is blocked
// in, and, when idle is set and c is an HTTP/2 connection past its client's
// SETTINGS, has that read hand net/http a client GOAWAY first (Read).
func (c *conn) failRead(now int64, idle bool) {
	c.since.Store(now)
	if idle && c.h2.Load() && c.h2Ready.Load() {
		c.goAway.Store(true)
	}
	_ = c.Conn.SetReadDeadline(time.Unix(1, 0))
}

// conn is one app connection's record. It notices the first bytes of a
// request on an idle connection, which the ConnState hook cannot see: such a
// connection is receiving a request, not idle.
type conn struct {
	net.Conn
	state   atomic.Int32
	since   atomic.Int64 // when it was accepted, went idle, or began its next request (Tracker.now)
	h2      atomic.Bool  // it began with the HTTP/2 preface
	h2Ready atomic.Bool  // and its client's first frame is in
	goAway  atomic.Bool  // reclaimed: its next failed read hands net/http a GOAWAY instead
	late    bool         // admitted by a Listener from Reattach: nothing waits for it
	t       *Tracker

	// Used by the one goroutine that reads the connection (net/http never
	// reads one concurrently).
	frames  frameCursor
	read    bool   // the first socket read happened
	pending []byte // read, or made up (a GOAWAY), and not yet handed to net/http
}

// readAhead is what the first read takes from the socket, whatever net/http
// asks for. Its h2c detection asks for 14 bytes ("PRI * HTTP/2.0") first:
// without this, the rest of an HTTP/1.1 request that arrived whole is taken
// by a second socket read, which the header deadline can fail, and net/http
// then parses the 14 bytes as a whole request line and answers 400 to a
// valid request (TestWholeRequestAfterHeaderDeadline).
const readAhead = 4 << 10

func (c *conn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	buf := p
	if !c.read {
		c.read = true
		if len(p) < readAhead {
			buf = make([]byte, readAhead)
		}
	}
	n, err := c.Conn.Read(buf)
	if n > 0 {
		c.received(buf[:n])
	}
	// net/http's HTTP/2 server answers a client's GOAWAY with its own and
	// closes the connection once its streams are done (at once: it has
	// none): the only way to send one connection a GOAWAY that net/http
	// offers. The frame must start where a frame would.
	if n == 0 && err != nil && c.goAway.CompareAndSwap(true, false) && c.frames.atBoundary() &&
		c.Conn.SetReadDeadline(time.Time{}) == nil {
		c.pending = clientGoAway[:]
		return c.Read(p)
	}
	if k := copy(p, buf[:n]); k < n {
		c.pending = buf[k:n]
		return k, nil // an error comes back from the next socket read
	}
	return n, err
}

// received notes the bytes b just read.
func (c *conn) received(b []byte) {
	switch c.state.Load() {
	case stateNew:
		if string(b[:min(len(b), len(h2Preface))]) == h2Preface[:min(len(b), len(h2Preface))] {
			c.h2.Store(true)
			c.frames.skip = len(http2ClientPreface)
		}
		c.state.CompareAndSwap(stateNew, stateReading) // its share counts from acceptance
	case stateIdle:
		// On HTTP/2 only a stream makes a connection busy: the frames
		// between streams (PING, WINDOW_UPDATE) do not.
		if !c.h2.Load() && c.state.CompareAndSwap(stateIdle, stateReading) {
			c.since.Store(c.t.now())
		}
	}
	if c.h2.Load() {
		c.frames.feed(b)
		if c.frames.frames > 0 && !c.h2Ready.Load() {
			c.h2Ready.Store(true)
		}
	}
}

const (
	h2Preface          = "PRI * HTTP/2.0"
	http2ClientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
)

// clientGoAway is an HTTP/2 GOAWAY frame (RFC 9113, 6.8) as a client sends
// it: no stream of the server's processed, no error.
var clientGoAway = [...]byte{0, 0, 8, 0x7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}

// frameCursor follows the HTTP/2 frames in the bytes read, to tell whether
// the bytes read so far end where a frame does.
type frameCursor struct {
	skip   int     // bytes left of the preface or of the current frame's payload
	hdr    [9]byte // the current frame header, as far as read
	hdrN   int
	frames int // frame headers read
}

func (f *frameCursor) feed(b []byte) {
	for len(b) > 0 {
		if f.skip > 0 {
			k := min(f.skip, len(b))
			f.skip, b = f.skip-k, b[k:]
			continue
		}
		k := copy(f.hdr[f.hdrN:], b)
		f.hdrN, b = f.hdrN+k, b[k:]
		if f.hdrN == len(f.hdr) {
			f.skip, f.hdrN = int(f.hdr[0])<<16|int(f.hdr[1])<<8|int(f.hdr[2]), 0
			f.frames++
		}
	}
}

// atBoundary reports whether the bytes read end where a frame does, past
// the client's first frame (its SETTINGS, which must come first).
func (f *frameCursor) atBoundary() bool { return f.skip == 0 && f.hdrN == 0 && f.frames > 0 }

// CloseWrite keeps net/http's half-close before it closes a connection,
// which lets the client read a final 408 or 431 instead of a reset.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func value(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return 0
	}
	return m.GetCounter().GetValue()
}
