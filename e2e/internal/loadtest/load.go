// Package loadtest drives the mixed load of a rollout test against lameduck
// with vegeta (keep-alive and fresh-connection clients, slow requests, job
// submissions) and keeps the books: every response, every failure by stream,
// kind and phase, the rate asked and the rate achieved, latencies, and the id
// of every job answered 202. Ledger checks those ids against the replicas'
// logs.
//
// Every stream's concurrency is bounded: at most Limit requests in flight
// and as many connections. When the target (or the machine running the load)
// slows down, the stream sends less instead of opening more connections, and
// the ticks it could not send are counted as skipped, not sent later in a
// burst. A report therefore tells a harness that could not keep its rate
// (RateError) apart from a service that failed requests (Failures). A 503
// with a Retry-After is back-pressure, counted apart: neither a success nor
// a failure.
package loadtest

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// Mix says how much of each kind of request to send, in requests per second,
// to Target (a base URL such as http://127.0.0.1:30080). A zero rate sends
// none of that kind.
type Mix struct {
	Target string

	KeepAlive int // GET /hello over pooled keep-alive connections
	Fresh     int // GET /hello, each on a new connection
	Slow      int // GET /hello?delay= between SlowMin and SlowMax, pooled
	Jobs      int // POST /jobs with an Idempotency-Key, pooled, as a careful client sends
	FreshJobs int // POST /jobs without a key, each on a new connection
	// H2C alternates GET /hello and POST /jobs without a key over pooled
	// HTTP/2 connections with prior knowledge (h2c): H2CConns of them, each
	// multiplexing its share. It needs no key: a GOAWAY names the requests
	// the server did not take, and the client retries exactly those.
	H2C int

	SlowMin, SlowMax time.Duration // default 1s and 3s
	JobWork          time.Duration // ?work= of each job; 0 leaves the server's LAMEDUCK_JOB_DURATION
	Timeout          time.Duration // per request; default 30s

	// Headroom is the latency a fast stream may see before it sends less
	// than asked: each stream may have rate × (its expected latency +
	// Headroom) requests in flight, and at least 8. Default 250ms.
	Headroom time.Duration
}

// Rate is the total requests per second of m.
func (m Mix) Rate() int { return m.KeepAlive + m.Fresh + m.Slow + m.Jobs + m.FreshJobs + m.H2C }

// Scale returns m with every rate multiplied by f (rounded, at least 1 where
// it was positive).
func (m Mix) Scale(f float64) Mix {
	s := func(r int) int {
		if r <= 0 {
			return 0
		}
		return max(1, int(float64(r)*f+0.5))
	}
	m.KeepAlive, m.Fresh, m.Slow, m.Jobs, m.FreshJobs = s(m.KeepAlive), s(m.Fresh), s(m.Slow), s(m.Jobs), s(m.FreshJobs)
	m.H2C = s(m.H2C)
	return m
}

// MaxInFlight is the most requests m keeps in flight at once, summed over
// its streams; and the most connections, but for the h2c stream's, which
// are H2CConns.
func (m Mix) MaxInFlight() int {
	n := 0
	for _, s := range m.streams("") {
		if s.rate > 0 {
			n += s.limit
		}
	}
	return n
}

// streamSpec is one stream of the mix.
type streamSpec struct {
	name      string
	rate      int
	limit     int // requests in flight, and connections, at most (h2c: H2CConns connections)
	keepAlive bool
	h2c       bool
	target    func(seq uint64, t *vegeta.Target)
}

func (m Mix) streams(run string) []streamSpec {
	slowMin, slowMax := m.SlowMin, m.SlowMax
	if slowMin <= 0 {
		slowMin = time.Second
	}
	if slowMax < slowMin {
		slowMax = max(slowMin, 3*time.Second)
	}
	headroom := m.Headroom
	if headroom <= 0 {
		headroom = 250 * time.Millisecond
	}
	limit := func(rate int, latency time.Duration) int {
		return max(8, int(math.Ceil(float64(rate)*(latency+headroom).Seconds())))
	}
	hello := func(_ uint64, t *vegeta.Target) { t.Method, t.URL = http.MethodGet, m.Target+"/hello" }
	jobs := m.Target + "/jobs"
	if m.JobWork > 0 {
		jobs += "?work=" + m.JobWork.String()
	}
	return []streamSpec{
		{"keepalive", m.KeepAlive, limit(m.KeepAlive, 0), true, false, hello},
		{"fresh", m.Fresh, limit(m.Fresh, 0), false, false, hello},
		{"slow", m.Slow, limit(m.Slow, slowMax), true, false, func(_ uint64, t *vegeta.Target) {
			d := slowMin + rand.N(slowMax-slowMin+time.Millisecond)
			t.Method, t.URL = http.MethodGet, fmt.Sprintf("%s/hello?delay=%dms", m.Target, d.Milliseconds())
		}},
		{"jobs", m.Jobs, limit(m.Jobs, m.JobWork), true, false, func(seq uint64, t *vegeta.Target) {
			t.Method, t.URL = http.MethodPost, jobs
			t.Header = http.Header{"Idempotency-Key": {run + "-" + strconv.FormatUint(seq, 10)}}
			t.Body = []byte(`{"task":"rollout"}`)
		}},
		{"jobs-fresh", m.FreshJobs, limit(m.FreshJobs, m.JobWork), false, false, func(_ uint64, t *vegeta.Target) {
			t.Method, t.URL = http.MethodPost, jobs
			t.Body = []byte(`{"task":"rollout"}`)
		}},
		{"h2c", m.H2C, limit(m.H2C, m.JobWork), true, true, func(seq uint64, t *vegeta.Target) {
			if seq%2 == 0 {
				t.Method, t.URL = http.MethodPost, jobs
				t.Body = []byte(`{"task":"rollout"}`)
				return
			}
			hello(seq, t)
		}},
	}
}

// Load is a mixed load in progress. Start it with Start, end it with Stop.
type Load struct {
	started  time.Time
	streams  []*stream
	wg       sync.WaitGroup
	stopOnce sync.Once
	final    Report

	mu       sync.Mutex
	phases   []phaseMark // in time order; phases[0] is "before"
	all      vegeta.Metrics
	failures map[FailureKey]int
	times    []FailureTime
	// backPressure counts, by stream, the 503s with a valid Retry-After.
	backPressure map[string]uint64
	accepted     []string
	samples      []string
	sampled      map[[2]string]int // samples kept by stream and kind
}

// stream is one running stream: its attacker, transport, pacer and books.
type stream struct {
	spec      streamSpec
	attacker  *vegeta.Attacker
	transport roundTripper // closed by Stop, so no idle connection outlives the load
	pacer     *steadyPacer
	conns     connCounter
	metrics   vegeta.Metrics // under Load.mu
}

type phaseMark struct {
	name string
	at   time.Time
}

// Start begins sending m. Its goroutines run until Stop. The load's first
// phase is "before"; Mark starts the next.
func Start(m Mix) *Load {
	timeout := m.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	l := &Load{started: time.Now(), failures: map[FailureKey]int{}, backPressure: map[string]uint64{}}
	l.phases = []phaseMark{{"before", l.started}}
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	for _, spec := range m.streams(run) {
		if spec.rate <= 0 {
			continue
		}
		s := &stream{spec: spec, pacer: newSteadyPacer(spec.rate)}
		if spec.h2c {
			s.transport = newH2CClients(&s.conns)
		} else {
			s.transport = newTransport(spec.keepAlive, spec.limit, &s.conns)
		}
		s.attacker = vegeta.NewAttacker(vegeta.Client(&http.Client{Transport: s.transport}),
			vegeta.Timeout(timeout), vegeta.Workers(uint64(min(16, spec.limit))),
			vegeta.MaxWorkers(uint64(spec.limit)), vegeta.MaxBody(1024))
		l.mu.Lock() // the streams started before this one are recording already
		l.streams = append(l.streams, s)
		l.mu.Unlock()
		var seq atomic.Uint64
		targeter := func(t *vegeta.Target) error {
			spec.target(seq.Add(1), t)
			return nil
		}
		results := s.attacker.Attack(targeter, s.pacer, 0, spec.name)
		l.wg.Go(func() {
			for r := range results {
				l.record(s, r)
			}
		})
	}
	return l
}

// Mark starts a new phase of the load, such as "rollout 2": failures of
// requests sent from now on are counted under name.
func (l *Load) Mark(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.phases = append(l.phases, phaseMark{name, time.Now()})
}

// newTransport returns the transport vegeta.NewAttacker would build, with
// its connections bounded by limit and counted in conns. It is made here so
// that Stop can close its idle connections (vegeta's own transport is
// private, and the goroutines of its idle connections outlive the load), and
// so that fresh connections are not bound to a local port before connect:
// vegeta.KeepAlive(false) swaps in a dialer that binds 0.0.0.0:0 first, which
// cannot reuse TIME_WAIT ports and runs out of them at a few hundred new
// connections a second.
func newTransport(keepAlive bool, limit int, conns *connCounter) *http.Transport {
	dialer := &net.Dialer{KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return conns.track(c), nil
		},
		DisableKeepAlives:   !keepAlive,
		MaxIdleConnsPerHost: limit,
		MaxConnsPerHost:     limit,
	}
}

// Counts returns the requests answered and failed so far.
func (l *Load) Counts() (requests, failures uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, n := range l.failures {
		failures += uint64(n)
	}
	return l.all.Requests, failures
}

// Stop ends the load, waits for every request in flight, closes the idle
// connections, and reports. Later calls return the same report.
func (l *Load) Stop() Report {
	l.stopOnce.Do(func() {
		// The rates are over the time the load was sending: a request that
		// hangs until its timeout must not stretch it.
		sending := time.Since(l.started)
		for _, s := range l.streams {
			s.attacker.Stop()
		}
		l.wg.Wait()
		for _, s := range l.streams {
			s.transport.CloseIdleConnections()
		}
		l.final = l.report(sending)
	})
	return l.final
}

// maxFailureTimes bounds the failures whose time a Load keeps for
// attribution (Report.FailureTimes); counts are always complete.
const maxFailureTimes = 100_000

var (
	addrRE = regexp.MustCompile(`\d+\.\d+\.\d+\.\d+:\d+`)
	// urlRE matches the `Get "http://...": ` that *url.Error puts before
	// the cause, so that failures group by cause, not by URL.
	urlRE = regexp.MustCompile(`^[A-Z][a-zA-Z]* "[^"]*": `)
)

func (l *Load) record(s *stream, r *vegeta.Result) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s.metrics.Add(r)
	l.all.Add(r)
	kind := ""
	if backPressure(r) {
		l.backPressure[s.spec.name]++
		return
	}
	if r.Code < 200 || r.Code >= 300 || r.Error != "" {
		kind = Classify(r.Code, r.Error)
	} else if r.Code == http.StatusAccepted {
		var body struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(r.Body, &body); err != nil || body.ID == "" {
			kind = KindBadResponse
		} else {
			l.accepted = append(l.accepted, body.ID)
		}
	}
	if kind == "" {
		return
	}
	phase := l.phases[0].name
	for _, p := range l.phases {
		if !r.Timestamp.Before(p.at) {
			phase = p.name
		}
	}
	l.failures[FailureKey{Stream: s.spec.name, Kind: kind, Phase: phase}]++
	if len(l.times) < maxFailureTimes {
		l.times = append(l.times, FailureTime{At: r.Timestamp, Stream: s.spec.name, Kind: kind})
	}
	// Up to 3 samples of each stream and kind, 40 in all: a burst of one
	// kind must not hide the only example of another.
	if sk := [2]string{s.spec.name, kind}; l.sampled[sk] < 3 && len(l.samples) < 40 {
		if l.sampled == nil {
			l.sampled = map[[2]string]int{}
		}
		l.sampled[sk]++
		why := addrRE.ReplaceAllString(urlRE.ReplaceAllString(r.Error, ""), "ADDR")
		if r.Code != 0 {
			why += answerOrigin(r)
		}
		l.samples = append(l.samples, fmt.Sprintf("%s %s %s at %s (%s): %s: %s", s.spec.name, r.Method, r.URL,
			r.Timestamp.Format("15:04:05.000"), phase, kind, why))
	}
}

// answerOrigin describes an HTTP answer that failed, so that its origin can
// be told: lameduck's handlers answer through net/http's response writer,
// which always sets Date; net/http answers a request it cannot parse with a
// bare status line, no Date, before any handler runs.
func answerOrigin(r *vegeta.Result) string {
	body := r.Body
	if len(body) > 120 {
		body = body[:120]
	}
	origin := "from a handler"
	if r.Headers.Get("Date") == "" {
		origin = "from net/http before any handler (no Date header)"
	}
	return fmt.Sprintf(" (%s; body %q)", origin, body)
}

// backPressure reports whether r is a refusal the client is told to retry:
// 503 with a Retry-After of a whole number of seconds, at least 1. It is
// neither a success nor a failure: the service kept no promise it could not
// keep, and said when to come back.
func backPressure(r *vegeta.Result) bool {
	if r.Code != http.StatusServiceUnavailable {
		return false
	}
	secs, err := strconv.Atoi(r.Headers.Get("Retry-After"))
	return err == nil && secs >= 1
}

// Failure kinds, as Classify names them.
const (
	KindRefused     = "refused"      // connection refused: nothing listened
	KindReset       = "reset"        // connection reset or broken pipe
	KindEOF         = "eof"          // the connection closed before a response
	KindTimeout     = "timeout"      // no response within the request timeout
	KindBadResponse = "bad response" // a 202 without a job id
	KindClient      = "client limit" // the load's own machine ran out of ports or files: the harness's failure
	KindOther       = "other"        // any other transport error
)

// Classify names the kind of a failed result: an HTTP status outside 2xx is
// "http NNN"; transport errors are refused, reset, eof, timeout, client
// limit (the load's own machine, not the service) or other.
func Classify(code uint16, err string) string {
	switch {
	case code != 0 && (code < 200 || code >= 300):
		return "http " + strconv.Itoa(int(code))
	case strings.Contains(err, "cannot assign requested address"), strings.Contains(err, "too many open files"):
		return KindClient
	case strings.Contains(err, "connection refused"):
		return KindRefused
	case strings.Contains(err, "connection reset"), strings.Contains(err, "broken pipe"):
		return KindReset
	case strings.Contains(err, "Timeout"), strings.Contains(err, "timeout"), strings.Contains(err, "deadline exceeded"):
		return KindTimeout
	case strings.Contains(err, "EOF"), strings.Contains(err, "server closed idle connection"),
		// HTTP/2: a connection that ended under its streams, or before it
		// could carry one; a GOAWAY alone is never an error (Go's client
		// retries the streams it names as not taken).
		strings.Contains(err, "http2: server sent GOAWAY and closed the connection"),
		strings.Contains(err, "http2: client conn"), strings.Contains(err, "http2: client connection lost"):
		return KindEOF
	default:
		return KindOther
	}
}

// ConnectionLevel reports whether kind is a failure a stopping listener
// causes: refused, reset or eof.
func ConnectionLevel(kind string) bool {
	return kind == KindRefused || kind == KindReset || kind == KindEOF
}

// FailureKey is where a failure belongs: its stream, kind and phase.
type FailureKey struct {
	Stream, Kind, Phase string
}

// FailureTime is when one failed request was sent.
type FailureTime struct {
	At           time.Time
	Stream, Kind string
}

// Report is the outcome of a load.
type Report struct {
	Duration time.Duration // from Start until Stop was called: the time the load was sending
	Requests uint64        // requests sent and answered (or failed)
	Failures uint64        // requests that failed, in any way
	// BackPressure counts the 503s with a valid Retry-After: refused, told
	// when to retry, and counted neither as success nor as failure.
	BackPressure uint64
	Asked        int     // requests per second asked, all streams
	Rate         float64 // requests per second achieved (sent)
	P50, P99     time.Duration
	Streams      []StreamReport
	Phases       []string           // in order
	Failed       map[FailureKey]int // every failure, by stream, kind and phase
	// FailureTimes holds the send time of the first 100,000 failures, for
	// attributing them to what happened then (which pods were stopping).
	FailureTimes []FailureTime
	Accepted     []string // ids of the jobs answered 202, deduplicated
	Samples      []string // the first failures, in detail
	Processed    int      // filled by the caller from a Ledger, for String
}

// StreamReport is one stream's share of a Report.
type StreamReport struct {
	Name      string
	Asked     int     // requests per second asked
	Achieved  float64 // requests per second sent
	Skipped   uint64  // ticks not sent because Limit requests were in flight
	Limit     int     // requests in flight, and connections, at most
	PeakConns int64   // most sockets open at once, each until it is closed (a closing one may outlast its slot)
	Requests  uint64
	Failures  uint64
	// BackPressure counts the stream's 503s with a valid Retry-After.
	BackPressure uint64
	P50, P99     time.Duration
}

func (l *Load) report(d time.Duration) Report {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all.Close()
	rep := Report{
		Duration: d, Requests: l.all.Requests, Rate: float64(l.all.Requests) / d.Seconds(),
		P50: l.all.Latencies.P50, P99: l.all.Latencies.P99, Samples: slices.Clone(l.samples),
		Failed: map[FailureKey]int{}, FailureTimes: slices.Clone(l.times),
	}
	for _, p := range l.phases {
		rep.Phases = append(rep.Phases, p.name)
	}
	perStream := map[string]uint64{}
	for k, n := range l.failures {
		rep.Failed[k] = n
		rep.Failures += uint64(n)
		perStream[k.Stream] += uint64(n)
	}
	for _, s := range l.streams {
		s.metrics.Close()
		rep.Asked += s.spec.rate
		rep.BackPressure += l.backPressure[s.spec.name]
		rep.Streams = append(rep.Streams, StreamReport{
			Name: s.spec.name, Asked: s.spec.rate, Achieved: float64(s.metrics.Requests) / d.Seconds(),
			Skipped: s.pacer.skipped.Load(), Limit: s.spec.limit, PeakConns: s.conns.peak.Load(),
			Requests: s.metrics.Requests, Failures: perStream[s.spec.name], BackPressure: l.backPressure[s.spec.name],
			P50: s.metrics.Latencies.P50, P99: s.metrics.Latencies.P99,
		})
	}
	seen := make(map[string]bool, len(l.accepted))
	for _, id := range l.accepted {
		if !seen[id] {
			seen[id] = true
			rep.Accepted = append(rep.Accepted, id)
		}
	}
	return rep
}

// RateError returns an error when the load achieved less than floor (a
// fraction, such as 0.8) of the rate it asked: the harness, not the service,
// could not do its part, and the run proves less than it claims.
func (r Report) RateError(floor float64) error {
	if r.Asked == 0 || r.Rate >= floor*float64(r.Asked) {
		return nil
	}
	return fmt.Errorf("the load generator could not keep the rate: %.0f of %d req/s (floor %.0f%%, %d requests not sent "+
		"because every allowed connection was busy): the machine running the load was too slow or busy, or the "+
		"service answered too slowly; see the per-stream p50/p99", r.Rate, r.Asked, floor*100, r.skipped())
}

func (r Report) skipped() uint64 {
	var n uint64
	for _, s := range r.Streams {
		n += s.Skipped
	}
	return n
}

// ByKind sums the failures by kind.
func (r Report) ByKind() map[string]int {
	out := map[string]int{}
	for k, n := range r.Failed {
		out[k.Kind] += n
	}
	return out
}

// String renders the report as a short table: the streams with their asked
// and achieved rates, then every failure by phase, stream and kind.
func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "load: %d requests in %s, %.0f of %d req/s asked, %d failed, %d back-pressure (503 with Retry-After), p50 %s, p99 %s\n",
		r.Requests, r.Duration.Round(time.Millisecond), r.Rate, r.Asked, r.Failures, r.BackPressure,
		r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond))
	fmt.Fprintf(&b, "  %-11s %6s %8s %8s %6s %6s %9s %7s %7s %10s %10s\n",
		"stream", "asked", "achieved", "skipped", "limit", "conns", "requests", "failed", "503+RA", "p50", "p99")
	for _, s := range r.Streams {
		fmt.Fprintf(&b, "  %-11s %6d %8.0f %8d %6d %6d %9d %7d %7d %10s %10s\n", s.Name, s.Asked, s.Achieved, s.Skipped,
			s.Limit, s.PeakConns, s.Requests, s.Failures, s.BackPressure, s.P50.Round(time.Microsecond), s.P99.Round(time.Microsecond))
	}
	if len(r.Failed) > 0 {
		keys := make([]FailureKey, 0, len(r.Failed))
		for k := range r.Failed {
			keys = append(keys, k)
		}
		order := map[string]int{}
		for i, p := range r.Phases {
			order[p] = i
		}
		slices.SortFunc(keys, func(a, b FailureKey) int {
			if d := order[a.Phase] - order[b.Phase]; d != 0 {
				return d
			}
			return strings.Compare(a.Stream+"\x00"+a.Kind, b.Stream+"\x00"+b.Kind)
		})
		b.WriteString("  failures by phase, stream and kind:\n")
		for _, k := range keys {
			fmt.Fprintf(&b, "    %-16s %-11s %-14s %7d\n", k.Phase, k.Stream, k.Kind, r.Failed[k])
		}
	}
	fmt.Fprintf(&b, "jobs: %d accepted, %d processed\n", len(r.Accepted), r.Processed)
	return b.String()
}
