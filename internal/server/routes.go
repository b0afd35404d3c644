package server

import (
	"log/slog"
	"net/http"

	"github.com/lameduck/lameduck/internal/config"
)

func addRoutes(mux *http.ServeMux, cfg config.Config, logger *slog.Logger, jobs Enqueuer) {
	mux.Handle("GET /hello", handleHello(cfg.HelloDelay, cfg.MaxDelay))
	mux.Handle("POST /jobs", handleJobs(cfg, logger, jobs))
	// No catch-all "/" route: it would match every method and turn the mux's
	// 405 (wrong method on a known path) into a 404. Unknown paths are 404.
}
