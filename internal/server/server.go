// Package server is lameduck's app HTTP handler: GET /hello, POST /jobs, and
// the middleware every request passes through (middleware.go, in order).
package server

import (
	"context"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/lameduck/lameduck/internal/config"
	"github.com/lameduck/lameduck/internal/health"
	"github.com/lameduck/lameduck/internal/idempotency"
	"github.com/lameduck/lameduck/internal/metrics"
	"github.com/lameduck/lameduck/internal/queue"
)

// Enqueuer is what the jobs handler needs of the queue: it takes j and
// returns its id, or refuses it with a *queue.RejectedError. key is the
// request's Idempotency-Key, "" if none: a key taken before returns the
// first job's id, with replayed true, and takes nothing.
type Enqueuer interface {
	Enqueue(ctx context.Context, j queue.Job, key string) (id string, replayed bool, err error)
}

// InMemory is the Enqueuer of the in-memory queue (queue.Queue): a job's id
// is random, and keys remembers Idempotency-Keys, in this process only.
func InMemory(q interface{ Enqueue(queue.Job) error }, keys *idempotency.Store) Enqueuer {
	return inMemory{q: q, keys: keys}
}

type inMemory struct {
	q    interface{ Enqueue(queue.Job) error }
	keys *idempotency.Store
}

func (m inMemory) Enqueue(_ context.Context, j queue.Job, key string) (string, bool, error) {
	create := func() (string, error) {
		j.ID = newID()
		return j.ID, m.q.Enqueue(j)
	}
	if key == "" {
		id, err := create()
		return id, false, err
	}
	return m.keys.Do(key, create)
}

// Handler is the app handler. Its count of requests in flight is the one
// the request limit applies, the shutdown waits for, and the metrics read.
type Handler struct {
	http.Handler
	inflight atomic.Int64
	timeouts *timeouts
	epoch    time.Time    // arrived counts from it, on the monotonic clock
	arrived  atomic.Int64 // when a request last arrived while draining (since epoch), 0 before
	late     atomic.Bool  // the preStop delay is over: every request is late
}

// New returns the app handler: every route behind the middleware.
func New(cfg config.Config, logger *slog.Logger, m *metrics.Metrics, gate *health.Gate, jobs Enqueuer) *Handler {
	h := &Handler{timeouts: newTimeouts(cfg.BodyTimeout, cfg.WriteTimeout), epoch: time.Now()}
	mux := http.NewServeMux()
	addRoutes(mux, cfg, logger, jobs)
	h.Handler = h.chain(mux, cfg.MaxRequests, m, gate)
	return h
}

// InFlight returns the number of app requests in the handler now.
func (h *Handler) InFlight() int64 { return h.inflight.Load() }

// ShortenBodies makes every request body read, now and later, end by
// cutoff at the latest (408): the shutdown times a stalled upload out
// before its deadline would cut it.
func (h *Handler) ShortenBodies(cutoff time.Time) { h.timeouts.shorten(cutoff) }

// LastArrival returns when a request last arrived while the service was
// draining (before Late), or the zero time if none has.
func (h *Handler) LastArrival() time.Time {
	d := h.arrived.Load()
	if d == 0 {
		return time.Time{}
	}
	return h.epoch.Add(time.Duration(d))
}

// Late makes every request from now on late: answered at once with 503,
// Retry-After and Connection: close, outside the count of requests in
// flight (see arrivals). The shutdown calls it as the preStop delay ends.
func (h *Handler) Late() { h.late.Store(true) }
