package metrics

import "github.com/prometheus/client_golang/prometheus"

// CodeCut is the code label of a request the shutdown deadline cut.
const CodeCut = "cut"

// Limits are the gauges and counters of the per-client bounds.
type Limits struct {
	Conns        prometheus.Gauge   // app connections open now
	ConnsRefused prometheus.Counter // app connections closed at once, over LAMEDUCK_MAX_CONNS
	// RequestsRefused counts app requests (HTTP/2: streams) answered 503 at
	// once, over LAMEDUCK_MAX_REQUESTS; they are not in lameduck_http_requests_total.
	RequestsRefused prometheus.Counter
}

// NewLimits creates the bounds' collectors and registers them with reg,
// with gauges that read the Idempotency-Key store's size from keys and
// bytes.
func NewLimits(reg prometheus.Registerer, keys func() int, bytes func() int64) *Limits {
	l := &Limits{
		Conns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lameduck_http_connections", Help: "App connections open now (at most LAMEDUCK_MAX_CONNS).",
		}),
		ConnsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lameduck_http_connections_refused_total",
			Help: "App connections closed as soon as accepted because LAMEDUCK_MAX_CONNS were open.",
		}),
		RequestsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lameduck_http_requests_refused_total",
			Help: "App requests (HTTP/2: streams) answered 503 with Retry-After at once because LAMEDUCK_MAX_REQUESTS were in handlers.",
		}),
	}
	reg.MustRegister(l.Conns, l.ConnsRefused, l.RequestsRefused,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "lameduck_idempotency_keys", Help: "Idempotency-Keys remembered now.",
		}, func() float64 { return float64(keys()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "lameduck_idempotency_bytes",
			Help: "Memory the remembered Idempotency-Keys take, bookkeeping included (at most LAMEDUCK_IDEMPOTENCY_MAX_BYTES).",
		}, func() float64 { return float64(bytes()) }))
	return l
}
