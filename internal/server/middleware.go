package server

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/lameduck/lameduck/internal/health"
	"github.com/lameduck/lameduck/internal/metrics"
)

// chain wraps the mux in the middleware, outermost first:
//
//  1. arrivals: while the service drains, when each request arrives (the
//     preStop delay ends once none has for a while); once the delay is
//     over, every request is late and answered 503 at once.
//  2. limit: at most max requests in handlers at once, over every connection
//     (an HTTP/2 connection carries several); more are refused at once. It
//     keeps the one count of requests in flight.
//  3. instrument: metrics, and Connection: close on every response once
//     the service drains.
//  4. timeouts: a body must arrive, and a response go out, in time.
//  5. checkQuery: a malformed or unknown query parameter is a 400.
func (h *Handler) chain(mux http.Handler, max int, m *metrics.Metrics, gate *health.Gate) http.Handler {
	return h.arrivals(h.limit(instrument(h.timeouts.bound(checkQuery(mux)), m, gate, h.timeouts), max, gate, m), gate, m)
}

// arrivals notes, while gate is draining, when each request arrives
// (LastArrival): the preStop delay ends once none has for
// LAMEDUCK_PRESTOP_QUIET. Once the delay is over (Late), a request is late:
// it is answered at once, before any handler work and outside the count of
// requests in flight, so that nothing waits for it, with 503, Retry-After: 1
// (retry now, elsewhere), Connection: close (on HTTP/2, net/http sends a
// GOAWAY with it) and no body, counted in lameduck_http_requests_late_total.
// A body it carries gets the body timeout to be discarded, as any body
// left unread does.
func (h *Handler) arrivals(next http.Handler, gate *health.Gate, m *metrics.Metrics) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if gate.Draining() {
			if h.late.Load() {
				m.RequestsLate.Inc()
				h.timeouts.setWriteDeadline(w)
				h.timeouts.boundUnread(w, r)
				w.Header().Set("Retry-After", "1")
				w.Header().Set("Content-Length", "0")
				w.Header().Set("Connection", "close")
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			h.arrived.Store(max(int64(time.Since(h.epoch)), 1))
		}
		next.ServeHTTP(w, r)
	})
}

// limit lets at most max app requests into next at once. A request over the
// limit is answered at once, before any handler work: 503 with Retry-After
// and no body (so that it needs no HTTP/2 flow-control window), counted in
// lameduck_http_requests_refused_total. A request leaves the count only
// once instrument has counted it, so that when InFlight reads 0 every
// request is in the metrics.
func (h *Handler) limit(next http.Handler, max int, gate *health.Gate, m *metrics.Metrics) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.inflight.Add(1) > int64(max) {
			h.inflight.Add(-1)
			m.RequestsRefused.Inc()
			h.timeouts.setWriteDeadline(w)
			w.Header().Set("Retry-After", "1")
			w.Header().Set("Content-Length", "0")
			if gate.Draining() {
				w.Header().Set("Connection", "close")
			}
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		defer h.inflight.Add(-1)
		next.ServeHTTP(w, r)
	})
}

// instrument counts every request, by route and status code, with its
// duration, or as cut when the shutdown deadline cut it (whatever its
// handler wrote as the connection closed), and those that arrive after the
// signal. A cut request is aborted (http.ErrAbortHandler): its client sees
// the connection close, never a made-up answer. Once gate is draining, every response written from then on
// carries Connection: close, including responses to requests in flight at
// the signal, so that no client is handed back a pooled connection only to
// have it closed under it when the listener shuts down; on HTTP/2, net/http
// turns it into a GOAWAY.
func instrument(next http.Handler, m *metrics.Metrics, gate *health.Gate, t *timeouts) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if gate.Draining() {
			m.RequestsAfterSignal.Inc()
		}
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, gate: gate, timeouts: t, code: http.StatusOK}
		defer func() {
			cut := cutByShutdown(r.Context())
			m.Observe(r.URL.Path, sw.code, time.Since(start), cut)
			if cut {
				// A cut request gets no answer: net/http closes its
				// connection (HTTP/2: resets its stream) rather than send
				// the empty 200 of a handler that returned unwritten.
				panic(http.ErrAbortHandler)
			}
		}()
		next.ServeHTTP(sw, r)
	})
}

// statusWriter remembers the status code written and, as the headers go
// out, starts the write timeout and turns keep-alive off if the service is
// draining.
type statusWriter struct {
	http.ResponseWriter
	gate     *health.Gate
	timeouts *timeouts
	code     int
	wrote    bool
}

// writing runs once, before the headers are written.
func (s *statusWriter) writing(code int) {
	if s.wrote {
		return
	}
	s.code, s.wrote = code, true
	s.timeouts.setWriteDeadline(s.ResponseWriter)
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

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// queryParams lists the query parameters each route takes.
var queryParams = map[string][]string{
	"/hello": {"delay"},
	"/jobs":  {"work"},
}

// checkQuery answers 400, with the reason, a request to a known route whose
// query string is malformed, repeats a parameter or names one the route does
// not take: each of those would otherwise leave the default in force,
// silently (url.Values drops what it cannot parse).
func checkQuery(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.RawQuery != "" {
			if err := queryProblem(r.URL.Path, r.URL.RawQuery); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// queryProblem returns what is wrong with the query string raw of a request
// to path, or nil. Paths without a route pass: the mux answers 404.
func queryProblem(path, raw string) error {
	known, ok := queryParams[path]
	if !ok {
		return nil
	}
	values, err := url.ParseQuery(raw)
	if err != nil {
		return fmt.Errorf("malformed query string: %v", err)
	}
	names := make([]string, 0, len(values))
	for k := range values {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, name := range names {
		switch {
		case !slices.Contains(known, name):
			return fmt.Errorf("unknown query parameter %q: %s takes %s", name, path, strings.Join(known, ", "))
		case len(values[name]) > 1:
			return fmt.Errorf("query parameter %q given %d times; give it once", name, len(values[name]))
		}
	}
	return nil
}
