package app

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lameduck/lameduck/internal/config"
	"github.com/lameduck/lameduck/internal/health"
)

// h2cTransport is an HTTP/2 client with prior knowledge, without TLS.
func h2cTransport() *http.Transport {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Transport{Protocols: &p}
}

// TestShutdownWaitsForResetStream: an HTTP/2 stream that its client reset
// (RST_STREAM) leaves its connection idle while its handler still runs (one
// that does not watch its context). The HTTP phase counts streams, so it
// waits for that handler, not only for the connection.
func TestShutdownWaitsForResetStream(t *testing.T) {
	const work = 2500 * time.Millisecond // longer than goAwayLinger: a wait for the connection alone ends first
	started := make(chan struct{})
	var finished atomic.Bool
	s := newTestService(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		close(started)
		time.Sleep(work) // deaf to its context: the client's reset does not end it
		finished.Store(true)
	}))
	s.cfg.ShutdownTimeout = 10 * time.Second
	ln := s.appLn
	go func() {
		defer close(s.appServed)
		_ = s.app.Serve(ln)
	}()

	tr := h2cTransport()
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ln.Addr().String()+"/", nil)
		resp, err := tr.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	<-started
	cancel() // RST_STREAM
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("the reset request = %v; want context.Canceled", err)
	}

	begin := time.Now()
	s.serveLate()
	cut := s.shutdownHTTP(context.Background())
	if !finished.Load() {
		t.Errorf("the HTTP phase ended %s after it began with a reset stream's handler still running; want it to wait for it",
			time.Since(begin).Round(time.Millisecond))
	}
	if cut != 0 {
		t.Errorf("shutdownHTTP cut %d requests; want 0", cut)
	}
	// Once the handler ended, nothing else changed: only its count ending
	// ends the wait before the deadline.
	if took := time.Since(begin); took >= s.cfg.ShutdownTimeout {
		t.Errorf("the HTTP phase took %s, to its %s deadline; want it to end once the handler (%s) did",
			took.Round(time.Millisecond), s.cfg.ShutdownTimeout, work)
	}
}

// countingHandler counts its requests in flight, as server.Handler does.
type countingHandler struct {
	next     http.Handler
	inflight atomic.Int64
}

func (h *countingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.inflight.Add(1)
	defer h.inflight.Add(-1)
	h.next.ServeHTTP(w, r)
}

func (h *countingHandler) InFlight() int64         { return h.inflight.Load() }
func (h *countingHandler) ShortenBodies(time.Time) {}
func (h *countingHandler) LastArrival() time.Time  { return time.Time{} }
func (h *countingHandler) Late()                   {}

// newTestService is the service of testConfig, listening on loopback, with
// next as its app handler, its requests counted; nothing serves yet.
func newTestService(t *testing.T, next http.Handler) *service {
	t.Helper()
	cfg := config.Config{HTTPAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", MaxConns: 100, MaxRequests: 100,
		QueueSize: 10, Workers: 1, ShutdownTimeout: 5 * time.Second, DrainTimeout: time.Second}
	s, err := newService(cfg, slog.New(slog.DiscardHandler), health.BuildInfo{})
	if err != nil {
		t.Fatal(err)
	}
	h := &countingHandler{next: next}
	s.handler, s.app.Handler, s.late.Handler = h, h, h
	t.Cleanup(func() {
		s.cut(nil)
		_ = s.adminLn.Close()
		_ = s.app.Close()
		_ = s.late.Close()
		_ = s.appLn.Close()
		s.serving.Wait()
		s.queue.Close()
		s.queue.Drain(context.Background())
	})
	return s
}
