package rehearsal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// BalancerConfig says how a Balancer learns which endpoints are ready.
type BalancerConfig struct {
	// Poll is how often every endpoint's /ready is probed; default 100ms.
	Poll time.Duration
	// Lag is how long an observed readiness change takes to reach routing,
	// as endpoints → EndpointSlice → kube-proxy does in a cluster; default
	// 300ms. A change takes effect between Lag and Lag + Poll after the
	// endpoint made it.
	Lag time.Duration
	// ProbeTimeout bounds one probe; default 1s (the kubelet's default
	// timeoutSeconds). A probe that fails, errs or times out means unready.
	ProbeTimeout time.Duration
}

func (c BalancerConfig) withDefaults() BalancerConfig {
	if c.Poll <= 0 {
		c.Poll = 100 * time.Millisecond
	}
	if c.Lag < 0 {
		c.Lag = 0
	} else if c.Lag == 0 {
		c.Lag = 300 * time.Millisecond
	}
	if c.ProbeTimeout <= 0 {
		c.ProbeTimeout = time.Second
	}
	return c
}

// BalancerStats counts the connections a Balancer accepted.
type BalancerStats struct {
	Accepted     uint64 // client connections accepted
	Rejected     uint64 // closed at once: no endpoint was ready
	DialFailures uint64 // closed at once: the chosen endpoint refused the connection
	// Pinned counts the connections DialPinned made or tried (not among the
	// above), and PinnedRefused those that failed: refused by the endpoint's
	// closed port, or with no endpoint routed.
	Pinned, PinnedRefused uint64
}

// Balancer is a layer-4 (TCP) balancer in front of lameduck replicas that
// behaves like kube-proxy: each new connection goes to an endpoint picked at
// random among those it believes ready, and stays there until either side
// closes it; established connections are never moved. Readiness comes from
// polling each endpoint's admin /ready and reaches routing only after
// BalancerConfig.Lag. With no endpoint ready, a new connection is reset at
// once (kube-proxy's REJECT); when the chosen endpoint refuses the dial, the
// client's connection is reset too, as a refused SYN would be in a cluster.
// DialPinned makes the same routing decision for one connection, with
// affinity to one endpoint, and connects to the endpoint itself, as DNAT does.
//
// Create it with NewBalancer; Close stops it. Its methods are safe for
// concurrent use.
type Balancer struct {
	cfg   BalancerConfig
	ln    net.Listener
	probe *http.Client
	stop  context.CancelFunc // ends the accept and poll loops
	wg    sync.WaitGroup     // the accept loop, the poll loop and every connection

	mu        sync.Mutex
	endpoints map[string]*endpoint
	routed    []*endpoint   // where new connections go, by name
	changed   chan struct{} // closed and replaced whenever routed changes
	conns     map[net.Conn]struct{}
	closed    bool
	stats     BalancerStats
}

// endpoint is one replica as the balancer sees it. Its fields are guarded by
// Balancer.mu.
type endpoint struct {
	name, app, admin string
	observed         bool     // the last probe's answer
	pending          []change // observed changes not in effect yet, oldest first
	routed           bool     // in effect: new connections may go here
	removed          bool     // forget it once it is no longer routed
}

// change is an observed readiness change and when it takes effect.
type change struct {
	at    time.Time
	ready bool
}

// NewBalancer listens on a loopback port and starts balancing to the
// endpoints added with Add.
func NewBalancer(cfg BalancerConfig) (*Balancer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("balancer: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Balancer{
		cfg: cfg.withDefaults(), ln: ln, stop: cancel,
		// A fresh connection per probe, as the kubelet's, leaves no idle
		// connection behind.
		probe:     &http.Client{Transport: &http.Transport{DisableKeepAlives: true}},
		endpoints: map[string]*endpoint{},
		changed:   make(chan struct{}),
		conns:     map[net.Conn]struct{}{},
	}
	b.wg.Go(func() { b.accept(ctx) })
	b.wg.Go(func() { b.poll(ctx) })
	return b, nil
}

// Addr is the address clients connect to.
func (b *Balancer) Addr() string { return b.ln.Addr().String() }

// DialPinned connects to where the balancer routes a new connection now,
// for a client with ClientIP session affinity to the endpoint pin: to pin
// whenever the balancer routes to it, else to a random routed endpoint, as
// kube-proxy does (a client's connections follow its affinity while the
// endpoint is among those routed, and are balanced anew once it is not).
//
// Unlike a connection to Addr, which the balancer must accept before it
// knows whether the endpoint will, and resets when the endpoint refuses, the
// connection is the endpoint's own, as a DNATed one is: a closed port
// refuses it, as it refuses the SYN in a cluster, and so does the balancer
// when no endpoint is routed. The difference matters to an HTTP/2 client,
// which takes a connection reset before it wrote its request for one that
// was never usable, and retries the request after a backoff (Go's: at once,
// then after 1s, 2s, ...), when the balancer routes elsewhere: a refused
// dial fails the request. The caller owns the connection.
func (b *Balancer) DialPinned(ctx context.Context, pin string) (net.Conn, error) {
	b.mu.Lock()
	b.stats.Pinned++
	e, ok := b.endpoints[pin]
	if !ok || !e.routed {
		e = nil
		if len(b.routed) > 0 {
			e = b.routed[rand.N(len(b.routed))]
		}
	}
	if e == nil {
		b.stats.PinnedRefused++
		b.mu.Unlock()
		return nil, fmt.Errorf("balancer: no endpoint ready: %w", syscall.ECONNREFUSED)
	}
	addr := e.app
	b.mu.Unlock()
	dialer := net.Dialer{Timeout: time.Second}
	c, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		b.mu.Lock()
		b.stats.PinnedRefused++
		b.mu.Unlock()
		return nil, err
	}
	return c, nil
}

// Add starts probing a replica whose app listens on appAddr and admin on
// adminAddr. It receives connections once a probe has found it ready and Lag
// has passed. Names must be unique.
func (b *Balancer) Add(name, appAddr, adminAddr string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.endpoints[name] = &endpoint{name: name, app: appAddr, admin: adminAddr}
}

// Remove is the deletion of a pod: it does not take the endpoint out of
// routing (only polling does, once /ready fails or the process is gone, and
// after Lag), it only lets the balancer forget the endpoint once it is no
// longer routed.
func (b *Balancer) Remove(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e, ok := b.endpoints[name]; ok {
		e.removed = true
		b.forgetLocked(e)
	}
}

// Routes reports whether new connections may go to the endpoint name.
func (b *Balancer) Routes(name string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.endpoints[name]
	return ok && e.routed
}

// WaitRoutes returns once new connections may go to the endpoint name, or
// with an error when ctx ends or the balancer closes first.
func (b *Balancer) WaitRoutes(ctx context.Context, name string) error {
	for {
		b.mu.Lock()
		e, ok := b.endpoints[name]
		routed, closed, changed := ok && e.routed, b.closed, b.changed
		b.mu.Unlock()
		switch {
		case routed:
			return nil
		case closed:
			return fmt.Errorf("balancer closed before routing to %s", name)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("balancer never routed to %s: %w", name, context.Cause(ctx))
		}
	}
}

// Routed returns the names of the endpoints new connections may go to.
func (b *Balancer) Routed() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	names := make([]string, len(b.routed))
	for i, e := range b.routed {
		names[i] = e.name
	}
	return names
}

// Stats returns the connection counts so far.
func (b *Balancer) Stats() BalancerStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stats
}

// Close stops accepting and polling, closes every connection and returns
// once every goroutine of the balancer has returned. It is safe to call more
// than once.
func (b *Balancer) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		b.wg.Wait()
		return nil
	}
	b.closed = true
	close(b.changed) // wake WaitRoutes callers
	b.changed = make(chan struct{})
	for c := range b.conns {
		_ = c.Close()
	}
	b.mu.Unlock()
	b.stop()
	err := b.ln.Close()
	b.wg.Wait()
	b.probe.CloseIdleConnections()
	return err
}

// accept hands every new connection to a goroutine of its own, until the
// listener closes.
func (b *Balancer) accept(ctx context.Context) {
	for {
		c, err := b.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			select { // a transient error, such as too many open files: retry soon
			case <-ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		b.wg.Go(func() { b.handle(ctx, c.(*net.TCPConn)) })
	}
}

// handle connects client to an endpoint and splices them until both
// directions are done.
func (b *Balancer) handle(ctx context.Context, client *net.TCPConn) {
	if !b.track(client) {
		return
	}
	defer b.untrack(client)
	e := b.pick()
	if e == nil {
		reset(client) // kube-proxy REJECT: no endpoint
		return
	}
	dialer := net.Dialer{Timeout: time.Second}
	c, err := dialer.DialContext(ctx, "tcp", e.app)
	if err != nil {
		b.mu.Lock()
		b.stats.DialFailures++
		b.mu.Unlock()
		reset(client) // what the client would see from a refused SYN after DNAT
		return
	}
	backend := c.(*net.TCPConn)
	if !b.track(backend) {
		return
	}
	defer b.untrack(backend)
	splice(client, backend)
}

// pick returns a random routed endpoint, or nil, and counts the connection.
func (b *Balancer) pick() *endpoint {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stats.Accepted++
	if len(b.routed) == 0 {
		b.stats.Rejected++
		return nil
	}
	return b.routed[rand.N(len(b.routed))]
}

// track records c so that Close can close it; once closed, it closes c and
// returns false.
func (b *Balancer) track(c net.Conn) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		_ = c.Close()
		return false
	}
	b.conns[c] = struct{}{}
	return true
}

func (b *Balancer) untrack(c net.Conn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.conns, c)
	_ = c.Close()
}

// splice copies bytes both ways until both directions are done. A clean end
// of one direction (EOF) is passed on as a half-close; an error (such as a
// reset) resets both connections, as it would reach the other side through
// NAT.
func splice(client, backend *net.TCPConn) {
	var wg sync.WaitGroup
	wg.Go(func() { pipe(backend, client) })
	pipe(client, backend)
	wg.Wait()
}

// pipe copies src to dst until src ends.
func pipe(dst, src *net.TCPConn) {
	if _, err := io.Copy(dst, src); err != nil {
		reset(dst)
		reset(src)
		return
	}
	_ = dst.CloseWrite()
}

// reset closes c with a RST instead of a FIN.
func reset(c *net.TCPConn) {
	_ = c.SetLinger(0)
	_ = c.Close()
}

// poll probes every endpoint each Poll and applies the changes it observes
// once they are due, until ctx ends.
func (b *Balancer) poll(ctx context.Context) {
	tick := time.NewTicker(b.cfg.Poll)
	defer tick.Stop()
	due := time.NewTimer(time.Hour)
	defer due.Stop()
	for {
		if next, ok := b.apply(time.Now()); ok {
			due.Reset(time.Until(next))
		} else {
			due.Stop()
		}
		select {
		case <-ctx.Done():
			return
		case <-due.C:
		case <-tick.C:
			b.probeAll(ctx)
		}
	}
}

// probeAll probes every endpoint at once and records what changed.
func (b *Balancer) probeAll(ctx context.Context) {
	b.mu.Lock()
	eps := make([]*endpoint, 0, len(b.endpoints))
	for _, e := range b.endpoints {
		eps = append(eps, e)
	}
	b.mu.Unlock()

	ready := make([]bool, len(eps))
	var wg sync.WaitGroup
	for i, e := range eps {
		wg.Go(func() { ready[i] = b.ready(ctx, e.admin) })
	}
	wg.Wait()

	at := time.Now().Add(b.cfg.Lag)
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, e := range eps {
		if ready[i] != e.observed {
			e.observed = ready[i]
			e.pending = append(e.pending, change{at: at, ready: ready[i]})
		}
	}
}

// ready probes GET /ready on admin.
func (b *Balancer) ready(ctx context.Context, admin string) bool {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.ProbeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/ready", nil)
	if err != nil {
		return false
	}
	resp, err := b.probe.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// apply puts into effect every change due at now, and returns when the next
// one is due, if any.
func (b *Balancer) apply(now time.Time) (next time.Time, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	dirty := false
	for _, e := range b.endpoints {
		for len(e.pending) > 0 && !e.pending[0].at.After(now) {
			if e.routed != e.pending[0].ready {
				e.routed, dirty = e.pending[0].ready, true
			}
			e.pending = e.pending[1:]
		}
		if len(e.pending) > 0 && (!ok || e.pending[0].at.Before(next)) {
			next, ok = e.pending[0].at, true
		}
		b.forgetLocked(e)
	}
	if dirty {
		b.routed = b.routed[:0]
		for _, e := range b.endpoints {
			if e.routed {
				b.routed = append(b.routed, e)
			}
		}
		slices.SortFunc(b.routed, func(x, y *endpoint) int { return strings.Compare(x.name, y.name) })
		close(b.changed)
		b.changed = make(chan struct{})
	}
	return next, ok
}

// forgetLocked drops e once it is removed, not routed, and no change of it
// is pending.
func (b *Balancer) forgetLocked(e *endpoint) {
	if e.removed && !e.routed && len(e.pending) == 0 {
		delete(b.endpoints, e.name)
	}
}
