package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lameduck/lameduck/internal/app"
)

// These tests drive the real binary with hostile clients (issue #11): every
// per-client resource is bounded, a slow client is timed out rather than cut,
// signals do not lose work, and bad configuration is refused.

// rawConn dials the app and returns the connection and a reader on it.
func rawConn(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

// send writes s on c.
func send(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// answer reads one response within timeout; nil and the error when the
// connection ends without one.
func answer(c net.Conn, r *bufio.Reader, timeout time.Duration) (*http.Response, error) {
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		return nil, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp, nil
}

// closedWithin reports whether the server closes c, without answering,
// within timeout.
func closedWithin(c net.Conn, r *bufio.Reader, timeout time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	_, err := r.ReadByte()
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return err != nil
}

// waitOutRepeat waits until a signal sent now is no repeat of one sent
// before it (app.RepeatWindow): the rule is about time, so the wait is too.
func waitOutRepeat() { time.Sleep(app.RepeatWindow + 50*time.Millisecond) }

const hello = "GET /hello HTTP/1.1\r\nHost: lameduck\r\n\r\n"

// TestConnectionCap: with LAMEDUCK_MAX_CONNS connections each serving a
// request, one more is closed at once and counted; the admin listener is
// not limited; a freed slot serves again.
func TestConnectionCap(t *testing.T) {
	skipShort(t)
	t.Parallel()
	p := startBinary(t, "LAMEDUCK_MAX_CONNS=3", "LAMEDUCK_PRESTOP_DELAY=0s")
	var held []net.Conn
	for range 3 {
		c, _ := rawConn(t, p.app)
		send(t, c, "GET /hello?delay=2s HTTP/1.1\r\nHost: lameduck\r\n\r\n")
		held = append(held, c)
	}
	waitFor(t, 5*time.Second, "three requests in flight", func() bool {
		return metric(t, "http://"+p.admin, "lameduck_http_inflight_requests") == 3
	})
	over, r := rawConn(t, p.app)
	send(t, over, hello)
	if resp, err := answer(over, r, 5*time.Second); err == nil {
		t.Errorf("a 4th connection with LAMEDUCK_MAX_CONNS=3 serving requests was answered %d; want it closed unanswered", resp.StatusCode)
	}
	if n := metric(t, "http://"+p.admin, "lameduck_http_connections_refused_total"); n < 1 {
		t.Errorf("lameduck_http_connections_refused_total = %v; want at least 1", n)
	}
	for range 5 { // the admin listener, which the kubelet probes, is not limited
		if code, err := status("http://" + p.admin + "/ready"); code != 200 {
			t.Fatalf("/ready with the app connections at the cap = %d, %v; want 200", code, err)
		}
	}
	held[0].Close()
	waitFor(t, 5*time.Second, "a freed slot to serve a new connection", func() bool {
		code, _ := status("http://" + p.app + "/hello")
		return code == 200
	})
	p.signal(syscall.SIGTERM)
	if code := p.wait(10 * time.Second); code != 0 {
		t.Errorf("exit code = %d; want 0", code)
	}
	// The exit's account says how close to the cap the process came and
	// what the cap refused: no scrape reads it once the process is gone.
	sum := p.find("shutdown complete")
	if refused, _ := sum["connections_refused"].(float64); sum["connections_peak"] != 3.0 || refused < 1 {
		t.Errorf("shutdown complete: connections_peak %v, connections_refused %v; want 3 and at least 1",
			sum["connections_peak"], sum["connections_refused"])
	}
}

// TestSlowClientsAreTimedOut: idle connections, slow headers and oversized
// headers are ended by their bounds.
func TestSlowClientsAreTimedOut(t *testing.T) {
	skipShort(t)
	t.Parallel()
	p := startBinary(t, "LAMEDUCK_IDLE_TIMEOUT=500ms", "LAMEDUCK_READ_HEADER_TIMEOUT=500ms",
		"LAMEDUCK_MAX_HEADER_BYTES=1024", "LAMEDUCK_PRESTOP_DELAY=0s")

	idle, r := rawConn(t, p.app)
	send(t, idle, hello)
	if _, err := answer(idle, r, 5*time.Second); err != nil {
		t.Fatalf("GET /hello: %v", err)
	}
	if !closedWithin(idle, r, 5*time.Second) {
		t.Errorf("an idle keep-alive connection with LAMEDUCK_IDLE_TIMEOUT=500ms is still open after 5s")
	}

	slow, r := rawConn(t, p.app)
	send(t, slow, "GET /hello HTTP/1.1\r\nHost: lameduck\r\nX-Slow: ")
	if !closedWithin(slow, r, 5*time.Second) {
		t.Errorf("a connection stuck in its headers with LAMEDUCK_READ_HEADER_TIMEOUT=500ms is still open after 5s")
	}

	big, r := rawConn(t, p.app)
	send(t, big, "GET /hello HTTP/1.1\r\nHost: lameduck\r\nX-Big: "+strings.Repeat("b", 8<<10)+"\r\n\r\n")
	if resp, err := answer(big, r, 5*time.Second); err != nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("8 KiB of headers with LAMEDUCK_MAX_HEADER_BYTES=1024 = %v, %v; want 431", resp, err)
	}

	bad, r := rawConn(t, p.app)
	send(t, bad, "GET /hello?delay=%zz HTTP/1.1\r\nHost: lameduck\r\n\r\n")
	if resp, err := answer(bad, r, 5*time.Second); err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("GET /hello?delay=%%zz = %v, %v; want 400", resp, err)
	}

	p.signal(syscall.SIGTERM)
	if code := p.wait(10 * time.Second); code != 0 {
		t.Errorf("exit code = %d; want 0", code)
	}
}

// TestStalledUploadIsNotCut: a client stalled in the middle of its body at
// SIGTERM is answered 408 by a timeout, not cut by the shutdown deadline, and
// the exit stays 0: whether the body timeout is the shorter (it ends the
// upload) or the shutdown is (it pulls the body timeout in).
func TestStalledUploadIsNotCut(t *testing.T) {
	skipShort(t)
	t.Parallel()
	tests := []struct {
		name string
		env  []string
	}{
		{"body timeout first", []string{"LAMEDUCK_BODY_TIMEOUT=1s", "LAMEDUCK_SHUTDOWN_TIMEOUT=8s"}},
		{"shutdown first", []string{"LAMEDUCK_BODY_TIMEOUT=30s", "LAMEDUCK_SHUTDOWN_TIMEOUT=3s", "LAMEDUCK_MAX_DELAY=2s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := startBinary(t, append(tt.env, "LAMEDUCK_PRESTOP_DELAY=0s")...)
			c, r := rawConn(t, p.app)
			send(t, c, "POST /jobs HTTP/1.1\r\nHost: lameduck\r\nContent-Length: 100\r\n\r\n{\"half\":")
			waitFor(t, 5*time.Second, "the upload in flight", func() bool {
				return metric(t, "http://"+p.admin, "lameduck_http_inflight_requests") >= 1
			})
			signalled := time.Now()
			p.signal(syscall.SIGTERM)
			resp, err := answer(c, r, 15*time.Second)
			if err != nil || resp.StatusCode != http.StatusRequestTimeout {
				t.Errorf("stalled upload at SIGTERM = %v, %v; want 408", resp, err)
			}
			if code := p.wait(15 * time.Second); code != 0 {
				t.Errorf("exit code = %d; want 0 (a stalled client is not lost work)", code)
			}
			if s := summary(t, p); s["requests_cut"] != 0 || s["jobs_accepted"] != 0 {
				t.Errorf("summary = %v; want 0 cut, 0 accepted", s)
			}
			t.Logf("stalled upload: exit %s after SIGTERM", time.Since(signalled).Round(time.Millisecond))
		})
	}
}

// TestClientThatStopsReadingIsNotCut: a client that pipelines requests and
// never reads the answers fills the socket buffers until the server's write
// blocks. At SIGTERM that connection is no request in a handler, so it is
// not cut: LAMEDUCK_WRITE_TIMEOUT closes it, the HTTP phase ends then (not at
// the shutdown deadline) and the exit stays 0.
func TestClientThatStopsReadingIsNotCut(t *testing.T) {
	skipShort(t)
	t.Parallel()
	const (
		writeTimeout    = 5 * time.Second
		shutdownTimeout = 15 * time.Second
		requests        = 200_000 // ~8 MB of requests, ~30 MB of answers: more than loopback buffers hold
	)
	p := startBinary(t, "LAMEDUCK_PRESTOP_DELAY=0s", "LAMEDUCK_WRITE_TIMEOUT="+writeTimeout.String(),
		"LAMEDUCK_SHUTDOWN_TIMEOUT="+shutdownTimeout.String())
	start := time.Now()
	c, _ := rawConn(t, p.app)
	sent := make(chan error, 1)
	go func() { // ends when the server closes the connection (or the test's cleanup does)
		_, err := io.WriteString(c, strings.Repeat("GET /hello HTTP/1.1\r\nHost: lameduck\r\n\r\n", requests))
		sent <- err
	}()
	answered := func() float64 {
		return metric(t, "http://"+p.admin, `lameduck_http_requests_total{code="200",route="/hello"}`)
	}
	// Stalled: the server has answered some, and no more for a second (a
	// server starved of CPU pauses too, but not for that long; and if it
	// only paused, the test still holds: it then closes the connection after
	// its next answer, which carries Connection: close).
	last, changed, polled := -1.0, time.Now(), time.Time{}
	waitFor(t, 60*time.Second, "the server's writes to stall", func() bool {
		if time.Since(polled) < 100*time.Millisecond {
			return false // scrape at most ten times a second: the scrapes compete with the server
		}
		polled = time.Now()
		if n := answered(); n != last {
			last, changed = n, polled
		}
		return last > 0 && time.Since(changed) > time.Second
	})
	t.Logf("stalled at %.0f answers after %s", last, time.Since(start).Round(time.Millisecond))
	if last >= requests {
		t.Fatalf("the server answered all %d requests without the client reading: nothing stalled", requests)
	}
	select {
	case err := <-sent:
		t.Fatalf("the stalled connection ended before SIGTERM (%v): nothing left to test", err)
	default:
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(shutdownTimeout + 10*time.Second); code != 0 {
		t.Errorf("exit code = %d; want 0 (a client that stops reading is not lost work)", code)
	}
	s := summary(t, p)
	if s["requests_cut"] != 0 {
		t.Errorf("requests_cut = %v; want 0", s["requests_cut"])
	}
	// The write timeout, not the shutdown deadline, ended the HTTP phase.
	if got, most := s["http_seconds"], (shutdownTimeout - 3*time.Second).Seconds(); got > most {
		t.Errorf("the HTTP phase took %.1fs; want it ended by LAMEDUCK_WRITE_TIMEOUT=%s, well before the %s deadline (under %.0fs)",
			got, writeTimeout, shutdownTimeout, most)
	}
	if err := <-sent; err == nil {
		t.Errorf("every request went out; want the server to close the stalled connection")
	}
	t.Logf("HTTP phase %.2fs; done after %s", s["http_seconds"], time.Since(start).Round(time.Millisecond))
}

// TestKeysBoundedInBytes: the Idempotency-Key store keeps within
// LAMEDUCK_IDEMPOTENCY_MAX_BYTES, forgetting the oldest keys, and says so.
func TestKeysBoundedInBytes(t *testing.T) {
	skipShort(t)
	t.Parallel()
	p := startBinary(t, "LAMEDUCK_IDEMPOTENCY_MAX_BYTES=4096", "LAMEDUCK_PRESTOP_DELAY=0s")
	c := &http.Client{Timeout: 5 * time.Second}
	post := func(key string) string {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, "http://"+p.app+"/jobs?work=0s", strings.NewReader("{}"))
		req.Header.Set("Idempotency-Key", key)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("POST /jobs: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("POST /jobs = %d %s; want 202", resp.StatusCode, b)
		}
		return string(b)
	}
	key := func(i int) string { return fmt.Sprintf("%0256d", i) }
	var ids []string
	for i := range 20 {
		ids = append(ids, post(key(i)))
	}
	if n := metric(t, "http://"+p.admin, "lameduck_idempotency_bytes"); n > 4096 || n < 2048 {
		t.Errorf("lameduck_idempotency_bytes = %v; want at most 4096 and the store in use", n)
	}
	if n := metric(t, "http://"+p.admin, "lameduck_idempotency_keys"); n >= 20 || n < 1 {
		t.Errorf("lameduck_idempotency_keys = %v; want fewer than the 20 posted", n)
	}
	if again := post(key(19)); again != ids[19] {
		t.Errorf("the newest key answered %s; want its first id %s", again, ids[19])
	}
	if again := post(key(0)); again == ids[0] {
		t.Errorf("the oldest key was still remembered past the byte bound; want it forgotten")
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(10 * time.Second); code != 0 {
		t.Errorf("exit code = %d; want 0", code)
	}
}

// TestSignalsLoseNothing: SIGHUP drains like SIGTERM; a SIGTERM repeated at
// once (as kill to a process group, or timeout(1), delivers it) does not
// abort; SIGQUIT dumps the goroutines and the service keeps serving.
func TestSignalsLoseNothing(t *testing.T) {
	skipShort(t)
	t.Parallel()
	tests := []struct {
		name    string
		signals []syscall.Signal
	}{
		{"SIGHUP", []syscall.Signal{syscall.SIGHUP}},
		{"SIGTERM twice at once", []syscall.Signal{syscall.SIGTERM, syscall.SIGTERM}},
		{"SIGQUIT then SIGTERM", []syscall.Signal{syscall.SIGQUIT, syscall.SIGTERM}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := startBinary(t, "LAMEDUCK_PRESTOP_DELAY=300ms", "LAMEDUCK_WORKERS=1")
			id := postJob(t, &http.Client{Timeout: 5 * time.Second}, "http://"+p.app, "500ms")
			var first time.Time
			for i, sig := range tt.signals {
				if sig == syscall.SIGTERM || sig == syscall.SIGHUP {
					if i > 0 && tt.signals[i-1] == sig {
						// Standard signals pending together merge into one: send
						// the repeat only once the process has taken the first.
						p.waitRecord("shutdown started", 5*time.Second)
						if gap := time.Since(first); gap > 200*time.Millisecond {
							t.Skipf("the repeat went out %s after the first signal, too close to the %s window on this busy machine", gap, app.RepeatWindow)
						}
					}
					first = time.Now()
					p.signal(sig)
					continue
				}
				p.signal(sig) // SIGQUIT: a dump, then still serving
				waitFor(t, 5*time.Second, "the goroutine dump", func() bool {
					return strings.Contains(p.stderrText(), "goroutine ")
				})
				if code, err := status("http://" + p.admin + "/ready"); code != 200 {
					t.Fatalf("/ready after SIGQUIT = %d, %v; want 200 (still serving)", code, err)
				}
			}
			if code := p.wait(15 * time.Second); code != 0 {
				t.Fatalf("exit code = %d; want 0", code)
			}
			if s := summary(t, p); s["jobs_processed"] != 1 || s["jobs_dropped"] != 0 {
				t.Errorf("summary = %v; want the job %s processed", s, id)
			}
		})
	}
}
