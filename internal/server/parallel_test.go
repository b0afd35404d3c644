package server_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lameduck/lameduck/internal/health"
	"github.com/lameduck/lameduck/internal/metrics"
	"github.com/lameduck/lameduck/internal/server"
)

// headerWriter is a ResponseWriter that keeps only the status code, reusable
// across requests: the benchmark then measures the handler, not a recorder.
// It takes write deadlines, as net/http's writer does.
type headerWriter struct {
	h        http.Header
	code     int
	deadline time.Time
}

func (w *headerWriter) SetWriteDeadline(t time.Time) error {
	w.deadline = t
	return nil
}

func (w *headerWriter) Header() http.Header { return w.h }
func (w *headerWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *headerWriter) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return len(b), nil
}

// BenchmarkHelloParallel measures GET /hello through the whole app handler
// (the instrument middleware with its metrics, the client bounds, the query
// check, the mux) from every P at once; run it with -cpu 1,2,4: ns/op that
// grows with the Ps is contention on shared state.
func BenchmarkHelloParallel(b *testing.B) {
	cfg := testConfig()
	cfg.BodyTimeout, cfg.WriteTimeout = time.Second, time.Second // as in production: both bounds on
	h := server.New(cfg, slog.New(slog.DiscardHandler), metrics.New(prometheus.NewRegistry()), &health.Gate{}, discard{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest(http.MethodGet, "/hello", nil)
		w := &headerWriter{h: http.Header{}}
		for pb.Next() {
			clear(w.h)
			w.code = 0
			h.ServeHTTP(w, req)
			if w.code != http.StatusOK {
				b.Errorf("GET /hello = %d; want 200", w.code)
				return
			}
		}
	})
}
