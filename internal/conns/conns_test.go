package conns_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/lameduck/lameduck/internal/conns"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// serve runs an http.Server with t's cap on loopback; GET /slow waits
// until release closes.
func serve(t *testing.T, max int, release <-chan struct{}) (*conns.Tracker, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr := conns.New(max, prometheus.NewRegistry())
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/slow" {
				<-release
			}
			_, _ = io.WriteString(w, "ok")
		}),
		ConnState:         tr.Hook,
		ReadHeaderTimeout: time.Minute,
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(tr.Listener(ln))
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return tr, ln.Addr().String()
}

type client struct {
	c net.Conn
	r *bufio.Reader
}

// dial opens a connection and, unless path is empty, sends GET path on it
// (and, unless wait is false, reads the answer).
func dial(t *testing.T, addr, path string, wait bool) client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	k := client{c, bufio.NewReader(c)}
	if path != "" {
		if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		if wait {
			k.answer(t)
		}
	}
	return k
}

func (k client) answer(t *testing.T) {
	t.Helper()
	_ = k.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(k.r, nil)
	if err != nil {
		t.Fatalf("reading an answer: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("answer = %d; want 200", resp.StatusCode)
	}
}

// closed reports whether the server closed k within d.
func (k client) closed(d time.Duration) bool {
	_ = k.c.SetReadDeadline(time.Now().Add(d))
	_, err := k.r.ReadByte()
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return err != nil
}

// waitOpen waits until tr counts n connections open.
func waitOpen(t *testing.T, tr *conns.Tracker, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for tr.Open() != n {
		if time.Now().After(deadline) {
			t.Fatalf("open connections = %d; want %d", tr.Open(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestLongestIdleYieldFirst: at the reserve, a newcomer reclaims the 32
// connections idle longest, and no other.
func TestLongestIdleYieldFirst(t *testing.T) {
	const max = 48 // reserve 3: reclaiming starts at 45 open
	tr, addr := serve(t, max, nil)
	var idle []client
	for range 45 {
		idle = append(idle, dial(t, addr, "/", true))
		for tr.Busy() != 0 { // idle in this order: net/http marks it just after its answer went out
			time.Sleep(time.Millisecond)
		}
	}
	waitOpen(t, tr, 45)
	dial(t, addr, "/", true) // the newcomer, served
	for i, k := range idle {
		if got, want := k.closed(100*time.Millisecond), i < 32; got != want {
			t.Errorf("idle connection %d of 45 closed %t; want %t (the 32 idle longest yield)", i+1, got, want)
		}
	}
	if got := tr.Reclaimed()[conns.ReasonIdle]; got != 32 {
		t.Errorf("reclaimed idle = %v; want 32", got)
	}
}

// TestWhoYields: at the cap, which connections yield to a newcomer.
func TestWhoYields(t *testing.T) {
	for _, tc := range []struct {
		name    string
		make    func(t *testing.T, addr string) client // the one connection besides the busy ones
		settle  time.Duration                          // how long it exists before the newcomer
		yields  bool
		reason  string
		refused bool // the newcomer is refused
	}{
		{"idle keep-alive", func(t *testing.T, addr string) client { return dial(t, addr, "/", true) }, 0, true, conns.ReasonIdle, false},
		{"serving a request", func(t *testing.T, addr string) client { return dial(t, addr, "/slow", false) }, 100 * time.Millisecond, false, "", true},
		{"silent within its share", func(t *testing.T, addr string) client { return dial(t, addr, "", false) }, 0, false, "", true},
		{"silent past its share", func(t *testing.T, addr string) client { return dial(t, addr, "", false) }, conns.HeaderShare + 100*time.Millisecond, true, conns.ReasonHeader, false},
		{"half a header past its share", func(t *testing.T, addr string) client {
			k := dial(t, addr, "", false)
			_, _ = io.WriteString(k.c, "GET / HTTP/1.1\r\nHost: x\r\n")
			return k
		}, conns.HeaderShare + 100*time.Millisecond, true, conns.ReasonHeader, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			tr, addr := serve(t, 3, release)
			var busy []client
			for range 2 {
				busy = append(busy, dial(t, addr, "/slow", false))
			}
			k := tc.make(t, addr)
			waitOpen(t, tr, 3)
			if tc.reason == conns.ReasonIdle { // net/http marks it idle just after its answer went out
				deadline := time.Now().Add(10 * time.Second)
				for tr.Busy() != 2 && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
			}
			time.Sleep(tc.settle)
			start := time.Now()
			newcomer := dial(t, addr, "/", false)
			if tc.refused {
				if !newcomer.closed(5 * time.Second) {
					t.Fatalf("newcomer not closed with every slot busy")
				}
				if took := time.Since(start); took > time.Second {
					t.Errorf("newcomer refused after %s; want at once", took)
				}
			} else {
				newcomer.answer(t)
			}
			if got := k.closed(200 * time.Millisecond); got != tc.yields {
				t.Errorf("the connection closed %t; want %t", got, tc.yields)
			}
			for reason, got := range tr.Reclaimed() {
				if want := map[bool]float64{true: 1}[reason == tc.reason]; got != want {
					t.Errorf("reclaimed %s = %v; want %v", reason, got, want)
				}
			}
			if got := tr.Refused(); (got > 0) != tc.refused {
				t.Errorf("refused = %v; want refused %t", got, tc.refused)
			}
			close(release)
			for _, b := range busy {
				b.answer(t) // never cut to make room
			}
		})
	}
}

// slowListener's connections pause before their second socket read, as a
// throttled process may between two reads.
type slowListener struct {
	net.Listener
	pause time.Duration
}

func (l slowListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &slowConn{Conn: c, pause: l.pause}, nil
}

type slowConn struct {
	net.Conn
	pause time.Duration
	reads int
}

func (c *slowConn) Read(p []byte) (int, error) {
	if c.reads++; c.reads == 2 {
		time.Sleep(c.pause)
	}
	return c.Conn.Read(p)
}

// TestWholeRequestAfterHeaderDeadline: a request that arrived whole before
// the header deadline is answered, even when the server reads it only after
// the deadline, with HTTP/1.1 and h2c served on one port: net/http's h2c
// detection reads 14 bytes first, and a second socket read past the
// deadline would make it answer 400 to the valid request.
func TestWholeRequestAfterHeaderDeadline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr := conns.New(10, prometheus.NewRegistry())
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }),
		ConnState:         tr.Hook,
		Protocols:         &protocols,
		ReadHeaderTimeout: 100 * time.Millisecond,
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(tr.Listener(slowListener{ln, 300 * time.Millisecond}))
	}()
	defer func() {
		_ = srv.Close()
		<-done
	}()
	k := dial(t, ln.Addr().String(), "", false)
	if _, err := io.WriteString(k.c, "GET /hello HTTP/1.1\r\nHost: lameduck\r\nUser-Agent: a-valid-client\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = k.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(k.r, nil)
	if err != nil {
		t.Fatalf("a whole request read after the header deadline: %v; want 200", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("a whole request read after the header deadline = %d; want 200", resp.StatusCode)
	}
}

// TestDetachReattach: Detach ends the Serve of the server that used the
// listener without closing the socket; a connection made meanwhile waits in
// the backlog and is answered by the server given Reattach's listener. Its
// connections are late: under the cap (Open), but not in Busy or Remaining,
// while a connection of the first server still counts until it closes.
// LastArrival moves with every connection, whichever server takes it.
func TestDetachReattach(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	tr := conns.New(10, prometheus.NewRegistry())
	release := make(chan struct{})
	handler := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/slow" {
				<-release
			}
			_, _ = io.WriteString(w, name)
		})
	}
	first := &http.Server{Handler: handler("first"), ConnState: tr.Hook}
	late := &http.Server{Handler: handler("late"), ConnState: tr.Hook}
	appLn := tr.Listener(ln)
	served := make(chan error, 1)
	go func() { served <- first.Serve(appLn) }()
	defer first.Close()

	if !tr.LastArrival().IsZero() {
		t.Errorf("LastArrival() before any connection = %v; want the zero time", tr.LastArrival())
	}
	busy := dial(t, addr, "/slow", false) // in flight on the first server throughout
	waitUntil(t, "the first server's request in flight", func() bool { return tr.Busy() == 1 })
	before := tr.LastArrival()

	if err := appLn.Detach(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-served:
		if err != http.ErrServerClosed {
			t.Fatalf("Serve after Detach = %v; want http.ErrServerClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return within 5s of Detach")
	}
	// Serve closed its listener as it returned: the socket must stay open.
	waiting, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatalf("dial after Detach = %v; want the connection to wait in the backlog", err)
	}
	defer waiting.Close()
	if _, err := io.WriteString(waiting, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}

	lateLn, err := appLn.Reattach()
	if err != nil {
		t.Fatal(err)
	}
	lateDone := make(chan struct{})
	go func() {
		defer close(lateDone)
		_ = late.Serve(lateLn)
	}()
	w := client{waiting, bufio.NewReader(waiting)}
	_ = waiting.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(w.r, nil)
	if err != nil {
		t.Fatalf("the connection made while detached: %v; want it answered", err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 16))
	resp.Body.Close()
	if string(body) != "late" {
		t.Errorf("the connection made while detached was answered %q; want %q, by the late server", body, "late")
	}
	if !tr.LastArrival().After(before) {
		t.Errorf("LastArrival() = %v after a late connection; want after %v", tr.LastArrival(), before)
	}

	idle := dial(t, addr, "/slow", false) // a late connection, busy in its handler
	waitUntil(t, "both connections open", func() bool { return tr.Open() == 3 })
	if got := tr.Busy(); got != 1 {
		t.Errorf("Busy() = %d with one request in flight on each server; want 1: late connections are not waited for", got)
	}
	if got := tr.Remaining(); got != 1 {
		t.Errorf("Remaining() = %d; want 1, the first server's connection", got)
	}
	close(release)
	busy.answer(t)
	idle.answer(t)
	_ = first.Close()
	waitUntil(t, "the first server's connection closed", func() bool { return tr.Remaining() == 0 })

	// Closing the late server closes the socket at last.
	_ = late.Close()
	<-lateDone
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("dial after the late server closed: connected; want refused")
	}
}

// waitUntil polls cond every millisecond for at most 5 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestCloseIdle: CloseIdle closes the connections idle between requests and
// leaves one serving a request, which is answered; it counts what it closed.
func TestCloseIdle(t *testing.T) {
	release := make(chan struct{})
	tr, addr := serve(t, 10, release)
	idle := dial(t, addr, "/", true)
	busy := dial(t, addr, "/slow", false)
	waitUntil(t, "one idle, one busy", func() bool { return tr.Open() == 2 && tr.Busy() == 1 })
	if n := tr.CloseIdle(); n != 1 {
		t.Errorf("CloseIdle() = %d; want 1, the idle connection", n)
	}
	_ = idle.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := idle.r.ReadByte(); err != io.EOF {
		t.Errorf("read on the idle connection after CloseIdle = %v; want EOF, closed", err)
	}
	close(release)
	busy.answer(t)
	waitUntil(t, "the idle connection gone", func() bool { return tr.Open() == 1 })
}
