package app

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lameduck/lameduck/internal/config"
	"github.com/lameduck/lameduck/internal/metrics"
	"github.com/lameduck/lameduck/internal/server"
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &service{
		cfg:    config.Config{ShutdownTimeout: 10 * time.Second},
		logger: slog.New(slog.DiscardHandler), metrics: metrics.New(prometheus.NewRegistry()),
		appLn: ln, appServed: make(chan struct{}),
		clients: server.NewClients(time.Second, time.Second), cut: func(error) {},
	}
	s.conns = newConnTracker(s.metrics.Inflight)
	started := make(chan struct{})
	var finished atomic.Bool
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	s.app = &http.Server{
		Handler: http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			// counted in flight, as server.NewApp's middleware counts a request
			req := s.metrics.Begin()
			defer func() {
				req.Done(r.URL.Path, http.StatusOK, false)
				s.conns.requestDone()
			}()
			close(started)
			time.Sleep(work) // deaf to its context: the client's reset does not end it
			finished.Store(true)
		}),
		Protocols: &protocols,
		ConnState: s.conns.hook,
	}
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
	cut := s.shutdownHTTP(context.Background())
	if !finished.Load() {
		t.Errorf("the HTTP phase ended %s after it began with a reset stream's handler still running; want it to wait for it",
			time.Since(begin).Round(time.Millisecond))
	}
	if cut != 0 {
		t.Errorf("shutdownHTTP cut %d requests; want 0", cut)
	}
	// Once the handler ended, nothing else changed: only its count ending,
	// told to the tracker, ends the wait before the deadline.
	if took := time.Since(begin); took >= s.cfg.ShutdownTimeout {
		t.Errorf("the HTTP phase took %s, to its %s deadline; want it to end once the handler (%s) did",
			took.Round(time.Millisecond), s.cfg.ShutdownTimeout, work)
	}
}
