// Package server is lameduck's app HTTP handler: GET /hello, POST /jobs, and
// the middleware that counts requests and turns keep-alives off while the
// service drains.
package server

import (
	"log/slog"
	"net/http"

	"github.com/lameduck/lameduck/internal/config"
	"github.com/lameduck/lameduck/internal/health"
	"github.com/lameduck/lameduck/internal/idem"
	"github.com/lameduck/lameduck/internal/metrics"
	"github.com/lameduck/lameduck/internal/queue"
)

// Enqueuer is what the jobs handler needs of the queue.
type Enqueuer interface {
	Enqueue(queue.Job) error
}

// New returns the app handler with every route and the middleware.
func New(cfg config.Config, logger *slog.Logger, m *metrics.Metrics, gate *health.Gate, q Enqueuer) http.Handler {
	keys := idem.New(cfg.IdempotencyTTL, cfg.IdempotencyMaxKeys, cfg.IdempotencyMaxBytes)
	return NewApp(cfg, logger, m, gate, q, keys, NewClients(cfg.BodyTimeout, cfg.WriteTimeout), nil)
}

// NewApp is New with the Idempotency-Key store and the client bounds made by
// the caller, which watches them (metrics, the shutdown). done, when not
// nil, runs as each request ends, once m.Inflight no longer counts it: a
// shutdown waiting for the last request learns of it at once.
func NewApp(cfg config.Config, logger *slog.Logger, m *metrics.Metrics, gate *health.Gate, q Enqueuer,
	keys *idem.Store, clients *Clients, done func()) http.Handler {
	mux := http.NewServeMux()
	addRoutes(mux, cfg, logger, q, keys)
	return instrument(checkQuery(clients.bound(mux)), m, gate, clients, done)
}
