package rehearsal

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lameduck/lameduck/e2e/internal/loadtest"
)

// The protocols a replica is probed with as it stops.
const (
	// ProbeHTTP1 is HTTP/1.1, each request on a new connection.
	ProbeHTTP1 = "http/1.1"
	// ProbeH2C is HTTP/2 with prior knowledge over one pooled connection,
	// opened before the SIGTERM and replaced, as a client replaces it, after
	// the replica's GOAWAY.
	ProbeH2C = "h2c"
)

// probeEvery is how often a probe sends a request of each protocol while
// the balancer routes to its replica: a dozen times or more in a Lag of
// 300ms.
const probeEvery = 20 * time.Millisecond

// probeTimeout bounds one probe request.
const probeTimeout = 5 * time.Second

// Probe is what the requests pinned to one terminated replica saw, over one
// protocol, from its SIGTERM until the balancer stopped routing to it: the
// requests that the random pick sends there by chance, sent there on purpose
// (Balancer.DialPinned). A replica that keeps listening through the lag (a
// preStop delay longer than it) answers every one; one that stops listening
// at once has its new connections refused, and every request that needs one
// fails.
type Probe struct {
	Replica string
	Proto   string            // ProbeHTTP1 or ProbeH2C
	Sent    int               // requests started from the SIGTERM until the probe saw Replica no longer routed
	Failed  map[string]int    // the failed ones by kind, as loadtest.Classify names them
	Samples map[string]string // the first failure of each kind
}

// Failures is how many of the probe's requests failed.
func (p Probe) Failures() int {
	n := 0
	for _, k := range p.Failed {
		n += k
	}
	return n
}

// String is the probe on one line.
func (p Probe) String() string {
	kinds := make([]string, 0, len(p.Failed))
	for _, k := range slices.Sorted(maps.Keys(p.Failed)) {
		kinds = append(kinds, fmt.Sprintf("%s:%d", k, p.Failed[k]))
	}
	s := fmt.Sprintf("%-8s %-8s sent %3d, failed %3d", p.Replica, p.Proto, p.Sent, p.Failures())
	if len(kinds) > 0 {
		s += " (" + strings.Join(kinds, " ") + ")"
	}
	return s
}

// prober probes one replica: made before its SIGTERM, run after it.
type prober struct {
	replica string
	url     string          // GET /hello, on connections from Balancer.DialPinned
	clients [2]*http.Client // ProbeHTTP1, ProbeH2C
	trs     [2]*http.Transport
	done    chan struct{} // closed when run returns

	mu     sync.Mutex
	probes [2]Probe
}

// newProber makes the probes of the replica name, whose connections bal
// routes with affinity to name, and opens the h2c connection, which lands on
// name since the balancer routes to it: the connection the replica's GOAWAY
// will end.
func newProber(ctx context.Context, bal *Balancer, name string) (*prober, error) {
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) { return bal.DialPinned(ctx, name) }
	var h2c http.Protocols
	h2c.SetUnencryptedHTTP2(true)
	p := &prober{
		// The host is never dialled: DialPinned picks the address.
		replica: name, url: "http://" + name + ".rehearsal/hello", done: make(chan struct{}),
		trs: [2]*http.Transport{
			{DialContext: dial, DisableKeepAlives: true},
			// Requests one at a time: one connection, until its GOAWAY.
			{DialContext: dial, Protocols: &h2c},
		},
	}
	for i, proto := range []string{ProbeHTTP1, ProbeH2C} {
		p.clients[i] = &http.Client{Transport: p.trs[i], Timeout: probeTimeout}
		p.probes[i] = Probe{Replica: name, Proto: proto, Failed: map[string]int{}, Samples: map[string]string{}}
	}
	if code, err := p.get(ctx, p.clients[1]); err != nil || code != http.StatusOK {
		p.close()
		return nil, fmt.Errorf("probe %s: the h2c connection before SIGTERM: %d, %v", name, code, err)
	}
	return p, nil
}

// run starts a request of each protocol every probeEvery while routes
// reports that the balancer routes to the replica, each on its own
// goroutine, so that a slow one (such as the last served on the h2c
// connection before its GOAWAY, on a busy machine) holds up no other; then
// it waits for them, or until ctx ends.
func (p *prober) run(ctx context.Context, routes func() bool) {
	defer close(p.done)
	defer p.close()
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(probeEvery)
	defer tick.Stop()
	for ctx.Err() == nil && routes() {
		for i, c := range p.clients {
			wg.Go(func() { p.send(ctx, i, c) })
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}

// send sends one request of probe i with c and records its outcome.
func (p *prober) send(ctx context.Context, i int, c *http.Client) {
	code, err := p.get(ctx, c)
	if ctx.Err() != nil {
		return // the rehearsal is over: not the replica's doing
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	pr := &p.probes[i]
	pr.Sent++
	if err == nil && code >= 200 && code < 300 {
		return
	}
	msg := fmt.Sprint(err)
	if err == nil {
		msg = http.StatusText(int(code))
	}
	kind := loadtest.Classify(code, msg) // "http 503", "refused", ...
	pr.Failed[kind]++
	if _, ok := pr.Samples[kind]; !ok {
		pr.Samples[kind] = msg
	}
}

// get sends GET /hello with c and returns the status once the body is read
// to its end, or the error.
func (p *prober) get(ctx context.Context, c *http.Client) (uint16, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0, err
	}
	return uint16(resp.StatusCode), nil
}

func (p *prober) close() {
	for _, t := range p.trs {
		t.CloseIdleConnections()
	}
}
