package app

import (
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lameduck/lameduck/internal/health"
)

// requestLimit lets at most max app requests into the handler at once, over
// every connection: an HTTP/2 connection carries up to h2MaxStreams of them,
// so LAMEDUCK_MAX_CONNS alone does not bound them (config.MemoryWorstCase
// counts each at its most). A request over the limit is answered at once,
// before any handler work: 503 with Retry-After and no body, counted in
// refused. The path through is one atomic add each way.
type requestLimit struct {
	max     int64
	n       atomic.Int64
	gate    *health.Gate
	write   time.Duration // the refusal must go out within it (0: no bound)
	refused prometheus.Counter
	next    http.Handler
}

func limitRequests(next http.Handler, max int, gate *health.Gate, write time.Duration, refused prometheus.Counter) *requestLimit {
	return &requestLimit{max: int64(max), gate: gate, write: write, refused: refused, next: next}
}

func (l *requestLimit) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if l.n.Add(1) > l.max {
		l.n.Add(-1)
		l.refuse(w)
		return
	}
	defer l.n.Add(-1)
	l.next.ServeHTTP(w, r)
}

// refuse answers 503 with Retry-After: 1 and no body, so that the answer
// needs no flow-control window (HTTP/2) and a client that stops reading
// holds the refusal at most the write timeout. Once the service drains, the
// refusal closes its connection as every response does (on HTTP/2, a GOAWAY).
func (l *requestLimit) refuse(w http.ResponseWriter) {
	l.refused.Inc()
	if l.write > 0 {
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(l.write))
	}
	h := w.Header()
	h.Set("Retry-After", "1")
	h.Set("Content-Length", "0")
	if l.gate.Draining() {
		h.Set("Connection", "close")
	}
	w.WriteHeader(http.StatusServiceUnavailable)
}
