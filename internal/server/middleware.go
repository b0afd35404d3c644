package server

import (
	"io"
	"net/http"
	"sync"

	"github.com/lameduck/lameduck/internal/health"
	"github.com/lameduck/lameduck/internal/metrics"
)

// instrument counts every request, and those that arrive after the signal,
// and observes how long each took, by route and status class.
// Once gate is draining, every response written from then on carries
// Connection: close, including responses to requests that were already in
// flight at the signal, so no pooled connection is handed back to a client
// only to be closed under it when the listener shuts down; clients reconnect,
// through the balancer, to another replica.
// A request the shutdown deadline cut counts as code="cut", whatever its
// handler wrote as the connection closed. Once headers are written, the
// response must go out within clients' write timeout (nil: no bound).
//
// Its count of requests in flight (m.Inflight) is the only one: the shutdown
// waits on it and counts what its deadline cuts with it. done, when not nil,
// runs as each request ends, once the count no longer holds it.
func instrument(next http.Handler, m *metrics.Metrics, gate *health.Gate, clients *Clients, done func()) http.Handler {
	// The writers are reused: a handler must not use its ResponseWriter
	// after it returns, as net/http requires of its own.
	writers := sync.Pool{New: func() any { return new(statusWriter) }}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if gate.Draining() {
			m.RequestsAfterSignal.Inc()
		}
		req := m.Begin()
		sw := writers.Get().(*statusWriter)
		*sw = statusWriter{ResponseWriter: w, gate: gate, code: http.StatusOK, clients: clients}
		defer func() {
			req.Done(r.URL.Path, sw.code, cutByShutdown(r.Context()))
			*sw = statusWriter{}
			writers.Put(sw)
			if done != nil {
				done()
			}
		}()
		next.ServeHTTP(sw, r)
	})
}

// statusWriter remembers the status code written and, at the moment the
// headers go out, turns keep-alive off if the service is draining.
type statusWriter struct {
	http.ResponseWriter
	gate    *health.Gate
	code    int
	wrote   bool
	clients *Clients
}

// writing runs once, before the headers are written.
func (s *statusWriter) writing(code int) {
	if s.wrote {
		return
	}
	s.code, s.wrote = code, true
	s.clients.setWriteDeadline(s.ResponseWriter)
	if s.gate.Draining() {
		s.ResponseWriter.Header().Set("Connection", "close")
	}
}

func (s *statusWriter) WriteHeader(code int) {
	s.writing(code)
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	s.writing(http.StatusOK)
	return s.ResponseWriter.Write(b)
}

// WriteString keeps io.WriteString from copying s into a new []byte.
func (s *statusWriter) WriteString(str string) (int, error) {
	s.writing(http.StatusOK)
	return io.WriteString(s.ResponseWriter, str)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
