// Package app runs lameduck: it wires the parts together, serves, and on the
// first signal runs the shutdown sequence that loses nothing. The sequence
// reads top to bottom in (*service).shutdown.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/lameduck/lameduck/internal/config"
	"github.com/lameduck/lameduck/internal/conns"
	"github.com/lameduck/lameduck/internal/health"
	"github.com/lameduck/lameduck/internal/idempotency"
	"github.com/lameduck/lameduck/internal/jetstream"
	"github.com/lameduck/lameduck/internal/metrics"
	"github.com/lameduck/lameduck/internal/queue"
	"github.com/lameduck/lameduck/internal/server"
)

// Errors Run returns after a shutdown that was not clean.
var (
	// ErrLost means the sequence completed but cut requests or dropped jobs.
	ErrLost = errors.New("shutdown lost work")
	// ErrAborted means a second signal ended the sequence early.
	ErrAborted = errors.New("shutdown aborted by a second signal")
)

// handlerExit bounds how long handlers cut at the shutdown deadline get to
// return (their contexts are cancelled) before the queue closes.
const handlerExit = 500 * time.Millisecond

// lateLinger bounds how long the app listener's close waits for late
// requests being answered (each is answered at once). Like handlerExit, it
// is taken from the 1 s the budget leaves spare; both together fit in it.
const lateLinger = 100 * time.Millisecond

// goAwayLinger bounds how long the HTTP phase waits, once no request is in
// flight, for the connections to close by themselves: net/http closes an
// HTTP/2 connection 1 s after its GOAWAY (see goAway).
const goAwayLinger = 2 * time.Second

// Run serves until the first value on signals (or until ctx ends), then runs
// the shutdown sequence; a second value on signals aborts it. It returns nil
// after a clean shutdown, an error wrapping ErrLost or ErrAborted otherwise,
// or the error that kept it from serving.
func Run(ctx context.Context, cfg config.Config, logger *slog.Logger, signals <-chan os.Signal, info health.BuildInfo) error {
	s, err := newService(cfg, logger, info)
	if err != nil {
		return err
	}
	serveErrs := s.serve()
	defer s.serving.Wait()
	defer s.cut(nil)

	var cause string
	var serveErr error
	var first time.Time // when the signal that started the shutdown came
	select {
	case sig := <-signals:
		cause, first = "signal "+sig.String(), time.Now()
	case <-ctx.Done():
		cause = "context: " + context.Cause(ctx).Error()
	case serveErr = <-serveErrs:
		cause = "serve failed: " + serveErr.Error()
		logger.Error("serve failed, shutting down", "err", serveErr)
	}
	// A shutdown that no signal started still takes the kubelet's first
	// SIGTERM as the ordinary one; only the second aborts.
	abort, stopWatch := watchSecondSignal(signals, first, logger)
	defer stopWatch()
	return errors.Join(serveErr, s.shutdown(abort, cause))
}

// service is lameduck's running state between start-up and exit.
type service struct {
	cfg     config.Config
	logger  *slog.Logger
	metrics *metrics.Metrics
	gate    *health.Gate
	queue   jobQueue
	conns   *conns.Tracker // the app connections
	handler appHandler     // the app requests
	info    health.BuildInfo

	app, admin *http.Server
	late       *http.Server // answers late arrivals on the app listener, from the preStop delay's end to the exit
	appLn      *conns.Listener
	adminLn    net.Listener
	appServed  chan struct{}           // closed once the app's Serve has returned
	cut        context.CancelCauseFunc // cancels every app request's context with server.ErrCut
	serving    sync.WaitGroup          // the Serve goroutines: app, admin and, after the preStop delay, late
}

// appHandler is what the service needs of the app handler (server.Handler).
type appHandler interface {
	http.Handler
	InFlight() int64                // requests in the handler now
	ShortenBodies(cutoff time.Time) // no body read lasts past cutoff
	LastArrival() time.Time         // when a request last arrived while draining
	Late()                          // every request from now on is answered 503 at once
}

// jobQueue is what the shutdown needs of the job queue: the in-memory
// queue.Queue, or jetstream.Queue with LAMEDUCK_QUEUE_URL.
type jobQueue interface {
	Close()
	Drain(ctx context.Context) queue.Stats
}

// newQueue builds the job queue the configuration chooses, and the
// Enqueuer POST /jobs uses. The in-memory queue takes only the jobs its
// workers can finish in the drain budget, and remembers Idempotency-Keys in
// this process; JetStream stores jobs in a stream every replica shares,
// and the stream remembers the keys.
func newQueue(cfg config.Config, logger *slog.Logger, m *metrics.Metrics, reg *prometheus.Registry) (jobQueue, server.Enqueuer, error) {
	if cfg.QueueURL != "" {
		q, err := jetstream.Open(cfg, logger, m, reg)
		if err != nil {
			return nil, nil, err
		}
		return q, q, nil
	}
	q := queue.New(cfg.QueueSize, cfg.Workers,
		queue.Admission{Budget: cfg.DrainBudget(), PerJob: config.JobAllowance}, logger, m)
	keys := idempotency.New(cfg.IdempotencyTTL, cfg.IdempotencyMaxKeys, cfg.IdempotencyMaxBytes)
	reg.MustRegister(
		gauge("lameduck_idempotency_keys", "Idempotency-Keys remembered now.",
			func() float64 { return float64(keys.Len()) }),
		gauge("lameduck_idempotency_bytes",
			"Memory the remembered Idempotency-Keys take, bookkeeping included (at most LAMEDUCK_IDEMPOTENCY_MAX_BYTES).",
			func() float64 { return float64(keys.Bytes()) }))
	return q, server.InMemory(q, keys), nil
}

// newService listens on both addresses and builds every part.
func newService(cfg config.Config, logger *slog.Logger, info health.BuildInfo) (*service, error) {
	appLn, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("listen on LAMEDUCK_HTTP_ADDR: %w", err)
	}
	adminLn, err := net.Listen("tcp", cfg.AdminAddr)
	if err != nil {
		_ = appLn.Close()
		return nil, fmt.Errorf("listen on LAMEDUCK_ADMIN_ADDR: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s := &service{cfg: cfg, logger: logger, metrics: metrics.New(reg), gate: &health.Gate{},
		conns: conns.New(cfg.MaxConns, reg), adminLn: adminLn, appServed: make(chan struct{}), info: info}
	s.appLn = s.conns.Listener(appLn)
	q, jobs, err := newQueue(cfg, logger, s.metrics, reg)
	if err != nil {
		_ = appLn.Close()
		_ = adminLn.Close()
		return nil, err
	}
	s.queue = q
	handler := server.New(cfg, logger, s.metrics, s.gate, jobs)
	s.handler = handler
	reg.MustRegister(
		gauge("lameduck_http_inflight_requests", "App requests in handlers now (at most LAMEDUCK_MAX_REQUESTS).",
			func() float64 { return float64(s.handler.InFlight()) }))

	base, cut := context.WithCancelCause(context.Background())
	s.cut = cut
	errorLog := slog.NewLogLogger(logger.Handler(), slog.LevelWarn)
	// HTTP/1.1 and HTTP/2 with prior knowledge (h2c) on the same port: a
	// preface "PRI * HTTP/2.0" selects HTTP/2. HTTP/2 over TLS is not served.
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	appServer := func() *http.Server {
		return &http.Server{
			Handler:           handler,
			Protocols:         &protocols,
			HTTP2:             h2Limits(),
			ConnState:         s.conns.Hook,
			ReadHeaderTimeout: cfg.ReadHeaderTimeout,
			IdleTimeout:       cfg.IdleTimeout,
			MaxHeaderBytes:    cfg.MaxHeaderBytes,
			BaseContext:       func(net.Listener) context.Context { return base },
			ErrorLog:          errorLog,
		}
	}
	// The same handler behind both: once the preStop delay is over, it
	// answers every request late (server.Handler.Late).
	s.app, s.late = appServer(), appServer()
	s.admin = &http.Server{
		Handler:           health.NewHandler(s.gate, reg, reg, info),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          errorLog,
	}
	return s, nil
}

// serve starts serving both listeners, each on a goroutine of s.serving
// that ends when its server closes, and logs that it is serving. The
// channel receives the error of a Serve that failed.
func (s *service) serve() <-chan error {
	errs := make(chan error, 2)
	for _, p := range []struct {
		srv    *http.Server
		ln     net.Listener
		served chan struct{} // closed when Serve returns
	}{{s.app, s.appLn, s.appServed}, {s.admin, s.adminLn, make(chan struct{})}} {
		s.serving.Go(func() {
			defer close(p.served)
			if err := p.srv.Serve(p.ln); !errors.Is(err, http.ErrServerClosed) {
				errs <- fmt.Errorf("serve on %s: %w", p.ln.Addr(), err)
			}
		})
	}
	for _, w := range s.cfg.Warnings() {
		s.logger.Warn("configuration", "warning", w)
	}
	s.logger.Info("serving", "http_addr", s.appLn.Addr().String(), "admin_addr", s.adminLn.Addr().String(),
		"version", s.info.Version, "commit", s.info.Commit,
		"shutdown_budget", s.cfg.Budget().String(), "grace_period", s.cfg.GracePeriod.String(),
		"drain_budget", s.cfg.DrainBudget().String())
	return errs
}

// h2Limits bounds what one HTTP/2 connection can make the server buffer:
// net/http's defaults let a client park 1 MiB of request body per connection
// (its flow-control window) and send 1 MiB frames, read whole into memory.
// Here a connection buffers at most 64 KiB of body (config.H2StreamBuffer
// per stream) and reads frames of at most 16 KiB, both protocol minimums;
// it carries at most h2MaxStreams streams at once. The streams of all
// connections together are bounded by LAMEDUCK_MAX_REQUESTS, and
// config.MemoryWorstCase counts both.
func h2Limits() *http.HTTP2Config {
	return &http.HTTP2Config{
		MaxConcurrentStreams:          h2MaxStreams,
		MaxReadFrameSize:              config.H2FrameBytes,
		MaxReceiveBufferPerConnection: 64 << 10,
		MaxReceiveBufferPerStream:     config.H2StreamBuffer,
	}
}

// h2MaxStreams is the most streams one HTTP/2 connection carries at once
// (SETTINGS_MAX_CONCURRENT_STREAMS): below the RFC's recommended 100, since
// a stream the request limit refuses still costs its header block and a
// goroutine until its 503 is written. Clients open more connections, or
// queue, beyond it.
const h2MaxStreams = 16

// shutdown runs the sequence, in order. abort ends when a second signal
// arrives: every phase then stops at once and what it abandons is logged.
func (s *service) shutdown(abort context.Context, cause string) error {
	start := time.Now()
	s.logger.Info("shutdown started", "cause", cause, "prestop_delay", s.cfg.PrestopDelay.String(),
		"prestop_min", s.cfg.PrestopMin.String(), "prestop_quiet", s.cfg.PrestopQuiet.String(),
		"shutdown_timeout", s.cfg.ShutdownTimeout.String(), "drain_timeout", s.cfg.DrainTimeout.String())
	defer s.admin.Close() // 6. The admin listener closes last.

	// 1. Readiness fails at once; app responses now carry Connection: close
	// (on HTTP/2, net/http turns it into a GOAWAY on that connection).
	s.gate.Close()

	// 2. preStop: keep serving everything while endpoints stop routing here,
	// until no connection or request has arrived for the quiet period (at
	// least the minimum, at most the maximum; or a fixed delay).
	end, last := s.prestop(abort, start)
	prestop := time.Since(start)
	s.metrics.ShutdownPhase.WithLabelValues(metrics.PhasePrestop).Set(prestop.Seconds())

	// 3. Requests from now on are late: answered 503 at once, never waited
	// for. The app server stops accepting and the late server takes its
	// listener over, so that a connection still sent here is answered, not
	// refused. Connections idle since before the signal close now (HTTP/2
	// ones after a GOAWAY): their clients' next requests go elsewhere. Wait
	// for in-flight requests (they may still enqueue); then close what is
	// left idle.
	t := time.Now()
	s.handler.Late()
	s.serveLate()
	idle := s.conns.CloseIdle()
	s.logger.Info("prestop ended", "prestop_end", end, "prestop_seconds", seconds(prestop),
		"prestop_last_arrival_seconds", seconds(last), "idle_connections_closed", idle)
	cut := s.shutdownHTTP(abort)
	httpPhase := time.Since(t)
	s.metrics.ShutdownPhase.WithLabelValues(metrics.PhaseHTTP).Set(httpPhase.Seconds())

	// 4. No request can reach the queue now: close it, then drain it. The
	// drain's clock starts only once the queue is closed, so every job it
	// accepted had the whole drain timeout ahead of it, which admission
	// counted on (queue.Admission; config.DrainBudget). With JetStream, the
	// drain stops fetching, finishes the jobs in hand and leaves the rest
	// in the stream for the other replicas; at the deadline it hands the
	// running ones back.
	t = time.Now()
	s.queue.Close()
	drainCtx, cancel := context.WithTimeout(abort, s.cfg.DrainTimeout)
	stats := s.queue.Drain(drainCtx)
	cancel()
	queuePhase := time.Since(t)
	s.metrics.ShutdownPhase.WithLabelValues(metrics.PhaseQueue).Set(queuePhase.Seconds())

	// 5. Only now are connections refused: the app listener closes, with
	// the late arrivals' connections. Then one honest account.
	s.closeLate(abort)
	record := []any{
		"queue", s.queueKind(),
		"jobs_accepted", stats.Accepted, "jobs_processed", stats.Processed, "jobs_dropped", stats.Dropped,
		"requests_cut", cut, "requests_after_signal", metrics.Sum(s.metrics.RequestsAfterSignal),
		"requests_by_code", s.metrics.RequestsByCode(),
		"connections_peak", s.conns.Peak(), "connections_refused", s.conns.Refused(),
		"connections_reclaimed", s.conns.Reclaimed(),
		"requests_refused", metrics.Sum(s.metrics.RequestsRefused),
		"jobs_rejected", s.rejectedByReason(),
		"requests_late", metrics.Sum(s.metrics.RequestsLate),
		"prestop_seconds", seconds(prestop), "prestop_end", end, "prestop_last_arrival_seconds", seconds(last),
		"http_seconds", seconds(httpPhase),
		"queue_seconds", seconds(queuePhase), "total_seconds", seconds(time.Since(start)),
	}
	if s.cfg.QueueURL != "" {
		// Jobs live in the stream: what this replica leaves, the others process.
		record = append(record, "jobs_handed_back", stats.HandedBack, "jobs_left_in_stream", stats.Left)
	}
	if abort.Err() != nil {
		s.logger.Error("shutdown aborted", record...)
		return fmt.Errorf("%w: %d requests cut, %d jobs dropped", ErrAborted, cut, stats.Dropped)
	}
	s.logger.Info("shutdown complete", record...)
	if cut > 0 || stats.Dropped > 0 {
		return fmt.Errorf("%w: %d requests cut, %d jobs dropped", ErrLost, cut, stats.Dropped)
	}
	return nil
}

// The ways the preStop delay ends, prestop_end in the exit's account.
const (
	prestopQuiet   = "quiet"   // no connection or request arrived for LAMEDUCK_PRESTOP_QUIET
	prestopMinimum = "minimum" // the quiet period was over before LAMEDUCK_PRESTOP_MIN
	prestopMaximum = "maximum" // traffic kept arriving until LAMEDUCK_PRESTOP_DELAY
	prestopFixed   = "fixed"   // LAMEDUCK_PRESTOP_MIN = LAMEDUCK_PRESTOP_DELAY
	prestopAborted = "aborted" // a second signal
)

// prestop waits out the preStop delay, which began at start, and returns
// how it ended and how long after start the last connection or request
// arrived during it (0 if none did).
//
// Between PrestopMin and PrestopDelay it ends once nothing has arrived for
// PrestopQuiet, as Knative's drainer does: while some kube-proxy still sends
// new connections here, or a client still sends requests on a connection it
// has not yet closed (its next response carries Connection: close), the
// delay goes on. No pod can know that every node has stopped routing to it;
// a quiet period is the evidence it has, the minimum covers a node that has
// not yet sent anything, and what still arrives later is answered 503
// (late) rather than refused.
func (s *service) prestop(abort context.Context, start time.Time) (end string, last time.Duration) {
	least, most, quiet := s.cfg.PrestopMin, s.cfg.PrestopDelay, s.cfg.PrestopQuiet
	lastArrival := func() time.Time {
		t := start
		for _, a := range []time.Time{s.handler.LastArrival(), s.conns.LastArrival()} {
			if a.After(t) {
				t = a
			}
		}
		return t
	}
	if least >= most {
		sleep(abort, time.Until(start.Add(most)))
		end = prestopFixed
	} else {
		for {
			a := lastArrival()
			due, why := a.Add(quiet), prestopQuiet
			if m := start.Add(least); due.Before(m) {
				due, why = m, prestopMinimum
			}
			if m := start.Add(most); !due.Before(m) {
				due, why = m, prestopMaximum
			}
			if !time.Now().Before(due) {
				end = why
				break
			}
			sleep(abort, time.Until(due))
			if abort.Err() != nil {
				break
			}
		}
	}
	if abort.Err() != nil {
		end = prestopAborted
	}
	return end, lastArrival().Sub(start)
}

// serveLate hands the app listener over from the app server to the late
// server, which serves it until the exit: a connection that arrives after
// the preStop delay is answered (its requests late: 503, Retry-After,
// Connection: close) instead of refused, for as long as the shutdown runs.
// The app server's Serve returns (every connection it accepted is
// registered by then, with the Tracker and with net/http), so that the HTTP
// phase can wait for and close its connections alone.
func (s *service) serveLate() {
	if err := s.appLn.Detach(); err != nil {
		s.logger.Warn("late arrivals will be refused", "err", err)
		_ = s.appLn.Close()
		<-s.appServed
		return
	}
	<-s.appServed // nothing calls the app listener's Accept any more
	ln, err := s.appLn.Reattach()
	if err != nil {
		s.logger.Warn("late arrivals will be refused", "err", err)
		_ = s.appLn.Listener.Close()
		return
	}
	s.serving.Go(func() {
		if err := s.late.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			s.logger.Warn("late arrivals: serve failed", "err", err)
		}
	})
}

// closeLate closes the app listener and the late server's connections. A
// late request already read still gets its answer, which takes moments:
// the late server's Shutdown waits for it, at most lateLinger, before Close.
func (s *service) closeLate(abort context.Context) {
	ctx, cancel := context.WithTimeout(abort, lateLinger)
	defer cancel()
	_ = s.late.Shutdown(ctx)
	_ = s.late.Close()
}

// shutdownHTTP waits, at most ShutdownTimeout, for in-flight requests (on
// HTTP/2, streams), once the app server no longer accepts connections
// (serveLate). It returns as soon as the last one finishes and the app
// server's connections are closed, and returns the number of requests still
// in a handler at the deadline, which it cuts. Late requests are not waited
// for: they are answered at once.
//
// It does not call http.Server.Shutdown while a request may still come in on
// an open connection: Shutdown marks the server as shutting down, and
// net/http then closes, unanswered, any HTTP/1.1 request it reads afterwards,
// such as one a keep-alive client sent as it closed. Here such requests are
// answered (late, with Connection: close). Only once no request is in flight
// does it call Shutdown, for what only Shutdown does: send every HTTP/2
// connection a GOAWAY (see goAway).
func (s *service) shutdownHTTP(abort context.Context) (cut int) {
	ctx, cancel := context.WithTimeout(abort, s.cfg.ShutdownTimeout)
	defer cancel()
	// A body still arriving must be in before the deadline: a stalled upload
	// is timed out (408), not cut.
	deadline, _ := ctx.Deadline()
	s.handler.ShortenBodies(deadline.Add(-min(config.ClientSpare, s.cfg.ShutdownTimeout/2)))

	err := waitUntil(ctx, s.quiet)
	if err == nil {
		err = s.goAway(ctx)
	}
	if err == nil {
		s.app.Close() // nothing in flight: close whatever connection is left
		return 0
	}
	// Only requests inside the handler chain are cut work (the in-flight
	// count, the tracker's too); a connection still sending a finished
	// response to a client that stopped reading is not.
	cut = int(s.handler.InFlight())
	s.logger.Warn("cutting requests still running", "requests_cut", cut, "aborted", abort.Err() != nil)
	s.cut(server.ErrCut) // their contexts end with this cause: lameduck_http_requests_cut_total
	s.app.Close()        // and their connections close; give their handlers a moment to return
	// Even after a second signal: a cut handler returns at once, and only
	// then is it counted, so the account waits for it, briefly.
	exit, cancelExit := context.WithTimeout(context.Background(), handlerExit)
	defer cancelExit()
	if err := waitUntil(exit, s.quiet); err != nil {
		s.logger.Warn("handlers still running after their requests were cut", "err", err)
	}
	return cut
}

// goAway ends the app's idle connections once no request is in flight. It
// returns nil once every connection has closed, or after goAwayLinger once
// no request is in flight; ctx's error if it ends first with a request in
// flight.
//
// Idle HTTP/1.1 keep-alive connections close at once: HTTP/1.1 has no way to
// tell a client not to send its next request, and one that does now loses
// the race (Go's Transport retries it only when it is idempotent or carries
// an Idempotency-Key). An HTTP/2 connection gets a GOAWAY first, which names
// the last stream the server took: the client retries every later one on a
// new connection, safely, whatever its method. net/http sends that GOAWAY to
// every HTTP/2 connection from Shutdown only (a connection that carried a
// response since the signal had its own already: Connection: close). Streams
// that reached the server before the GOAWAY are served and counted, and
// net/http closes each HTTP/2 connection 1 s after its GOAWAY and last
// stream, so that the GOAWAY reaches the client before the close
// (golang.org/issue/18701): with HTTP/2 connections open, the HTTP phase
// lasts about 1 s longer.
func (s *service) goAway(ctx context.Context) error {
	// With a context already done, Shutdown starts the GOAWAYs, closes the
	// idle HTTP/1.1 connections, and returns at once: the tracker waits, for
	// the streams and the connections, without Shutdown's poll.
	done, cancel := context.WithCancel(context.Background())
	cancel()
	_ = s.app.Shutdown(done)
	linger, cancelLinger := context.WithTimeout(ctx, goAwayLinger)
	defer cancelLinger()
	if waitUntil(linger, s.closed) == nil {
		return nil
	}
	// A connection still open is closed by the caller; a request in flight
	// (a stream that came in before its connection's GOAWAY) is waited for.
	return waitUntil(ctx, s.quiet)
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func seconds(d time.Duration) float64 { return math.Round(d.Seconds()*1000) / 1000 }

// rejectedByReason returns the jobs refused with 503, by reason (full,
// budget, closed), for the exit's account: a refusal for capacity (full,
// budget) is back-pressure, one for closed means a request reached the queue
// after the shutdown closed it.
func (s *service) rejectedByReason() map[string]float64 {
	out := map[string]float64{metrics.ReasonFull: 0, metrics.ReasonBudget: 0, metrics.ReasonClosed: 0}
	if s.cfg.QueueURL != "" {
		out[metrics.ReasonUnavailable] = 0
	}
	for r, n := range metrics.ByLabel(s.metrics.JobsRejected, "reason") {
		out[r] = n
	}
	return out
}

// quiet reports whether no request is in a handler and no connection is
// serving or receiving one.
func (s *service) quiet() bool { return s.handler.InFlight() == 0 && s.conns.Busy() == 0 }

// closed reports whether no request is in a handler and every connection
// but the late ones has closed.
func (s *service) closed() bool { return s.handler.InFlight() == 0 && s.conns.Remaining() == 0 }

// pollEvery is how often the HTTP phase looks whether it may move on.
const pollEvery = 5 * time.Millisecond

// waitUntil returns nil once cond holds, looking every pollEvery, or ctx's
// error when it ends first.
func waitUntil(ctx context.Context, cond func() bool) error {
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

func gauge(name, help string, f func() float64) prometheus.GaugeFunc {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
}

// queueKind names the job queue in the exit's account.
func (s *service) queueKind() string {
	if s.cfg.QueueURL != "" {
		return "jetstream"
	}
	return "memory"
}
