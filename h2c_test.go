package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// h2cClient is an HTTP/2 client with prior knowledge (h2c, no TLS), as a
// mesh sidecar or a gRPC channel speaks to a pod, with a dialer that counts
// the connections it opens.
func h2cClient(dials *atomic.Int64) *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	var d net.Dialer
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		Protocols: &p,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return d.DialContext(ctx, network, addr)
		},
	}}
}

// h2cAnswer is one h2c request's outcome.
type h2cAnswer struct {
	code  int
	proto int // the response's HTTP major version
	body  string
	err   error
	at    time.Time
}

func h2cDo(c *http.Client, method, url string) h2cAnswer {
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader(`{"task":"h2c"}`)
	}
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		return h2cAnswer{err: err, at: time.Now()}
	}
	resp, err := c.Do(req)
	if err != nil {
		return h2cAnswer{err: err, at: time.Now()}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return h2cAnswer{code: resp.StatusCode, proto: resp.ProtoMajor, body: string(b), err: err, at: time.Now()}
}

// rawH2C is an HTTP/2 connection that sends no request: it answers the
// server's SETTINGS and records every frame type it reads, and how the
// connection ended.
type rawH2C struct {
	done chan struct{} // closed when the connection has ended

	mu     sync.Mutex
	frames []http2.FrameType
	goAway *http2.GoAwayFrame
	goAt   time.Time
	end    error // the read error that ended it (io.EOF: a clean close)
}

func dialRawH2C(t *testing.T, addr string) *rawH2C {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	r := &rawH2C{done: make(chan struct{})}
	go func() { // ends when the connection does (the server's close, or Cleanup's)
		defer close(r.done)
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				r.mu.Lock()
				r.end = err
				r.mu.Unlock()
				return
			}
			r.mu.Lock()
			r.frames = append(r.frames, f.Header().Type)
			if g, ok := f.(*http2.GoAwayFrame); ok && r.goAway == nil {
				r.goAway, r.goAt = g, time.Now()
			}
			r.mu.Unlock()
			if s, ok := f.(*http2.SettingsFrame); ok && !s.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		}
	}()
	return r
}

// TestH2CDrain drives the shutdown with HTTP/2 clients (h2c, prior
// knowledge) on the real binary: streams multiplexed on one connection and
// in flight at SIGTERM complete; requests sent during the preStop delay
// (GETs and key-less POST /jobs) all succeed, each after the first on a new
// connection, since every response since the signal sends its connection a
// GOAWAY; a connection idle since before the signal gets its GOAWAY at the
// end of the HTTP phase, before it closes; the exit is clean, with every job
// processed and no request cut.
func TestH2CDrain(t *testing.T) {
	skipShort(t)
	t.Parallel()
	const prestop = 1500 * time.Millisecond
	p := startBinary(t, "LAMEDUCK_PRESTOP_DELAY=1.5s", "LAMEDUCK_SHUTDOWN_TIMEOUT=6s",
		"LAMEDUCK_DRAIN_TIMEOUT=4s", "LAMEDUCK_GRACE_PERIOD=13s", "LAMEDUCK_WORKERS=2")
	app, admin := "http://"+p.app, "http://"+p.admin

	var dials atomic.Int64
	c := h2cClient(&dials)
	defer c.CloseIdleConnections()
	if a := h2cDo(c, http.MethodGet, app+"/hello"); a.err != nil || a.code != 200 || a.proto != 2 {
		t.Fatalf("GET /hello over h2c = %d HTTP/%d, %v; want 200 over HTTP/2", a.code, a.proto, a.err)
	}
	idle := dialRawH2C(t, p.app) // idle from here to the end

	// Three streams on the client's one connection, in flight at SIGTERM;
	// they end after the preStop delay, in the HTTP phase.
	const inflight = 3
	slow := make(chan h2cAnswer, inflight)
	for range inflight {
		go func() { slow <- h2cDo(c, http.MethodGet, app+"/hello?delay=2500ms") }()
	}
	waitFor(t, 5*time.Second, "three streams in flight", func() bool {
		return metric(t, admin, "lameduck_http_inflight_requests") >= inflight
	})
	if d := dials.Load(); d != 1 {
		t.Fatalf("the client dialled %d connections before SIGTERM; want 1 (its streams multiplexed)", d)
	}

	signalled := time.Now()
	p.signal(syscall.SIGTERM)
	waitFor(t, 2*time.Second, "/ready 503", func() bool {
		code, _ := status(admin + "/ready")
		return code == http.StatusServiceUnavailable
	})

	// During the preStop delay: GET /hello and POST /jobs without an
	// Idempotency-Key, one after the other, every 25 ms (the jobs stay well
	// within what 2 workers finish), until shortly before it ends.
	var during []h2cAnswer
	pace := time.NewTicker(25 * time.Millisecond)
	defer pace.Stop()
	for i := 0; time.Since(signalled) < prestop-400*time.Millisecond; i++ {
		<-pace.C
		if i%2 == 0 {
			during = append(during, h2cDo(c, http.MethodGet, app+"/hello"))
		} else {
			during = append(during, h2cDo(c, http.MethodPost, app+"/jobs"))
		}
	}
	dialsDuring := dials.Load() - 1
	t.Logf("%d requests during the preStop delay, %d new connections", len(during), dialsDuring)
	jobs := 0
	for i, a := range during {
		want := 200
		if i%2 == 1 {
			want = http.StatusAccepted
			jobs++
		}
		if a.err != nil || a.code != want || a.proto != 2 {
			t.Errorf("request %d of %d during the preStop delay = %d HTTP/%d, %v; want %d over HTTP/2", i+1, len(during), a.code, a.proto, a.err, want)
		}
	}
	if len(during) < 2 {
		t.Fatalf("only %d requests during the preStop delay; the machine is too slow for this test to mean anything", len(during))
	}
	// The first went to the connection of the streams in flight; its answer
	// sent that connection a GOAWAY, and so on: each later one needed a new
	// connection.
	if dialsDuring < int64(len(during)-1) {
		t.Errorf("the client dialled %d new connections for %d requests during the preStop delay; want at least %d (a GOAWAY after each answer)",
			dialsDuring, len(during), len(during)-1)
	}

	for range inflight {
		a := <-slow
		if a.err != nil || a.code != 200 || a.body != "hello\n" {
			t.Errorf("stream in flight at SIGTERM = %d %q, %v; want 200 hello", a.code, a.body, a.err)
		} else if a.at.Sub(signalled) < prestop {
			t.Errorf("a stream in flight at SIGTERM ended %s after it, within the preStop delay; want after it (the test proves less)", a.at.Sub(signalled))
		}
	}

	if code := p.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit code = %d; want 0", code)
	}
	s := summary(t, p)
	t.Logf("shutdown: %v", s)
	if s["requests_cut"] != 0 || s["jobs_dropped"] != 0 || s["jobs_accepted"] != float64(jobs) || s["jobs_processed"] != float64(jobs) {
		t.Errorf("summary = %v; want %d jobs accepted and processed, 0 dropped, 0 cut", s, jobs)
	}

	// The idle connection: a GOAWAY (no error, no stream taken), after the
	// preStop delay, then a clean close.
	select {
	case <-idle.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the idle h2c connection was still open 5 s after the exit")
	}
	idle.mu.Lock()
	defer idle.mu.Unlock()
	switch g := idle.goAway; {
	case g == nil:
		t.Errorf("the idle h2c connection closed (%v) without a GOAWAY; frames read: %v", idle.end, idle.frames)
	case g.ErrCode != http2.ErrCodeNo || g.LastStreamID != 0:
		t.Errorf("the idle h2c connection's GOAWAY = %v, last stream %d; want NO_ERROR, 0", g.ErrCode, g.LastStreamID)
	case idle.goAt.Sub(signalled) < prestop:
		t.Errorf("the idle h2c connection got its GOAWAY %s after SIGTERM; want after the preStop delay %s", idle.goAt.Sub(signalled), prestop)
	}
	if !errors.Is(idle.end, io.EOF) {
		t.Errorf("the idle h2c connection ended with %v; want a clean close (EOF) after its GOAWAY", idle.end)
	}
}
