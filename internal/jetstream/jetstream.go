// Package jetstream is lameduck's job queue on a NATS JetStream stream that
// every replica shares, the alternative to the in-memory queue for jobs that
// must outlive one pod. A job is answered 202 only once the stream has
// stored it (on a majority of its replicas); the workers of every replica
// take jobs from one durable consumer and ack each only once it is
// processed. A replica that dies without a word (SIGKILL, the OOM killer, a
// lost node) loses nothing: the engine redelivers the jobs it held to
// another replica when their ack wait runs out. Processing is at least
// once; a redelivered job is counted.
package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lameduck/lameduck/internal/config"
	"github.com/lameduck/lameduck/internal/metrics"
	"github.com/lameduck/lameduck/internal/queue"
)

const (
	// consumerName is the durable consumer every replica's workers share.
	consumerName = "lameduck-workers"
	// fetchWait is the longest one fetch waits for a job.
	fetchWait = time.Second
	// opTimeout bounds a publish, an ack and a request about the stream.
	opTimeout = 2 * time.Second
	// retryAfter is the Retry-After of a job the engine did not store.
	retryAfter = time.Second
	// finishTimeout bounds what the drain does after its deadline: asking
	// the engine what it holds, and sending the last acks.
	finishTimeout = 500 * time.Millisecond
	// pingInterval: a NATS server that vanishes without closing the
	// connection (a lost node) is noticed within 2 of these.
	pingInterval = 5 * time.Second
)

// jsErrStoreFailed is JetStream's error for a message the stream would not
// store: with the discard-new policy, the stream is full.
const jsErrStoreFailed jetstream.ErrorCode = 10077

// payload is a job as the stream stores it.
type payload struct {
	Work time.Duration `json:"work"`
	Size int64         `json:"size"`
}

// Queue is the job queue on JetStream. Create it with Open; its workers run
// until Drain returns. Every method is safe for concurrent use.
type Queue struct {
	logger   *slog.Logger
	metrics  *metrics.Metrics
	nc       *nats.Conn
	js       jetstream.JetStream
	stream   jetstream.StreamConfig
	consumer jetstream.ConsumerConfig

	mu   sync.Mutex         // guards cons
	cons jetstream.Consumer // nil until the stream and the consumer exist

	closed atomic.Bool
	stop   context.CancelFunc // Drain began: the workers fetch no more
	halt   context.CancelFunc // the drain deadline: running jobs go back to the stream
	done   chan struct{}      // closed when every worker has returned

	accepted, processed, handedBack   atomic.Int64
	connected, inProgress             prometheus.Gauge
	redeliveredTotal, handedBackTotal prometheus.Counter
}

// Open connects to the NATS servers of cfg.QueueURL and starts cfg.Workers
// workers. Neither waits for the engine: while it cannot be reached, POST
// /jobs is answered 503, the workers retry every second, and the
// connection reconnects by itself. The stream (and its consumer) is
// created, or its limits updated, once the engine answers.
func Open(cfg config.Config, logger *slog.Logger, m *metrics.Metrics, reg prometheus.Registerer) (*Queue, error) {
	q := &Queue{
		logger: logger, metrics: m, done: make(chan struct{}),
		stream: jetstream.StreamConfig{
			Name: cfg.QueueStream, Subjects: []string{cfg.QueueStream},
			// A job leaves the stream once acked; a full stream refuses
			// new jobs rather than discarding accepted ones.
			Retention: jetstream.WorkQueuePolicy, Discard: jetstream.DiscardNew,
			MaxMsgs: int64(cfg.QueueSize), Storage: jetstream.FileStorage, Replicas: cfg.QueueReplicas,
			Duplicates: cfg.IdempotencyTTL,
		},
		consumer: jetstream.ConsumerConfig{
			Durable: consumerName, AckPolicy: jetstream.AckExplicitPolicy, AckWait: cfg.AckWait(),
			MaxDeliver: -1, MaxAckPending: -1,
		},
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lameduck_queue_engine_connected",
			Help: "1 while connected to a NATS server of LAMEDUCK_QUEUE_URL, 0 while not (POST /jobs answers 503 then).",
		}),
		inProgress: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lameduck_jobs_in_progress",
			Help: "Jobs this replica holds now: fetched from the stream and not yet acked (at most LAMEDUCK_WORKERS). A replica killed now has them redelivered.",
		}),
		redeliveredTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lameduck_jobs_redelivered_total",
			Help: "Jobs begun here that the engine had delivered before, to a replica that did not ack them (it died, or handed them back): each is possibly processed twice.",
		}),
		handedBackTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lameduck_jobs_handed_back_total",
			Help: "Jobs begun here and returned to the stream unfinished at the drain deadline, for another replica.",
		}),
	}
	reg.MustRegister(q.connected, q.inProgress, q.redeliveredTotal, q.handedBackTotal)
	m.JobsRejected.WithLabelValues(metrics.ReasonUnavailable)

	nc, err := nats.Connect(cfg.QueueURL, nats.Name("lameduck"),
		nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second),
		nats.PingInterval(pingInterval), nats.MaxPingsOutstanding(2),
		// No buffering while reconnecting: a publish then fails at once
		// (503), rather than being sent later for a client told 503.
		nats.ReconnectBufSize(-1),
		nats.ConnectHandler(func(c *nats.Conn) { q.linkUp("connected", c) }),
		nats.ReconnectHandler(func(c *nats.Conn) { q.linkUp("reconnected", c) }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			q.connected.Set(0)
			if err != nil { // nil: the connection was closed here, at the exit
				logger.Warn("job queue: engine disconnected, POST /jobs answers 503 until it is back", "err", err)
			}
		}))
	if err != nil {
		return nil, fmt.Errorf("connect to LAMEDUCK_QUEUE_URL: %w", err)
	}
	q.nc = nc
	if q.js, err = jetstream.New(nc); err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	stopping, stop := context.WithCancel(context.Background())
	halted, halt := context.WithCancel(context.Background())
	q.stop, q.halt = stop, halt
	var wg sync.WaitGroup
	for range max(cfg.Workers, 1) {
		wg.Go(func() { q.worker(stopping, halted) })
	}
	go func() {
		wg.Wait()
		close(q.done)
	}()
	logger.Info("job queue: JetStream", "url", nc.ConnectedUrlRedacted(), "stream", cfg.QueueStream,
		"replicas", cfg.QueueReplicas, "ack_wait", cfg.AckWait().String(), "dedupe_window", cfg.IdempotencyTTL.String())
	return q, nil
}

func (q *Queue) linkUp(what string, c *nats.Conn) {
	q.connected.Set(1)
	q.logger.Info("job queue: engine "+what, "url", c.ConnectedUrlRedacted())
}

// jobID names the job stored at seq in stream: what POST /jobs answers,
// the same on every replica and for every retry with its Idempotency-Key.
func jobID(stream string, seq uint64) string {
	return fmt.Sprintf("%s-%d", strings.ToLower(stream), seq)
}

// Enqueue stores j in the stream and returns its id once the stream has
// acknowledged it. With a key (the request's Idempotency-Key), a job the
// stream stored under the same key within its de-duplication window is
// not stored again: its id is returned, with replayed true, whichever
// replica took it. A job not stored is refused with a *queue.RejectedError:
// ErrClosed once the shutdown closed the queue, ErrFull when the stream
// holds LAMEDUCK_QUEUE_SIZE jobs, ErrUnavailable when the engine cannot be
// reached or did not answer within 2 s. (A publish that timed out may still
// be stored: a client's retry with its Idempotency-Key finds it.) The
// publish outlives a client that hangs up: a refusal is the engine's.
func (q *Queue) Enqueue(ctx context.Context, j queue.Job, key string) (id string, replayed bool, err error) {
	if q.closed.Load() {
		return "", false, q.reject(metrics.ReasonClosed, queue.ErrClosed, 0)
	}
	if !q.nc.IsConnected() {
		return "", false, q.reject(metrics.ReasonUnavailable, queue.ErrUnavailable, retryAfter)
	}
	data, err := json.Marshal(payload{Work: j.Work, Size: j.Size})
	if err != nil {
		return "", false, fmt.Errorf("encode job: %w", err)
	}
	opts := []jetstream.PublishOpt{jetstream.WithExpectStream(q.stream.Name)}
	if key != "" {
		opts = append(opts, jetstream.WithMsgID(key))
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer cancel()
	ack, err := q.js.Publish(ctx, q.stream.Name, data, opts...)
	if err != nil {
		// Every other error is unavailable, including two publishes of one
		// key at once on a replicated stream (10158, "in process"): the
		// retry finds the first.
		if apiErr, ok := errors.AsType[*jetstream.APIError](err); ok && apiErr.ErrorCode == jsErrStoreFailed {
			return "", false, q.reject(metrics.ReasonFull, queue.ErrFull, retryAfter)
		}
		q.logger.Debug("job not stored", "err", err)
		return "", false, q.reject(metrics.ReasonUnavailable, queue.ErrUnavailable, retryAfter)
	}
	if !ack.Duplicate {
		q.accepted.Add(1)
		q.metrics.JobsAccepted.Inc()
	}
	return jobID(ack.Stream, ack.Sequence), ack.Duplicate, nil
}

func (q *Queue) reject(reason string, err error, retryAfter time.Duration) error {
	q.metrics.JobsRejected.WithLabelValues(reason).Inc()
	return &queue.RejectedError{Reason: err, RetryAfter: retryAfter}
}

// Close stops the queue taking jobs; the workers go on. It is idempotent.
func (q *Queue) Close() { q.closed.Store(true) }

// Drain closes the queue and stops fetching; the jobs in hand are finished
// and acked, and every other job stays in the stream for the other
// replicas. When ctx ends first, the running jobs stop and are handed back
// (negatively acked: redelivered at once, to whichever replica fetches).
// Drain returns once every worker has stopped, with the account.
func (q *Queue) Drain(ctx context.Context) queue.Stats {
	q.Close()
	q.stop()
	select {
	case <-q.done:
	case <-ctx.Done():
		q.halt()
		<-q.done
	}
	return q.finish()
}

// finish asks the engine what it still holds and sends the last acks and
// naks, within finishTimeout each, then closes the connection.
func (q *Queue) finish() queue.Stats {
	q.halt()
	stats := q.Stats()
	stats.Left = -1
	q.mu.Lock()
	c := q.cons
	q.mu.Unlock()
	if c != nil && q.nc.IsConnected() {
		ctx, cancel := context.WithTimeout(context.Background(), finishTimeout)
		if info, err := c.Info(ctx); err == nil {
			stats.Left = int64(info.NumPending) + int64(info.NumAckPending)
		}
		cancel()
		if err := q.nc.FlushTimeout(finishTimeout); err != nil {
			q.logger.Warn("job queue: flush before close", "err", err)
		}
	}
	q.nc.Close()
	return stats
}

// Stats returns the current account.
func (q *Queue) Stats() queue.Stats {
	return queue.Stats{Accepted: q.accepted.Load(), Processed: q.processed.Load(), HandedBack: q.handedBack.Load()}
}

// worker fetches one job at a time until stopping ends, and processes it;
// halted ends the running job (handed back). While the stream or the
// consumer cannot be had, or fetching fails, it retries every second,
// creating them again (they may have been deleted, or lost with a NATS
// server), and logs once when it begins failing and once when it
// recovers.
func (q *Queue) worker(stopping, halted context.Context) {
	failing := false
	for stopping.Err() == nil {
		c, err := q.consumerOrCreate(stopping)
		var msg jetstream.Msg
		if err == nil {
			msg, err = fetch(stopping, c)
		}
		switch {
		case err == nil:
			q.handle(halted, c, msg)
		case stopping.Err() != nil:
		case errors.Is(err, nats.ErrTimeout), errors.Is(err, context.DeadlineExceeded) && c != nil:
			// no job within fetchWait
		default:
			q.forget()
			if !failing {
				q.logger.Warn("job queue: cannot fetch jobs, retrying every second", "err", err)
			}
			failing = true
			sleep(stopping, time.Second)
			continue
		}
		if failing {
			q.logger.Info("job queue: fetching jobs again")
			failing = false
		}
	}
}

// fetch waits at most fetchWait for c's next job, or until stopping ends.
func fetch(stopping context.Context, c jetstream.Consumer) (jetstream.Msg, error) {
	ctx, cancel := context.WithTimeout(stopping, fetchWait)
	defer cancel()
	return c.Next(jetstream.FetchContext(ctx))
}

// consumerOrCreate returns the consumer, creating the stream and the
// consumer first (or updating their limits) if this replica has not yet.
func (q *Queue) consumerOrCreate(ctx context.Context) (jetstream.Consumer, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.cons != nil {
		return q.cons, nil
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	st, err := q.js.CreateOrUpdateStream(ctx, q.stream)
	if err != nil {
		return nil, fmt.Errorf("create or update stream %s: %w", q.stream.Name, err)
	}
	c, err := st.CreateOrUpdateConsumer(ctx, q.consumer)
	if err != nil {
		return nil, fmt.Errorf("create or update consumer %s: %w", consumerName, err)
	}
	q.cons = c
	q.logger.Info("job queue: stream ready", "stream", q.stream.Name, "replicas", q.stream.Replicas,
		"max_jobs", q.stream.MaxMsgs, "consumer", consumerName, "ack_wait", q.consumer.AckWait.String())
	return c, nil
}

func (q *Queue) forget() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.cons = nil
}

// handle processes one job of c and acks it, or hands it back once halted
// ends. The job's effect (here, its log record) comes before its ack: a
// replica killed in between has it redelivered and done twice (at least
// once), never acked and not done.
func (q *Queue) handle(halted context.Context, c jetstream.Consumer, msg jetstream.Msg) {
	q.inProgress.Inc()
	defer q.inProgress.Dec()
	meta, err := msg.Metadata()
	if err != nil { // not a JetStream delivery; cannot happen on a pull consumer
		q.logger.Error("job queue: message without metadata, terminated", "err", err)
		_ = msg.Term()
		return
	}
	id := jobID(meta.Stream, meta.Sequence.Stream)
	var p payload
	if err := json.Unmarshal(msg.Data(), &p); err != nil {
		// Not a job lameduck stored: never redeliver it.
		q.logger.Error("job queue: not a lameduck job, terminated", "job_id", id, "err", err)
		_ = msg.Term()
		return
	}
	if meta.NumDelivered > 1 {
		q.redeliveredTotal.Inc()
		q.logger.Info("job redelivered", "job_id", id, "deliveries", meta.NumDelivered,
			"stored_for", time.Since(meta.Timestamp).String())
	}
	// The consumer's ack wait, not this replica's: during a rollout that
	// changes LAMEDUCK_MAX_WORK, the newest replica has set it.
	ackWait := q.consumer.AckWait
	if info := c.CachedInfo(); info != nil && info.Config.AckWait > 0 {
		ackWait = info.Config.AckWait
	}
	if err := process(halted, msg, p.Work, ackWait/3, q.logger); err != nil {
		if nerr := msg.Nak(); nerr != nil {
			err = fmt.Errorf("%w; its nak failed too (%w): redelivered after the ack wait", err, nerr)
		}
		q.handedBack.Add(1)
		q.handedBackTotal.Inc()
		q.logger.Warn("job handed back", "job_id", id, "reason", err.Error())
		return
	}
	q.processed.Add(1)
	q.metrics.JobsProcessed.Inc()
	latency := time.Since(meta.Timestamp)
	q.metrics.JobLatency.Observe(latency.Seconds())
	q.logger.Info("job processed", "job_id", id, "work", p.Work.String(), "latency", latency.String(),
		"deliveries", meta.NumDelivered)
	ctx, cancel := context.WithTimeout(halted, opTimeout)
	defer cancel()
	if err := msg.DoubleAck(ctx); err != nil {
		// Processed, but the engine may not know: it will redeliver the job.
		q.logger.Warn("job ack failed: it will be redelivered", "job_id", id, "err", err)
	}
}

// errHalted is why a job stops: the drain deadline, or an abort.
var errHalted = errors.New("halted at the drain deadline")

// process simulates work, telling the engine every beat that the job is in
// progress, so that it keeps its lease however long it takes. It fails once
// halted ends.
func process(halted context.Context, msg jetstream.Msg, work, beat time.Duration, logger *slog.Logger) error {
	if halted.Err() != nil {
		return errHalted
	}
	if work <= 0 {
		return nil
	}
	done := time.NewTimer(work)
	defer done.Stop()
	tick := time.NewTicker(beat)
	defer tick.Stop()
	for {
		select {
		case <-done.C:
			return nil
		case <-tick.C:
			if err := msg.InProgress(); err != nil {
				logger.Debug("job queue: in-progress ack failed", "err", err)
			}
		case <-halted.Done():
			return errHalted
		}
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
