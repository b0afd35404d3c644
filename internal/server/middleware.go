package server

import (
	"io"
	"net/http"

	"github.com/lameduck/lameduck/internal/health"
	"github.com/lameduck/lameduck/internal/metrics"
)

// instrument counts every request and, once gate is draining, counts it as
// arriving after the signal and answers with Connection: close, so clients
// holding pooled connections reconnect, through the balancer, to another
// replica.
func instrument(next http.Handler, m *metrics.Metrics, gate *health.Gate) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if gate.Draining() {
			m.RequestsAfterSignal.Inc()
			w.Header().Set("Connection", "close")
		}
		m.Inflight.Inc()
		sw := statusWriter{ResponseWriter: w, code: http.StatusOK}
		defer func() {
			m.Inflight.Dec()
			m.CountRequest(sw.code)
		}()
		next.ServeHTTP(&sw, r)
	})
}

// statusWriter remembers the status code written.
type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wrote {
		s.code, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	s.wrote = true
	return s.ResponseWriter.Write(b)
}

// WriteString keeps io.WriteString from copying s into a new []byte.
func (s *statusWriter) WriteString(str string) (int, error) {
	s.wrote = true
	return io.WriteString(s.ResponseWriter, str)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
