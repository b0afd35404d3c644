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

// Why Enqueue refuses a job. Enqueue returns them wrapped in a
// *RejectedError, which says when to try again; errors.Is matches them.
var (
	ErrFull   = errors.New("queue is full")
	ErrBudget = errors.New("the work already accepted is all a drain can finish")
	ErrClosed = errors.New("queue is closed")
	// ErrUnavailable: the queue's engine (JetStream) did not store the job.
	ErrUnavailable = errors.New("the job queue's engine is unavailable")
)

// RejectedError is Enqueue's refusal: the job was not taken.
type RejectedError struct {
	Reason     error         // ErrFull, ErrBudget, ErrClosed or ErrUnavailable
	RetryAfter time.Duration // when the queue is likely to take this job; 0 for ErrClosed
}

func (e *RejectedError) Error() string { return e.Reason.Error() }
func (e *RejectedError) Unwrap() error { return e.Reason }

// Job is one unit of simulated work.
type Job struct {
	ID   string
	Work time.Duration // how long processing takes
	Size int64         // body size in bytes, for the log

	enqueued time.Time
}

// Stats is the queue's account. Processed + Dropped = Accepted once Drain or
// Abort has returned, for the in-memory queue. A queue whose jobs live in a
// shared engine (internal/jetstream) processes jobs other replicas accepted
// and leaves some it accepted to them: it drops none, and says how many it
// handed back and how many the engine still holds.
type Stats struct {
	Accepted   int64
	Processed  int64
	Dropped    int64
	Depth      int   // jobs accepted and not yet begun (in-memory)
	HandedBack int64 // jobs begun here and returned unfinished to the engine, for another replica
	Left       int64 // jobs the engine holds for the other replicas as this one stops; -1 if it could not say
}

// Admission is the rule Enqueue applies before it takes a job: every accepted
// job can finish within Budget of its acceptance. A job costs its Work plus
// PerJob, the worker's own time around it. The queue is FIFO and no worker
// idles while a job waits, so a job accepted when the work ahead of it (the
// queued jobs' costs and what is left of the running ones) is B starts within
// B/workers and finishes within B/workers + its cost; Enqueue takes it only
// if that is at most Budget. Jobs accepted later queue behind it and cannot
// delay it, so each promise holds once made.
type Admission struct {
	Budget time.Duration
	PerJob time.Duration
}

// Queue is a bounded FIFO of jobs served by a fixed pool of workers. Create it
// with New; its workers run until Drain or Abort returns. Every method is safe
// for concurrent use.
type Queue struct {
	logger    *slog.Logger
	metrics   *metrics.Metrics
	admission Admission
	workers   time.Duration // the number of workers, as a divisor of durations

	mu        sync.Mutex // guards everything below, and sending on jobs
	closed    bool
	jobs      chan Job
	waiting   int           // jobs accepted and not yet begun: in jobs, or just taken by a worker
	queued    time.Duration // the cost of the waiting jobs
	busyUntil []time.Time   // per worker: when its running job's cost runs out; zero when idle

	stop     chan struct{} // closed at the drain deadline: running jobs stop, queued ones drop
	stopOnce sync.Once
	done     chan struct{} // closed when every worker has returned

	accepted, processed, dropped atomic.Int64
}

// New starts a queue of the given capacity with the given number of workers
// (at least 1), which takes only the jobs that adm lets it finish in time.
func New(capacity, workers int, adm Admission, logger *slog.Logger, m *metrics.Metrics) *Queue {
	workers = max(workers, 1)
	q := &Queue{
		logger: logger, metrics: m, admission: adm, workers: time.Duration(workers),
		jobs:      make(chan Job, capacity),
		busyUntil: make([]time.Time, workers),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() { q.worker(i) })
	}
	go func() {
		wg.Wait()
		close(q.done)
	}()
	return q
}

// Enqueue takes j, or refuses it with a *RejectedError wrapping ErrClosed,
// ErrFull or ErrBudget (see Admission); it never blocks. The decision and the
// taking happen under one lock, so concurrent calls cannot overcommit the
// budget, and no job is taken once the queue is closed.
func (q *Queue) Enqueue(j Job) error {
	cost := j.Work + q.admission.PerJob
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return q.reject(metrics.ReasonClosed, ErrClosed, 0)
	}
	now := time.Now()
	ahead, nextFree := q.backlogLocked(now)
	// When the budget will have room for j: the work ahead must shrink to
	// (Budget - cost) per worker.
	wait := ahead/q.workers + cost - q.admission.Budget
	// Full counts a job a worker has taken but not yet begun (its cost is
	// still queued, and no worker is seen busy with it), so a refusal
	// never misses the running job's end in its Retry-After.
	if q.waiting == cap(q.jobs) {
		return q.reject(metrics.ReasonFull, ErrFull, max(wait, nextFree))
	}
	if wait > 0 {
		return q.reject(metrics.ReasonBudget, ErrBudget, wait)
	}
	j.enqueued = now
	q.waiting++
	q.queued += cost
	// Count before the send, so a worker never reports a job processed
	// before it is counted accepted.
	q.accepted.Add(1)
	q.metrics.QueueDepth.Inc()
	q.jobs <- j // never blocks: only Enqueue sends, under mu, and the channel has room
	q.metrics.JobsAccepted.Inc()
	q.metrics.Backlog.Set(((ahead + cost) / q.workers).Seconds())
	return nil
}

func (q *Queue) reject(reason string, err error, retryAfter time.Duration) error {
	q.metrics.JobsRejected.WithLabelValues(reason).Inc()
	return &RejectedError{Reason: err, RetryAfter: retryAfter}
}

// backlogLocked returns the work accepted and not yet done at now (queued
// jobs' costs plus what is left of the running ones) and how long until the
// first running job is due to end. q.mu must be held.
func (q *Queue) backlogLocked(now time.Time) (work, nextFree time.Duration) {
	work = q.queued
	for i, until := range q.busyUntil {
		left := until.Sub(now)
		if until.IsZero() || left <= 0 {
			left = 0
		}
		work += left
		if i == 0 || left < nextFree {
			nextFree = left
		}
	}
	return work, nextFree
}

// Backlog returns how long the workers need to finish every accepted job
// (the work accepted and not yet done, divided among the workers): at most
// the admission budget.
func (q *Queue) Backlog() time.Duration {
	q.mu.Lock()
	defer q.mu.Unlock()
	work, _ := q.backlogLocked(time.Now())
	return work / q.workers
}

// begin moves j's cost from the queue to worker i; end frees worker i.
// Both read the clock under q.mu: a time read before it could predate
// another worker's start and overstate that worker's time left.
func (q *Queue) begin(i int, j Job) {
	cost := j.Work + q.admission.PerJob
	q.mu.Lock()
	defer q.mu.Unlock()
	now := time.Now()
	q.waiting--
	q.metrics.QueueDepth.Dec()
	q.queued -= cost
	q.busyUntil[i] = now.Add(cost)
	work, _ := q.backlogLocked(now)
	q.metrics.Backlog.Set((work / q.workers).Seconds())
}

func (q *Queue) end(i int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := time.Now()
	q.busyUntil[i] = time.Time{}
	work, _ := q.backlogLocked(now)
	q.metrics.Backlog.Set((work / q.workers).Seconds())
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
	q.mu.Lock()
	waiting := q.waiting
	q.mu.Unlock()
	return Stats{
		Accepted:  q.accepted.Load(),
		Processed: q.processed.Load(),
		Dropped:   q.dropped.Load(),
		Depth:     waiting,
	}
}

func (q *Queue) worker(i int) {
	for j := range q.jobs {
		q.begin(i, j)
		err := q.process(j)
		q.end(i)
		if err != nil {
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
