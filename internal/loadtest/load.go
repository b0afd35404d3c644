// Package loadtest drives the mixed load of a rollout test against lameduck
// with vegeta (keep-alive and fresh-connection clients, slow requests, job
// submissions) and keeps the books: every response, every failure by kind,
// latencies, and the id of every job answered 202. Ledger checks those ids
// against the replicas' logs.
package loadtest

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"regexp"
	"slices"
	"sort"
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

	SlowMin, SlowMax time.Duration // default 1s and 3s
	JobWork          time.Duration // ?work= of each job; 0 leaves the server's LAMEDUCK_JOB_DURATION
	Timeout          time.Duration // per request; default 30s
}

// Rate is the total requests per second of m.
func (m Mix) Rate() int { return m.KeepAlive + m.Fresh + m.Slow + m.Jobs + m.FreshJobs }

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
	return m
}

// kind is one stream of the mix.
type kind struct {
	name      string
	rate      int
	keepAlive bool
	target    func(seq uint64, t *vegeta.Target)
}

func (m Mix) kinds(run string) []kind {
	slowMin, slowMax := m.SlowMin, m.SlowMax
	if slowMin <= 0 {
		slowMin = time.Second
	}
	if slowMax < slowMin {
		slowMax = max(slowMin, 3*time.Second)
	}
	hello := func(_ uint64, t *vegeta.Target) { t.Method, t.URL = http.MethodGet, m.Target+"/hello" }
	jobs := m.Target + "/jobs"
	if m.JobWork > 0 {
		jobs += "?work=" + m.JobWork.String()
	}
	return []kind{
		{"keepalive", m.KeepAlive, true, hello},
		{"fresh", m.Fresh, false, hello},
		{"slow", m.Slow, true, func(_ uint64, t *vegeta.Target) {
			d := slowMin + rand.N(slowMax-slowMin+time.Millisecond)
			t.Method, t.URL = http.MethodGet, fmt.Sprintf("%s/hello?delay=%dms", m.Target, d.Milliseconds())
		}},
		{"jobs", m.Jobs, true, func(seq uint64, t *vegeta.Target) {
			t.Method, t.URL = http.MethodPost, jobs
			t.Header = http.Header{"Idempotency-Key": {run + "-" + strconv.FormatUint(seq, 10)}}
			t.Body = []byte(`{"task":"rollout"}`)
		}},
		{"jobs-fresh", m.FreshJobs, false, func(_ uint64, t *vegeta.Target) {
			t.Method, t.URL = http.MethodPost, jobs
			t.Body = []byte(`{"task":"rollout"}`)
		}},
	}
}

// Load is a mixed load in progress. Start it with Start, end it with Stop.
type Load struct {
	started    time.Time
	attackers  []*vegeta.Attacker
	transports []*http.Transport // closed by Stop, so no idle connection outlives the load
	wg         sync.WaitGroup
	stopOnce   sync.Once
	final      Report

	mu       sync.Mutex
	stats    map[string]*kindStats
	all      vegeta.Metrics
	accepted []string
	samples  []string
}

type kindStats struct {
	metrics  vegeta.Metrics
	failures map[string]int
}

// Start begins sending m. Its goroutines run until Stop.
func Start(m Mix) *Load {
	timeout := m.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	l := &Load{started: time.Now(), stats: map[string]*kindStats{}}
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	for _, k := range m.kinds(run) {
		if k.rate <= 0 {
			continue
		}
		tr := newTransport(k.keepAlive)
		a := vegeta.NewAttacker(vegeta.Client(&http.Client{Transport: tr}),
			vegeta.Timeout(timeout), vegeta.Workers(16), vegeta.MaxBody(1024))
		l.attackers = append(l.attackers, a)
		l.transports = append(l.transports, tr)
		l.mu.Lock() // the kinds started before this one are recording already
		l.stats[k.name] = &kindStats{failures: map[string]int{}}
		l.mu.Unlock()
		var seq atomic.Uint64
		targeter := func(t *vegeta.Target) error {
			k.target(seq.Add(1), t)
			return nil
		}
		results := a.Attack(targeter, vegeta.Rate{Freq: k.rate, Per: time.Second}, 0, k.name)
		l.wg.Go(func() {
			for r := range results {
				l.record(k.name, r)
			}
		})
	}
	return l
}

// newTransport returns the transport vegeta.NewAttacker would build, made
// here so that Stop can close its idle connections (vegeta's own transport is
// private, and the goroutines of its idle connections outlive the load), and
// so that fresh connections are not bound to a local port before connect:
// vegeta.KeepAlive(false) swaps in a dialer that binds 0.0.0.0:0 first, which
// cannot reuse TIME_WAIT ports and runs out of them at a few hundred new
// connections a second.
func newTransport(keepAlive bool) *http.Transport {
	dialer := &net.Dialer{KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         dialer.DialContext,
		DisableKeepAlives:   !keepAlive,
		MaxIdleConnsPerHost: vegeta.DefaultConnections,
		MaxConnsPerHost:     vegeta.DefaultMaxConnections,
	}
}

// Counts returns the requests answered and failed so far.
func (l *Load) Counts() (requests, failures uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.stats {
		requests += s.metrics.Requests
		for _, n := range s.failures {
			failures += uint64(n)
		}
	}
	return requests, failures
}

// Stop ends the load, waits for every request in flight, closes the idle
// connections, and reports. Later calls return the same report.
func (l *Load) Stop() Report {
	l.stopOnce.Do(func() {
		for _, a := range l.attackers {
			a.Stop()
		}
		l.wg.Wait()
		for _, tr := range l.transports {
			tr.CloseIdleConnections()
		}
		l.final = l.report(time.Since(l.started))
	})
	return l.final
}

var (
	addrRE = regexp.MustCompile(`\d+\.\d+\.\d+\.\d+:\d+`)
	// urlRE matches the `Get "http://...": ` that *url.Error puts before
	// the cause, so that failures group by cause, not by URL.
	urlRE = regexp.MustCompile(`^[A-Z][a-zA-Z]* "[^"]*": `)
)

func (l *Load) record(kind string, r *vegeta.Result) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.stats[kind]
	s.metrics.Add(r)
	l.all.Add(r)
	if r.Code < 200 || r.Code >= 300 || r.Error != "" {
		why := addrRE.ReplaceAllString(urlRE.ReplaceAllString(r.Error, ""), "ADDR")
		if r.Code != 0 {
			why = strconv.Itoa(int(r.Code)) + " " + strings.TrimPrefix(why, strconv.Itoa(int(r.Code))+" ")
		}
		s.failures[why]++
		if len(l.samples) < 20 {
			l.samples = append(l.samples, fmt.Sprintf("%s %s %s at %s: %s", kind, r.Method, r.URL,
				r.Timestamp.Format("15:04:05.000"), why))
		}
		return
	}
	if r.Code == http.StatusAccepted {
		var body struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(r.Body, &body); err != nil || body.ID == "" {
			s.failures["202 without a job id"]++
			return
		}
		l.accepted = append(l.accepted, body.ID)
	}
}

// Report is the outcome of a load.
type Report struct {
	Duration  time.Duration
	Requests  uint64
	Failures  uint64
	Rate      float64 // requests per second sent
	P50, P99  time.Duration
	Kinds     []KindReport
	Accepted  []string // ids of the jobs answered 202, deduplicated
	Samples   []string // the first failures, in detail
	Processed int      // filled by the caller from a Ledger, for String
}

// KindReport is one kind's share of a Report.
type KindReport struct {
	Name       string
	Requests   uint64
	Failures   uint64
	FailuresBy map[string]int
	P50, P99   time.Duration
}

func (l *Load) report(d time.Duration) Report {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all.Close()
	rep := Report{
		Duration: d, Requests: l.all.Requests, Rate: l.all.Rate,
		P50: l.all.Latencies.P50, P99: l.all.Latencies.P99, Samples: slices.Clone(l.samples),
	}
	names := make([]string, 0, len(l.stats))
	for n := range l.stats {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s := l.stats[n]
		s.metrics.Close()
		k := KindReport{Name: n, Requests: s.metrics.Requests, FailuresBy: map[string]int{},
			P50: s.metrics.Latencies.P50, P99: s.metrics.Latencies.P99}
		for why, c := range s.failures {
			k.FailuresBy[why] = c
			k.Failures += uint64(c)
		}
		rep.Failures += k.Failures
		rep.Kinds = append(rep.Kinds, k)
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

// String renders the report as a short table.
func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "load: %d requests in %s (%.0f req/s), %d failed, p50 %s, p99 %s\n",
		r.Requests, r.Duration.Round(time.Millisecond), r.Rate, r.Failures,
		r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond))
	fmt.Fprintf(&b, "  %-11s %9s %8s %10s %10s\n", "kind", "requests", "failed", "p50", "p99")
	for _, k := range r.Kinds {
		fmt.Fprintf(&b, "  %-11s %9d %8d %10s %10s\n", k.Name, k.Requests, k.Failures,
			k.P50.Round(time.Microsecond), k.P99.Round(time.Microsecond))
		whys := make([]string, 0, len(k.FailuresBy))
		for why := range k.FailuresBy {
			whys = append(whys, why)
		}
		sort.Strings(whys)
		for _, why := range whys {
			fmt.Fprintf(&b, "      %6d × %s\n", k.FailuresBy[why], why)
		}
	}
	fmt.Fprintf(&b, "jobs: %d accepted, %d processed\n", len(r.Accepted), r.Processed)
	return b.String()
}
