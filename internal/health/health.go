// Package health serves lameduck's admin endpoints: liveness and readiness
// (github.com/heptiolabs/healthcheck), Prometheus metrics and the build
// version. Readiness fails once the Gate is draining; liveness never does, so
// the kubelet does not restart a pod that is shutting down on purpose.
package health

import (
	"encoding/json"
	"errors"
	"net/http"
	"runtime"
	"sync/atomic"

	"github.com/heptiolabs/healthcheck"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ErrDraining is the readiness failure reported while shutting down.
var ErrDraining = errors.New("draining: shutting down, not taking new traffic")

// Gate records whether the service is draining. The zero value is open
// (ready); it is safe for concurrent use and cheap enough for every request.
type Gate struct {
	draining atomic.Bool
}

// Close starts draining; it cannot be undone.
func (g *Gate) Close() { g.draining.Store(true) }

// Draining reports whether Close has been called.
func (g *Gate) Draining() bool { return g.draining.Load() }

// check is the readiness check: it never blocks.
func (g *Gate) check() error {
	if g.Draining() {
		return ErrDraining
	}
	return nil
}

// BuildInfo identifies the running binary.
type BuildInfo struct {
	Version string `json:"version"`
	Commit  string `json:"commit"`
}

// NewHandler returns the admin handler: GET /live, GET /ready (both with
// ?full=1 for details), GET /metrics from gatherer, and GET /version. Check
// results are also exported to reg as lameduck_healthcheck_status.
func NewHandler(gate *Gate, reg prometheus.Registerer, gatherer prometheus.Gatherer, info BuildInfo) http.Handler {
	checks := healthcheck.NewMetricsHandler(reg, "lameduck")
	checks.AddLivenessCheck("goroutine-threshold", healthcheck.GoroutineCountCheck(100000))
	checks.AddReadinessCheck("not-draining", gate.check)

	mux := http.NewServeMux()
	mux.HandleFunc("/live", checks.LiveEndpoint)
	mux.HandleFunc("/ready", checks.ReadyEndpoint)
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /version", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(struct {
			BuildInfo
			Go string `json:"go"`
		}{info, runtime.Version()})
	})
	return mux
}
