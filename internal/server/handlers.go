package server

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/lameduck/lameduck/internal/config"
	"github.com/lameduck/lameduck/internal/queue"
)

// maxKeyLen bounds Idempotency-Key headers.
const maxKeyLen = 256

// Why each cap exists, for the 400's one-line reason.
const (
	whyMaxDelay = "LAMEDUCK_MAX_DELAY, what a shutdown can wait for"
	whyMaxWork  = "LAMEDUCK_MAX_WORK, what a drain can finish"
)

// handleHello answers "hello\n" after ?delay= (default def, at most max). A
// client that goes away stops the wait.
func handleHello(def, max time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, err := durationParam(r, "delay", def, max, whyMaxDelay)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if d > 0 {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "hello\n")
	})
}

// handleJobs accepts a job into the queue and answers 202 {"id": ...}. A
// job the queue refuses (full, over the drain budget, closed, its engine
// unavailable) is 503 with a Retry-After of when the queue expects to take
// it; a known Idempotency-Key answers its first job's id.
func handleJobs(cfg config.Config, logger *slog.Logger, jobs Enqueuer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		work, err := durationParam(r, "work", cfg.JobDuration, cfg.MaxWork, whyMaxWork)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		key := r.Header.Get("Idempotency-Key")
		if len(key) > maxKeyLen {
			http.Error(w, fmt.Sprintf("Idempotency-Key longer than %d bytes", maxKeyLen), http.StatusBadRequest)
			return
		}
		size, err := io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, cfg.MaxBody))
		if err != nil {
			if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
				http.Error(w, fmt.Sprintf("body larger than %d bytes", cfg.MaxBody), http.StatusRequestEntityTooLarge)
				return
			}
			if timedOut(err) { // a stalled upload: the client's fault, and no job was taken
				w.Header().Set("Connection", "close")
				http.Error(w, "body not received within LAMEDUCK_BODY_TIMEOUT", http.StatusRequestTimeout)
				return
			}
			http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
			return
		}
		id, seen, err := jobs.Enqueue(r.Context(), queue.Job{Work: work, Size: size}, key)
		if rejected, ok := errors.AsType[*queue.RejectedError](err); ok {
			w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(rejected.RetryAfter)))
			http.Error(w, "job not accepted: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		if err != nil {
			logger.Error("enqueue failed", "err", err)
			http.Error(w, "job not accepted", http.StatusInternalServerError)
			return
		}
		if seen {
			logger.Debug("job replayed", "job_id", id, "idempotency_key", key)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_ = json.NewEncoder(w).Encode(struct {
			ID string `json:"id"`
		}{id})
	})
}

// durationParam parses the query parameter name as a Go duration in [0, max];
// a missing parameter yields def. why names the cap in the error.
func durationParam(r *http.Request, name string, def, max time.Duration, why string) (time.Duration, error) {
	if r.URL.RawQuery == "" {
		return def, nil // the common case; Query would allocate a map to say so
	}
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		return 0, fmt.Errorf("%s=%q is not a duration such as 250ms or 2s", name, s)
	case d < 0:
		return 0, fmt.Errorf("%s=%s is negative", name, s)
	case d > max:
		return 0, fmt.Errorf("%s=%s exceeds the maximum of %s (%s)", name, s, max, why)
	}
	return d, nil
}

// retryAfterSeconds is d in whole seconds, rounded up, at least 1: a client
// never retries sooner than the queue expects to have room.
func retryAfterSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}

// newID returns a random 128-bit job id in hex.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}
