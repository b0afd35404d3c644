// Package metrics defines lameduck's Prometheus collectors: the app
// requests, the job queue and the shutdown's phases.
package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
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
	// ReasonUnavailable: the queue's engine (JetStream) did not store the job.
	ReasonUnavailable = "unavailable"
)

// The route label: the app's routes, and every other path as one.
const (
	RouteHello = "/hello"
	RouteJobs  = "/jobs"
	RouteOther = "other"
)

// Metrics holds every collector of the app requests and the job queue.
type Metrics struct {
	// Requests and Duration count each app request the handlers answered,
	// by route and status code, once it is done; Cut counts, by route, the
	// requests the shutdown deadline cut instead.
	Requests            *prometheus.CounterVec
	Duration            *prometheus.HistogramVec
	Cut                 *prometheus.CounterVec
	RequestsRefused     prometheus.Counter
	RequestsAfterSignal prometheus.Counter
	RequestsLate        prometheus.Counter

	JobsAccepted  prometheus.Counter
	JobsProcessed prometheus.Counter
	JobsRejected  *prometheus.CounterVec
	JobsDropped   prometheus.Counter
	QueueDepth    prometheus.Gauge
	Backlog       prometheus.Gauge
	JobLatency    prometheus.Histogram
	ShutdownPhase *prometheus.GaugeVec
}

// New creates the collectors and registers them with reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lameduck_http_requests_total",
			Help: "App requests answered, by route (/hello, /jobs, other) and status code.",
		}, []string{"route", "code"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "lameduck_http_request_duration_seconds",
			Help:    "Time from an app request's headers read to its handler's return, by route and status code.",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		}, []string{"route", "code"}),
		Cut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lameduck_http_requests_cut_total",
			Help: "App requests still in a handler at the shutdown deadline, cut, by route: lost work.",
		}, []string{"route"}),
		RequestsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lameduck_http_requests_refused_total",
			Help: "App requests (HTTP/2: streams) answered 503 with Retry-After at once because LAMEDUCK_MAX_REQUESTS were in handlers; not in lameduck_http_requests_total.",
		}),
		RequestsAfterSignal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lameduck_http_requests_after_signal_total",
			Help: "App requests that arrived after SIGTERM: how long endpoint removal took to reach this pod.",
		}),
		RequestsLate: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lameduck_http_requests_late_total",
			Help: "App requests (HTTP/2: streams) that arrived after the preStop delay, answered 503 with Retry-After and Connection: close at once; not in lameduck_http_requests_total.",
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
			Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25},
		}),
		ShutdownPhase: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "lameduck_shutdown_phase_seconds", Help: "Duration of each phase of the last shutdown.",
		}, []string{"phase"}),
	}
	reg.MustRegister(m.Requests, m.Duration, m.Cut, m.RequestsRefused, m.RequestsAfterSignal, m.RequestsLate,
		m.JobsAccepted, m.JobsProcessed, m.JobsRejected, m.JobsDropped, m.QueueDepth, m.Backlog, m.JobLatency,
		m.ShutdownPhase)
	// The series every running service has, so that dashboards and alerts
	// see them before the first request or shutdown.
	for _, s := range [][2]string{{RouteHello, "200"}, {RouteJobs, "202"}, {RouteJobs, "503"}} {
		m.Requests.WithLabelValues(s[0], s[1])
	}
	for _, r := range []string{RouteHello, RouteJobs} { // other paths never wait in a handler
		m.Cut.WithLabelValues(r)
	}
	for _, p := range []string{PhasePrestop, PhaseHTTP, PhaseQueue} {
		m.ShutdownPhase.WithLabelValues(p)
	}
	for _, r := range []string{ReasonFull, ReasonBudget, ReasonClosed} {
		m.JobsRejected.WithLabelValues(r)
	}
	return m
}

// Route is path's value of the route label.
func Route(path string) string {
	switch path {
	case RouteHello, RouteJobs:
		return path
	}
	return RouteOther
}

// Observe counts an app request to path that its handler answered with
// code after d, or that the shutdown deadline cut.
func (m *Metrics) Observe(path string, code int, d time.Duration, cut bool) {
	route := Route(path)
	if cut {
		m.Cut.WithLabelValues(route).Inc()
		return
	}
	c := strconv.Itoa(code)
	m.Requests.WithLabelValues(route, c).Inc()
	m.Duration.WithLabelValues(route, c).Observe(d.Seconds())
}

// RequestsByCode returns the app requests answered, by status code, and
// those cut as "cut": the last values, for the exit's account, which no
// scrape reads once the process has exited.
func (m *Metrics) RequestsByCode() map[string]float64 {
	out := ByLabel(m.Requests, "code")
	if cut := Sum(m.Cut); cut > 0 {
		out["cut"] = cut
	}
	return out
}

// Sum returns the sum of the values of c's counter and gauge series.
func Sum(c prometheus.Collector) float64 {
	var sum float64
	for _, s := range series(c) {
		sum += s.value
	}
	return sum
}

// ByLabel returns the sums of the values of c's counter and gauge series
// that are not zero, by the value of label.
func ByLabel(c prometheus.Collector, label string) map[string]float64 {
	out := map[string]float64{}
	for _, s := range series(c) {
		if s.value != 0 {
			out[s.labels[label]] += s.value
		}
	}
	return out
}

type sample struct {
	labels map[string]string
	value  float64
}

// series collects c's counter and gauge series.
func series(c prometheus.Collector) []sample {
	ch := make(chan prometheus.Metric)
	go func() {
		c.Collect(ch)
		close(ch)
	}()
	var out []sample
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			continue
		}
		s := sample{labels: map[string]string{}, value: d.GetCounter().GetValue() + d.GetGauge().GetValue()}
		for _, l := range d.GetLabel() {
			s.labels[l.GetName()] = l.GetValue()
		}
		out = append(out, s)
	}
	return out
}
