package server_test

import (
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lameduck/lameduck/internal/health"
	"github.com/lameduck/lameduck/internal/idempotency"
	"github.com/lameduck/lameduck/internal/metrics"
	"github.com/lameduck/lameduck/internal/server"
)

// BenchmarkHelloParallel measures GET /hello through the whole app handler
// (the instrument middleware with its metrics, the client bounds, the query
// check, the mux) from every P at once; run it with -cpu 1,2,4: ns/op that
// grows with the Ps is contention on shared state.
func BenchmarkHelloParallel(b *testing.B) {
	cfg := testConfig()
	cfg.BodyTimeout, cfg.WriteTimeout = time.Second, time.Second // as in production: both bounds on
	h := server.New(cfg, slog.New(slog.DiscardHandler), metrics.New(prometheus.NewRegistry()), &health.Gate{},
		server.InMemory(discard{}, idempotency.New(time.Hour, 100, 1<<20)))
	server.ParallelGets(b, h)
}
