package server

import (
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lameduck/lameduck/internal/health"
	"github.com/lameduck/lameduck/internal/metrics"
)

// okWriter is a reusable ResponseWriter that keeps only the status code and
// takes write deadlines, as net/http's writer does.
type okWriter struct {
	h    http.Header
	code int
}

func (w *okWriter) Header() http.Header              { return w.h }
func (w *okWriter) SetWriteDeadline(time.Time) error { return nil }
func (w *okWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *okWriter) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return len(b), nil
}

// cpuTime is the CPU time (user and system) the process has used.
func cpuTime(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ParallelGets serves GET /hello through h from every P at once. Besides
// ns/op (wall time over all the Ps), it reports cpu-ns/op, the CPU time
// each request took: contention on shared memory makes it grow with the Ps,
// and other load on the machine changes it less than ns/op. (Exported for
// the package's external tests.)
func ParallelGets(b *testing.B, h http.Handler) {
	b.ReportAllocs()
	cpu0 := cpuTime(b)
	defer func() { b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op") }()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest(http.MethodGet, "/hello", nil)
		w := &okWriter{h: http.Header{}}
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

// BenchmarkMiddlewareParallel measures lameduck's middleware alone around
// the /hello handler, without the mux: instrument (the metrics with the
// in-flight count, the duration histogram, the draining gate, the write
// deadline), the query check and the client bounds, from every P at once;
// run it with -cpu 1,2,4: ns/op that grows with the Ps is contention.
func BenchmarkMiddlewareParallel(b *testing.B) {
	h := &Handler{timeouts: newTimeouts(time.Second, time.Second)}
	ParallelGets(b, h.chain(handleHello(0, time.Second), 1000, metrics.New(prometheus.NewRegistry()), &health.Gate{}))
}

// BenchmarkMuxParallel is the reference for BenchmarkHelloParallel: the
// /hello handler behind net/http's ServeMux alone, as the plain server of
// the overhead benchmark serves it.
func BenchmarkMuxParallel(b *testing.B) {
	mux := http.NewServeMux()
	mux.Handle("GET /hello", handleHello(0, time.Second))
	ParallelGets(b, mux)
}
