package server_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lameduck/lameduck/internal/config"
	"github.com/lameduck/lameduck/internal/server"
)

func TestQueryIsChecked(t *testing.T) {
	f := newFixture(t, testConfig())
	tests := []struct {
		method, target string
		code           int
		mention        string // in the one-line reason of a 400
	}{
		{http.MethodGet, "/hello?delay=0s", http.StatusOK, ""},
		{http.MethodPost, "/jobs?work=0s", http.StatusAccepted, ""},
		{http.MethodGet, "/hello?delay=%zz", http.StatusBadRequest, "malformed query string"},
		{http.MethodGet, "/hello?delay=0s;x=1", http.StatusBadRequest, "malformed query string"},
		{http.MethodGet, "/hello?dealy=5s", http.StatusBadRequest, `unknown query parameter "dealy"`},
		{http.MethodPost, "/jobs?delay=1s", http.StatusBadRequest, `unknown query parameter "delay"`},
		{http.MethodGet, "/hello?delay=0s&delay=5s", http.StatusBadRequest, "given 2 times"},
		{http.MethodGet, "/nope?x=%zz", http.StatusNotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			rec := f.serve(tt.method, tt.target, "")
			if tt.code == http.StatusBadRequest {
				checkOneLineError(t, tt.method+" "+tt.target, rec, tt.code, tt.mention)
				return
			}
			if rec.Code != tt.code {
				t.Errorf("%s %s = %d; want %d (body %q)", tt.method, tt.target, rec.Code, tt.code, rec.Body.String())
			}
		})
	}
}

// limitsConfig is testConfig with the client bounds set.
func limitsConfig(body time.Duration) config.Config {
	cfg := testConfig()
	cfg.BodyTimeout, cfg.WriteTimeout = body, 5*time.Second
	return cfg
}

// startPost writes the headers of POST /jobs announcing a 10-byte body and
// the first 3 bytes of it, then stalls; it returns the connection.
func startPost(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := io.WriteString(conn, "POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"); err != nil {
		t.Fatal(err)
	}
	return conn
}

// readAnswer reads one response from conn, failing after 10 s.
func readAnswer(t *testing.T, conn net.Conn) *http.Response {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer to a stalled upload: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// TestStalledBodyTimesOut: a client that stops in the middle of its body gets
// 408 with Connection: close after the body timeout, and no job is taken.
func TestStalledBodyTimesOut(t *testing.T) {
	f := newFixture(t, limitsConfig(300*time.Millisecond))
	srv := httptest.NewServer(f.h)
	t.Cleanup(srv.Close)
	start := time.Now()
	resp := readAnswer(t, startPost(t, srv.Listener.Addr().String()))
	if resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
		t.Errorf("stalled upload = %d, close %t; want 408 with Connection: close", resp.StatusCode, resp.Close)
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("stalled upload answered after %s; want no sooner than the 300ms body timeout", d)
	}
	if got := f.q.Stats().Accepted; got != 0 {
		t.Errorf("queue accepted %d jobs; want 0", got)
	}
	if got := f.requestsTotal(t, "408"); got != 1 {
		t.Errorf(`lameduck_http_requests_total{code="408"} = %v; want 1`, got)
	}
	// A body that arrives in time is unaffected, and the slow /hello that
	// follows on the same connection is not bound by the body's deadline.
	c := srv.Client()
	resp, err := c.Post(srv.URL+"/jobs", "text/plain", strings.NewReader("x"))
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /jobs = %v, %v; want 202", resp, err)
	}
	resp.Body.Close()
	resp, err = c.Get(srv.URL + "/hello?delay=600ms")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /hello?delay=600ms after a POST on the same connection = %v, %v; want 200", resp, err)
	}
	resp.Body.Close()
}

// TestShortenEndsBodyReads: the shutdown pulls the body timeout in, for a
// body already arriving and for one that starts later.
func TestShortenEndsBodyReads(t *testing.T) {
	cfg := limitsConfig(time.Minute)
	f := newFixture(t, cfg)
	srv := httptest.NewServer(f.h)
	t.Cleanup(srv.Close)

	stalled := startPost(t, srv.Listener.Addr().String())
	waitFor(t, "the request in its handler", func() bool { return f.h.InFlight() == 1 })
	f.h.ShortenBodies(time.Now().Add(200 * time.Millisecond))
	if resp := readAnswer(t, stalled); resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("upload stalled when Shorten was called = %d; want 408", resp.StatusCode)
	}
	later := startPost(t, srv.Listener.Addr().String())
	if resp := readAnswer(t, later); resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("upload started after the cutoff = %d; want 408", resp.StatusCode)
	}
	waitFor(t, "no request in a handler", func() bool { return f.h.InFlight() == 0 })
}

// TestCutRequestsHaveTheirOwnCode: a request whose context the shutdown
// deadline cancels (server.ErrCut) counts in lameduck_http_requests_cut_total,
// not as a 200.
func TestCutRequestsHaveTheirOwnCode(t *testing.T) {
	f := newFixture(t, testConfig())
	base, cut := context.WithCancelCause(context.Background())
	defer cut(nil)
	srv := httptest.NewUnstartedServer(f.h)
	srv.Config.BaseContext = func(net.Listener) context.Context { return base }
	srv.Start()
	t.Cleanup(srv.Close)

	done := make(chan error, 1)
	go func() {
		resp, err := srv.Client().Get(srv.URL + "/hello?delay=10s")
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	waitFor(t, "the slow request in flight", func() bool { return f.inflight(t) == 1 })
	cut(server.ErrCut)
	srv.CloseClientConnections()
	<-done
	waitFor(t, "the cut request counted", func() bool { return f.inflight(t) == 0 })
	if got := f.requestsTotal(t, "cut"); got != 1 {
		t.Errorf(`lameduck_http_requests_cut_total = %v; want 1`, got)
	}
	if got := f.requestsTotal(t, "200"); got != 0 {
		t.Errorf(`lameduck_http_requests_total{code="200"} = %v; want 0 (the cut request is not a success)`, got)
	}
	counts, _ := durationCounts(t, f.metrics)
	if counts["/hello 200"] != 0 {
		t.Errorf(`lameduck_http_request_duration_seconds{route="/hello",code="200"}: %d samples; want 0`, counts["/hello 200"])
	}
}
