package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/lameduck/lameduck/internal/config"
	"github.com/lameduck/lameduck/internal/conns"
)

// lockoutConns is LAMEDUCK_MAX_CONNS in the lockout tests: small, so that
// four times it, and the newcomers, stay far from the test's file limit.
const lockoutConns = 64

// newcomers opens n fresh connections, at most 8 at a time, each sending
// one GET /hello and keeping its connection open after the answer when
// keep is set; it returns how many were answered 200 within 1 s of their
// dial, and the slowest answer.
func newcomers(t *testing.T, addr string, n int, keep bool) (served int, slowest time.Duration) {
	t.Helper()
	var ok atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			start := time.Now()
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				return
			}
			if keep {
				t.Cleanup(func() { c.Close() })
			} else {
				defer c.Close()
			}
			_, _ = c.Write([]byte(hello))
			resp, err := answer(c, bufio.NewReader(c), 2*time.Second)
			took := time.Since(start)
			mu.Lock()
			slowest = max(slowest, took)
			mu.Unlock()
			if err == nil && resp.StatusCode == http.StatusOK && took <= time.Second {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	return int(ok.Load()), slowest
}

// trickle opens a connection that sends a header block one byte every
// 100 ms and never finishes it (a slowloris), until the test ends or the
// server closes it.
func trickle(t *testing.T, addr string, stop <-chan struct{}) {
	t.Helper()
	c, r := rawConn(t, addr)
	go func() { // ends when the server closes the connection, or at stop
		block := "GET /hello HTTP/1.1\r\nHost: lameduck\r\nX-Slow: " + strings.Repeat("a", 4000)
		for i := 0; i < len(block); i++ {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if _, err := c.Write([]byte{block[i]}); err != nil {
				return
			}
		}
	}()
	_ = r
}

// TestIdleConnectionsYield is issue #20: a client holding 4 ×
// LAMEDUCK_MAX_CONNS idle keep-alive connections, and 50 connections that
// trickle a header block, lock nobody out: 200 fresh connections, one
// request each, are answered within 1 s; the connections open never pass the
// cap; the exit after SIGTERM is 0 with nothing dropped, and its account
// says how many connections were reclaimed and why.
func TestIdleConnectionsYield(t *testing.T) {
	skipShort(t)
	t.Parallel()
	p := startBinary(t, fmt.Sprintf("LAMEDUCK_MAX_CONNS=%d", lockoutConns), "LAMEDUCK_PRESTOP_DELAY=0s",
		"LAMEDUCK_READ_HEADER_TIMEOUT=60s", "LAMEDUCK_IDLE_TIMEOUT=10m")
	admin := "http://" + p.admin

	// The hold: 4 × the cap of idle keep-alive connections, each answered
	// once, then silent.
	held, _ := newcomers(t, p.app, 4*lockoutConns, true)
	if held < 4*lockoutConns*99/100 {
		t.Fatalf("holding: %d of %d keep-alive connections answered within 1 s; want at least 99%%", held, 4*lockoutConns)
	}
	stop := make(chan struct{})
	defer close(stop)
	for range 50 {
		trickle(t, p.app, stop)
	}
	time.Sleep(conns.HeaderShare + 200*time.Millisecond) // the trickling ones had their fair share

	served, slowest := newcomers(t, p.app, 200, true)
	if served < 198 {
		t.Errorf("%d of 200 fresh connections answered 200 within 1 s (slowest %s) while idle and half-sent ones held the cap; want at least 198",
			served, slowest.Round(time.Millisecond))
	}
	if open := metric(t, admin, "lameduck_http_connections"); open > lockoutConns {
		t.Errorf("lameduck_http_connections = %v; want at most LAMEDUCK_MAX_CONNS %d", open, lockoutConns)
	}
	idle := metric(t, admin, `lameduck_http_connections_reclaimed_total{reason="idle"}`)
	header := metric(t, admin, `lameduck_http_connections_reclaimed_total{reason="header"}`)
	if idle < 1 || header < 1 {
		t.Errorf("lameduck_http_connections_reclaimed_total: idle %v, header %v; want both at least 1", idle, header)
	}
	heap := metric(t, admin, "go_memstats_heap_inuse_bytes")
	cfg := config.Config{MaxConns: lockoutConns, MaxRequests: 256, MaxHeaderBytes: 8192, IdempotencyMaxBytes: 4 << 20, QueueSize: 1000}
	if budget := config.MemoryTotal(cfg.MemoryWorstCase()); heap > float64(budget) {
		t.Errorf("Go heap in use %.1f MiB; want within the memory budget at this configuration, %.1f MiB", heap/(1<<20), float64(budget)/(1<<20))
	}
	t.Logf("newcomers: %d of 200 within 1 s (slowest %s); reclaimed idle %v, header %v; heap in use %.1f MiB",
		served, slowest.Round(time.Millisecond), idle, header, heap/(1<<20))

	p.signal(syscall.SIGTERM)
	if code := p.wait(20 * time.Second); code != 0 {
		t.Errorf("exit code = %d; want 0\n%s", code, p.stderrText())
	}
	sum := summary(t, p)
	if sum["jobs_dropped"] != 0 || sum["requests_cut"] != 0 {
		t.Errorf("shutdown complete: jobs_dropped %v, requests_cut %v; want 0, 0", sum["jobs_dropped"], sum["requests_cut"])
	}
	if sum["connections_peak"] > lockoutConns {
		t.Errorf("shutdown complete: connections_peak %v; want at most %d", sum["connections_peak"], lockoutConns)
	}
}

// TestEverySlotActiveRefuses: when every slot carries a request in flight,
// a newcomer is closed at once (within 100 ms, not after a hang) and
// counted; the requests in flight are not cut to make room, and finish.
func TestEverySlotActiveRefuses(t *testing.T) {
	skipShort(t)
	t.Parallel()
	const slots = 4
	p := startBinary(t, fmt.Sprintf("LAMEDUCK_MAX_CONNS=%d", slots), "LAMEDUCK_PRESTOP_DELAY=0s")
	admin := "http://" + p.admin
	type held struct {
		c net.Conn
		r *bufio.Reader
	}
	var busy []held
	for range slots {
		c, r := rawConn(t, p.app)
		send(t, c, "GET /hello?delay=3s HTTP/1.1\r\nHost: lameduck\r\n\r\n")
		busy = append(busy, held{c, r})
	}
	waitFor(t, 5*time.Second, "every slot serving a request", func() bool {
		return metric(t, admin, "lameduck_http_inflight_requests") == slots
	})
	c, r := rawConn(t, p.app)
	start := time.Now()
	send(t, c, hello)
	if !closedWithin(c, r, time.Second) {
		t.Fatalf("a newcomer with every slot serving a request was not closed within 1 s")
	}
	if took := time.Since(start); took > 100*time.Millisecond {
		t.Errorf("a newcomer with every slot serving a request was closed after %s; want within 100 ms", took.Round(time.Millisecond))
	}
	if n := metric(t, admin, "lameduck_http_connections_refused_total"); n < 1 {
		t.Errorf("lameduck_http_connections_refused_total = %v; want at least 1", n)
	}
	for i, h := range busy {
		if resp, err := answer(h.c, h.r, 10*time.Second); err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("request in flight %d: %v, %v; want 200 (never cut to make room)", i+1, resp, err)
		}
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(20 * time.Second); code != 0 {
		t.Errorf("exit code = %d; want 0", code)
	}
	if sum := summary(t, p); sum["connections_refused"] < 1 {
		t.Errorf("shutdown complete: connections_refused %v; want at least 1", sum["connections_refused"])
	}
}

// TestIdleH2CConnectionsYield: h2c connections that hold no stream yield to
// newcomers as keep-alive HTTP/1.1 ones do, each after a GOAWAY (NO_ERROR)
// that names no stream, so that a client knows to open a new connection.
func TestIdleH2CConnectionsYield(t *testing.T) {
	skipShort(t)
	t.Parallel()
	p := startBinary(t, fmt.Sprintf("LAMEDUCK_MAX_CONNS=%d", lockoutConns), "LAMEDUCK_PRESTOP_DELAY=0s",
		"LAMEDUCK_IDLE_TIMEOUT=10m")
	var dials atomic.Int64
	for i := range lockoutConns / 2 { // Go's h2c clients, each its own connection, answered once, then idle
		c := h2cClient(&dials)
		if a := h2cDo(c, http.MethodGet, "http://"+p.app+"/hello"); a.err != nil || a.code != http.StatusOK || a.proto != 2 {
			t.Fatalf("h2c client %d: %d (HTTP/%d), %v; want 200 over HTTP/2", i+1, a.code, a.proto, a.err)
		}
		t.Cleanup(c.CloseIdleConnections)
	}
	var raw []*rawH2C // connections that never open a stream, nor close on a GOAWAY
	for range lockoutConns / 2 {
		raw = append(raw, dialRawH2C(t, p.app))
	}
	waitFor(t, 5*time.Second, "the server's SETTINGS on every raw h2c connection", func() bool {
		for _, r := range raw {
			r.mu.Lock()
			n := len(r.frames)
			r.mu.Unlock()
			if n == 0 {
				return false
			}
		}
		return true
	})
	served, slowest := newcomers(t, p.app, 100, true) // kept open: every idle one must yield
	if served < 99 {
		t.Errorf("%d of 100 fresh connections answered 200 within 1 s (slowest %s) while idle h2c connections held the cap; want at least 99",
			served, slowest.Round(time.Millisecond))
	}
	if n := metric(t, "http://"+p.admin, `lameduck_http_connections_reclaimed_total{reason="idle"}`); n < lockoutConns/2 {
		t.Errorf(`lameduck_http_connections_reclaimed_total{reason="idle"} = %v; want at least %d`, n, lockoutConns/2)
	}
	for i, r := range raw {
		select {
		case <-r.done:
		case <-time.After(5 * time.Second):
			t.Fatalf("raw h2c connection %d still open after the newcomers; want it reclaimed", i+1)
		}
		r.mu.Lock()
		if r.goAway == nil || r.goAway.ErrCode != http2.ErrCodeNo || r.goAway.LastStreamID != 0 {
			t.Errorf("raw h2c connection %d ended (%v) after GOAWAY %v; want a GOAWAY NO_ERROR, last stream 0, first", i+1, r.end, r.goAway)
		}
		r.mu.Unlock()
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(20 * time.Second); code != 0 {
		t.Errorf("exit code = %d; want 0", code)
	}
}
