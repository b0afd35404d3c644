// Package metrics defines lameduck's Prometheus collectors. Every labelled
// series is created at start-up, so dashboards and alerts see it before the
// first shutdown.
package metrics

import "github.com/prometheus/client_golang/prometheus"

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

// Metrics holds every collector lameduck exports.
type Metrics struct {
	RequestsAfterSignal prometheus.Counter
	JobsAccepted        prometheus.Counter
	JobsProcessed       prometheus.Counter
	JobsRejected        *prometheus.CounterVec
	JobsDropped         prometheus.Counter
	QueueDepth          prometheus.Gauge
	Backlog             prometheus.Gauge
	JobLatency          prometheus.Histogram
	ShutdownPhase       *prometheus.GaugeVec

	// http holds what every app request writes: lameduck_http_requests_total,
	// lameduck_http_request_duration_seconds, lameduck_http_inflight_requests
	// (Begin, Request.Done).
	http *httpMetrics
}

// New creates the collectors and registers them with reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
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
		http: newHTTPMetrics(),
	}
	reg.MustRegister(m.http, m.RequestsAfterSignal, m.JobsAccepted, m.JobsProcessed,
		m.JobsRejected, m.JobsDropped, m.QueueDepth, m.Backlog, m.JobLatency, m.ShutdownPhase)
	for _, p := range []string{PhasePrestop, PhaseHTTP, PhaseQueue} {
		m.ShutdownPhase.WithLabelValues(p)
	}
	for _, r := range []string{ReasonFull, ReasonBudget, ReasonClosed} {
		m.JobsRejected.WithLabelValues(r)
	}
	return m
}
