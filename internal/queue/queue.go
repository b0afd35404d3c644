// Package queue is lameduck's bounded in-memory job queue and its worker
// pool, with honest accounting: every accepted job ends processed or dropped,
// and each drop is logged with the job's id.
package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lameduck/lameduck/internal/metrics"
)

// Errors returned by Enqueue. The job was not taken in either case.
var (
	ErrFull   = errors.New("queue is full")
	ErrClosed = errors.New("queue is closed")
)

// Job is one unit of simulated work.
type Job struct {
	ID   string
	Work time.Duration // how long processing takes
	Size int64         // body size in bytes, for the log

	enqueued time.Time
}

// Stats is the queue's account. Processed + Dropped = Accepted once Drain or
// Abort has returned.
type Stats struct {
	Accepted  int64
	Processed int64
	Dropped   int64
	Depth     int
}

// Queue is a bounded FIFO of jobs served by a fixed pool of workers. Create it
// with New; its workers run until Drain or Abort returns. Every method is safe
// for concurrent use.
type Queue struct {
	logger  *slog.Logger
	metrics *metrics.Metrics

	mu     sync.RWMutex // guards closed and sending on jobs
	closed bool
	jobs   chan Job

	stop     chan struct{} // closed at the drain deadline: running jobs stop, queued ones drop
	stopOnce sync.Once
	done     chan struct{} // closed when every worker has returned

	accepted, processed, dropped atomic.Int64
}

// New starts a queue of the given capacity with the given number of workers.
func New(capacity, workers int, logger *slog.Logger, m *metrics.Metrics) *Queue {
	q := &Queue{
		logger: logger, metrics: m,
		jobs: make(chan Job, capacity),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q.worker()
		}()
	}
	go func() {
		wg.Wait()
		close(q.done)
	}()
	return q
}

// Enqueue takes j or refuses it with ErrFull or ErrClosed; it never blocks.
func (q *Queue) Enqueue(j Job) error {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.closed {
		q.metrics.JobsRejected.WithLabelValues(metrics.ReasonClosed).Inc()
		return ErrClosed
	}
	j.enqueued = time.Now()
	// Count before the send, so a worker never reports a job processed
	// before it is counted accepted; undo when the queue is full.
	q.accepted.Add(1)
	q.metrics.QueueDepth.Inc()
	select {
	case q.jobs <- j:
		q.metrics.JobsAccepted.Inc() // a Prometheus counter cannot go down, so only once taken
		return nil
	default:
		q.accepted.Add(-1)
		q.metrics.QueueDepth.Dec()
		q.metrics.JobsRejected.WithLabelValues(metrics.ReasonFull).Inc()
		return ErrFull
	}
}

// Close stops the queue taking jobs; queued jobs are still processed. It is
// idempotent.
func (q *Queue) Close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		q.closed = true
		close(q.jobs)
	}
}

// Drain closes the queue and waits for the workers to process every queued
// job. When ctx ends first, running jobs are cancelled and every job left is
// dropped (and logged). Drain returns once all workers have stopped.
func (q *Queue) Drain(ctx context.Context) Stats {
	q.Close()
	select {
	case <-q.done:
	case <-ctx.Done():
		q.halt()
		<-q.done
	}
	q.halt()
	return q.Stats()
}

// Abort closes the queue, cancels running jobs and drops every queued one,
// logging each. It returns once all workers have stopped.
func (q *Queue) Abort() Stats {
	q.Close()
	q.halt()
	<-q.done
	return q.Stats()
}

// Stats returns the current account.
func (q *Queue) Stats() Stats {
	return Stats{
		Accepted:  q.accepted.Load(),
		Processed: q.processed.Load(),
		Dropped:   q.dropped.Load(),
		Depth:     len(q.jobs),
	}
}

func (q *Queue) worker() {
	for j := range q.jobs {
		q.metrics.QueueDepth.Dec()
		if err := q.process(j); err != nil {
			q.dropped.Add(1)
			q.metrics.JobsDropped.Inc()
			q.logger.Warn("job dropped", "job_id", j.ID, "reason", err.Error(),
				"queued_for", time.Since(j.enqueued).String())
			continue
		}
		q.processed.Add(1)
		q.metrics.JobsProcessed.Inc()
		latency := time.Since(j.enqueued)
		q.metrics.JobLatency.Observe(latency.Seconds())
		q.logger.Info("job processed", "job_id", j.ID, "work", j.Work.String(), "latency", latency.String())
	}
}

// errHalted is why work stops: the drain deadline, or an abort.
var errHalted = errors.New("the queue was halted")

// halt stops running jobs and makes the workers drop the rest; idempotent.
func (q *Queue) halt() { q.stopOnce.Do(func() { close(q.stop) }) }

// process simulates j's work; it fails once the queue is halted.
func (q *Queue) process(j Job) error {
	select {
	case <-q.stop:
		return fmt.Errorf("not started before the drain deadline: %w", errHalted)
	default:
	}
	if j.Work <= 0 {
		return nil
	}
	t := time.NewTimer(j.Work)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-q.stop:
		return fmt.Errorf("cancelled at the drain deadline: %w", errHalted)
	}
}
