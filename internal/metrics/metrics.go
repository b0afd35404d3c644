// Package metrics defines lameduck's Prometheus collectors. Every labelled
// series is created at start-up, so dashboards and alerts see it before the
// first shutdown.
package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Shutdown phases, the values of the phase label.
const (
	PhasePrestop = "prestop"
	PhaseHTTP    = "http"
	PhaseQueue   = "queue"
)

// Rejection reasons, the values of the reason label.
const (
	ReasonFull   = "full"   // the queue holds LAMEDUCK_QUEUE_SIZE jobs
	ReasonBudget = "budget" // the job could not finish within the drain budget
	ReasonClosed = "closed" // the queue closed: the shutdown reached its drain
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

// Metrics holds every collector lameduck exports.
type Metrics struct {
	Requests            *prometheus.CounterVec
	RequestDuration     *prometheus.HistogramVec
	Inflight            prometheus.Gauge
	RequestsAfterSignal prometheus.Counter
	JobsAccepted        prometheus.Counter
	JobsProcessed       prometheus.Counter
	JobsRejected        *prometheus.CounterVec
	JobsDropped         prometheus.Counter
	QueueDepth          prometheus.Gauge
	Backlog             prometheus.Gauge
	JobLatency          prometheus.Histogram
	ShutdownPhase       *prometheus.GaugeVec

	// codes caches the Requests counter of common status codes, and
	// durations every RequestDuration series, so the hot path skips the
	// label lookups.
	codes     map[int]prometheus.Counter
	durations [numRoutes][numClasses]prometheus.Observer
}

// New creates the collectors and registers them with reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lameduck_http_requests_total", Help: "App requests answered, by status code.",
		}, []string{"code"}),
		RequestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "lameduck_http_request_duration_seconds",
			Help:    "Time from an app request's headers read to its handler's return, by route (/hello, /jobs, other) and status class (2xx, 4xx... or cut).",
			Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		}, []string{"route", "class"}),
		Inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lameduck_http_inflight_requests", Help: "App requests being served now.",
		}),
		RequestsAfterSignal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lameduck_http_requests_after_signal_total",
			Help: "App requests that arrived after SIGTERM: how long endpoint removal took to reach this pod.",
		}),
		JobsAccepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lameduck_jobs_accepted_total", Help: "Jobs accepted into the queue (answered 202).",
		}),
		JobsProcessed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lameduck_jobs_processed_total", Help: "Jobs processed to completion.",
		}),
		JobsRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lameduck_jobs_rejected_total", Help: "Jobs refused (never accepted), by reason.",
		}, []string{"reason"}),
		JobsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lameduck_jobs_dropped_total", Help: "Accepted jobs left unprocessed at the drain deadline.",
		}),
		QueueDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lameduck_queue_depth", Help: "Jobs waiting in the queue.",
		}),
		Backlog: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lameduck_jobs_backlog_seconds",
			Help: "Time the workers need to finish every accepted job (queued jobs' work plus what is left of running ones, divided among the workers); admission keeps it within the drain budget.",
		}),
		JobLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "lameduck_job_latency_seconds", Help: "Time from enqueue to processed.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 14), // 100µs to ~15s
		}),
		ShutdownPhase: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "lameduck_shutdown_phase_seconds", Help: "Duration of each phase of the last shutdown.",
		}, []string{"phase"}),
		codes: map[int]prometheus.Counter{},
	}
	reg.MustRegister(m.Requests, m.RequestDuration, m.Inflight, m.RequestsAfterSignal, m.JobsAccepted, m.JobsProcessed,
		m.JobsRejected, m.JobsDropped, m.QueueDepth, m.Backlog, m.JobLatency, m.ShutdownPhase)
	for _, p := range []string{PhasePrestop, PhaseHTTP, PhaseQueue} {
		m.ShutdownPhase.WithLabelValues(p)
	}
	for _, r := range []string{ReasonFull, ReasonBudget, ReasonClosed} {
		m.JobsRejected.WithLabelValues(r)
	}
	for _, c := range []int{200, 202, 400, 404, 405, 413, 500, 503} {
		m.codes[c] = m.Requests.WithLabelValues(strconv.Itoa(c))
	}
	for i := range numRoutes {
		for j := range numClasses {
			m.durations[i][j] = m.RequestDuration.WithLabelValues(routeLabel(i), classLabel(j))
		}
	}
	return m
}

// Answered counts one app request to path, answered with status code
// (or cut by the shutdown deadline), whose handler took d: in
// lameduck_http_requests_total and lameduck_http_request_duration_seconds.
func (m *Metrics) Answered(path string, code int, cut bool, d time.Duration) {
	class := classIndex(code)
	if cut {
		class = classCut
		m.Requests.WithLabelValues(CodeCut).Inc()
	} else {
		m.CountRequest(code)
	}
	m.durations[routeIndex(path)][class].Observe(d.Seconds())
}

// CountRequest counts one answered request with status code.
func (m *Metrics) CountRequest(code int) {
	if c, ok := m.codes[code]; ok {
		c.Inc()
		return
	}
	m.Requests.WithLabelValues(strconv.Itoa(code)).Inc()
}
