package metrics

import (
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The route label of lameduck_http_request_duration_seconds: the app's
// routes, and every other path as one.
const (
	RouteHello = "/hello"
	RouteJobs  = "/jobs"
	RouteOther = "other"
)

// The series of lameduck_http_request_duration_seconds: numRoutes routes
// (routeLabel) by numClasses status classes (classLabel).
const (
	numRoutes  = 3
	numClasses = 6
	classCut   = numClasses - 1 // a request the shutdown deadline cut
)

// durationBuckets are the upper bounds of lameduck_http_request_duration_seconds.
func durationBuckets() []float64 {
	return []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
}

const numBuckets = 16 // len(durationBuckets())

// knownCodes are the status codes the handlers answer, whose
// lameduck_http_requests_total series exist from start-up and are counted
// on the shards; any other code is counted apart, under a lock.
func knownCodes() []int { return []int{200, 202, 400, 404, 405, 408, 413, 500, 503} }

const numCodes = 9 // len(knownCodes())

// codeIndex is code's index in knownCodes, or -1.
func codeIndex(code int) int {
	switch code {
	case 200:
		return 0
	case 202:
		return 1
	case 400:
		return 2
	case 404:
		return 3
	case 405:
		return 4
	case 408:
		return 5
	case 413:
		return 6
	case 500:
		return 7
	case 503:
		return 8
	}
	return -1
}

// routeIndex is the route of path, an index for routeLabel.
func routeIndex(path string) int {
	switch path {
	case RouteHello:
		return 0
	case RouteJobs:
		return 1
	}
	return 2
}

func routeLabel(i int) string { return [numRoutes]string{RouteHello, RouteJobs, RouteOther}[i] }

// classIndex is the status class of code, an index for classLabel; a code
// outside 100–599 counts as 5xx.
func classIndex(code int) int {
	if code < 100 || code > 599 {
		return 4
	}
	return code/100 - 1
}

func classLabel(i int) string {
	if i == classCut {
		return CodeCut
	}
	return strconv.Itoa(i+1) + "xx"
}

// httpShard is one shard of the app requests' metrics.
type httpShard struct {
	_        [64]byte
	inflight atomic.Int64
	codes    [numCodes + 1]atomic.Uint64 // by codeIndex; the last is code="cut"
	// buckets counts each series' observations by bucket (not cumulative;
	// the last is +Inf); sums adds up their nanoseconds.
	buckets [numRoutes][numClasses][numBuckets + 1]atomic.Uint64
	sums    [numRoutes][numClasses]atomic.Int64
	_       [64]byte
}

// httpMetrics are lameduck_http_requests_total,
// lameduck_http_request_duration_seconds and lameduck_http_inflight_requests:
// what every app request writes. They are written to per-CPU shards, so that
// requests on different cores share no written memory, and summed when
// collected.
type httpMetrics struct {
	shards                       *PerCPU[httpShard]
	epoch                        time.Time // a request's start is the time since, on the monotonic clock
	bounds                       []float64
	requests, duration, inflight *prometheus.Desc

	mu     sync.Mutex
	others map[int]uint64 // requests answered with a code not in knownCodes
}

func newHTTPMetrics() *httpMetrics {
	return &httpMetrics{
		shards: NewPerCPU[httpShard](runtime.GOMAXPROCS(0)),
		epoch:  time.Now(),
		bounds: durationBuckets(),
		requests: prometheus.NewDesc("lameduck_http_requests_total",
			"App requests answered, by status code.", []string{"code"}, nil),
		duration: prometheus.NewDesc("lameduck_http_request_duration_seconds",
			"Time from an app request's headers read to its handler's return, by route (/hello, /jobs, other) and status class (2xx, 4xx... or cut).",
			[]string{"route", "class"}, nil),
		inflight: prometheus.NewDesc("lameduck_http_inflight_requests", "App requests being served now.", nil, nil),
		others:   map[int]uint64{},
	}
}

// Request is an app request in flight, counted in
// lameduck_http_inflight_requests (and Inflight) until Done.
type Request struct {
	h     *httpMetrics
	shard *httpShard
	start time.Duration // since h.epoch: time.Since reads the monotonic clock alone, time.Now two clocks
}

// Begin counts an app request in flight from now.
func (m *Metrics) Begin() Request {
	s := m.http.shards.Get()
	s.inflight.Add(1)
	return Request{h: m.http, shard: s, start: time.Since(m.http.epoch)}
}

// Done ends r: it counts as answered to path with status code (or as cut by
// the shutdown deadline), in lameduck_http_requests_total and
// lameduck_http_request_duration_seconds, and then is no longer in flight:
// once Inflight reads 0, every request it counted is in the totals.
func (r Request) Done(path string, code int, cut bool) {
	d := time.Since(r.h.epoch) - r.start
	s := r.shard
	class := classIndex(code)
	switch i := codeIndex(code); {
	case cut:
		class = classCut
		s.codes[numCodes].Add(1)
	case i >= 0:
		s.codes[i].Add(1)
	default:
		r.h.mu.Lock()
		r.h.others[code]++
		r.h.mu.Unlock()
	}
	route := routeIndex(path)
	b := numBuckets // +Inf
	for i, bound := range r.h.bounds {
		if d.Seconds() <= bound {
			b = i
			break
		}
	}
	s.buckets[route][class][b].Add(1)
	s.sums[route][class].Add(int64(d))
	s.inflight.Add(-1)
}

// Inflight returns the number of app requests between Begin and Done now:
// lameduck_http_inflight_requests, exactly (each request adds to and
// subtracts from the same shard). It is the one count of requests in flight
// that the shutdown reads too: what it waits for, and what its deadline cuts.
func (m *Metrics) Inflight() int64 {
	var n int64
	for _, s := range m.http.shards.All() {
		n += s.inflight.Load()
	}
	return n
}

// RequestsByCode returns lameduck_http_requests_total's series that are not
// zero, by code: the last values, for the exit's account, which no scrape
// will read once the process has exited.
func (m *Metrics) RequestsByCode() map[string]float64 {
	h := m.http
	var codes [numCodes + 1]uint64
	for _, s := range h.shards.All() {
		for i := range codes {
			codes[i] += s.codes[i].Load()
		}
	}
	out := map[string]float64{}
	for i, code := range knownCodes() {
		if codes[i] > 0 {
			out[strconv.Itoa(code)] = float64(codes[i])
		}
	}
	if codes[numCodes] > 0 {
		out[CodeCut] = float64(codes[numCodes])
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for code, n := range h.others {
		out[strconv.Itoa(code)] += float64(n)
	}
	return out
}

// Describe implements prometheus.Collector.
func (h *httpMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- h.requests
	ch <- h.duration
	ch <- h.inflight
}

// Collect implements prometheus.Collector: the sums of the shards. Every
// series of the known codes and of the duration exists from start-up.
func (h *httpMetrics) Collect(ch chan<- prometheus.Metric) {
	var inflight int64
	var codes [numCodes + 1]uint64
	var buckets [numRoutes][numClasses][numBuckets + 1]uint64
	var sums [numRoutes][numClasses]int64
	for _, s := range h.shards.All() {
		inflight += s.inflight.Load()
		for i := range codes {
			codes[i] += s.codes[i].Load()
		}
		for r := range numRoutes {
			for c := range numClasses {
				for b := range numBuckets + 1 {
					buckets[r][c][b] += s.buckets[r][c][b].Load()
				}
				sums[r][c] += s.sums[r][c].Load()
			}
		}
	}
	ch <- prometheus.MustNewConstMetric(h.inflight, prometheus.GaugeValue, float64(inflight))
	for i, code := range knownCodes() {
		ch <- prometheus.MustNewConstMetric(h.requests, prometheus.CounterValue, float64(codes[i]), strconv.Itoa(code))
	}
	ch <- prometheus.MustNewConstMetric(h.requests, prometheus.CounterValue, float64(codes[numCodes]), CodeCut)
	h.mu.Lock()
	for code, n := range h.others {
		ch <- prometheus.MustNewConstMetric(h.requests, prometheus.CounterValue, float64(n), strconv.Itoa(code))
	}
	h.mu.Unlock()
	for r := range numRoutes {
		for c := range numClasses {
			cumulative := make(map[float64]uint64, numBuckets)
			var count uint64
			for b, bound := range h.bounds {
				count += buckets[r][c][b]
				cumulative[bound] = count
			}
			count += buckets[r][c][numBuckets]
			ch <- prometheus.MustNewConstHistogram(h.duration, count, time.Duration(sums[r][c]).Seconds(), cumulative,
				routeLabel(r), classLabel(c))
		}
	}
}
