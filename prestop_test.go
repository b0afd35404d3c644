package main

import (
	"bufio"
	"fmt"
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

// The adaptive preStop delay (#25) and the late arrivals after it, on the
// real binary. The timings asserted are the binary's own: the seconds its
// "prestop ended" and "shutdown complete" records give, measured on one
// clock from the start of its shutdown, so that a busy machine delays what
// the test sees without moving what it checks.

// prestopLate is how much later than due the delay may end on a busy
// machine: its timer's lateness, and the scheduling of the goroutine that
// waits for it.
const prestopLate = 100 * time.Millisecond

// steady is a bounded load of GET /hello: a fixed number of clients, each
// sending one request every interval, a new connection whenever the last
// response said Connection: close (every response after SIGTERM does). It
// counts the answers by kind; any other answer or error fails the test.
type steady struct {
	t    *testing.T
	stop chan struct{}
	wg   sync.WaitGroup

	ok, late atomic.Int64 // 200s; late 503s (Retry-After: 1, Connection: close, no body)
	mu       sync.Mutex
	lastSent time.Time // when the last request was sent
}

func startSteady(t *testing.T, addr string, clients int, interval time.Duration) *steady {
	t.Helper()
	l := &steady{t: t, stop: make(chan struct{})}
	tr := &http.Transport{MaxIdleConnsPerHost: clients}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	for range clients {
		l.wg.Go(func() {
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for {
				select {
				case <-l.stop:
					return
				case <-tick.C:
				}
				l.mu.Lock()
				l.lastSent = time.Now()
				l.mu.Unlock()
				l.one(c, "http://"+addr+"/hello")
			}
		})
	}
	return l
}

func (l *steady) one(c *http.Client, url string) {
	resp, err := c.Get(url)
	if err != nil {
		l.t.Errorf("GET /hello: %v; want an answer (200, or 503 late) while the process runs", err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	switch {
	case resp.StatusCode == http.StatusOK:
		l.ok.Add(1)
	case isLate(resp, body):
		l.late.Add(1)
	default:
		l.t.Errorf("GET /hello = %d %q (Retry-After %q, close %t); want 200, or 503 late", resp.StatusCode, body,
			resp.Header.Get("Retry-After"), resp.Close)
	}
}

// end stops the load and waits for its requests in flight; it returns when
// the last request was sent.
func (l *steady) end() time.Time {
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastSent
}

// isLate reports whether resp is the answer to a late arrival: 503,
// Retry-After: 1, Connection: close, no body.
func isLate(resp *http.Response, body []byte) bool {
	return resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "1" &&
		resp.Close && len(body) == 0
}

// prestopEnded waits for the "prestop ended" record and returns how the
// delay ended, how long it lasted and when, since the shutdown started, the
// last connection or request arrived during it.
func prestopEnded(p *proc, timeout time.Duration) (end string, took, last time.Duration) {
	p.t.Helper()
	rec := p.waitRecord("prestop ended", timeout)
	end, _ = rec["prestop_end"].(string)
	s, ok1 := rec["prestop_seconds"].(float64)
	a, ok2 := rec["prestop_last_arrival_seconds"].(float64)
	if !ok1 || !ok2 {
		p.t.Fatalf("prestop ended record lacks its seconds: %v", rec)
	}
	return end, time.Duration(s * float64(time.Second)), time.Duration(a * float64(time.Second))
}

// TestPrestopEndsAfterQuiet: with an adaptive delay (a minimum, a quiet
// period, a maximum), a steady load that ends after the minimum ends the
// delay one quiet period after its last request arrived (and no more than
// 100 ms later); one that ends before the minimum ends it at the minimum,
// never sooner. Either way nothing is late, and the exit is clean.
func TestPrestopEndsAfterQuiet(t *testing.T) {
	skipShort(t)
	t.Parallel()
	const (
		least = 700 * time.Millisecond
		quiet = 400 * time.Millisecond
	)
	tests := []struct {
		name  string
		after time.Duration // of load after SIGTERM
		want  string        // how the delay ends
	}{
		{"load ends after the minimum", 1500 * time.Millisecond, "quiet"},
		{"load ends before the minimum", 100 * time.Millisecond, "minimum"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := startBinary(t, "LAMEDUCK_PRESTOP_MIN="+least.String(), "LAMEDUCK_PRESTOP_QUIET="+quiet.String(),
				"LAMEDUCK_PRESTOP_DELAY=8s")
			l := startSteady(t, p.app, 4, 20*time.Millisecond)
			time.Sleep(300 * time.Millisecond) // steady before the signal; nothing here waits for a state
			signalled := time.Now()
			p.signal(syscall.SIGTERM)
			time.Sleep(time.Until(signalled.Add(tt.after)))
			lastSent := l.end()

			end, took, last := prestopEnded(p, 10*time.Second)
			t.Logf("load for %s after SIGTERM (last request sent %s after it): the delay ended (%s) after %s, %s after the last arrival at %s",
				tt.after, lastSent.Sub(signalled).Round(time.Millisecond), end, took, took-last, last)
			if end != tt.want {
				t.Errorf("prestop_end = %q; want %q", end, tt.want)
			}
			if took < least {
				t.Errorf("the delay lasted %s; want at least the minimum %s", took, least)
			}
			switch tt.want {
			case "quiet":
				// The last arrival is the load's last request: it was sent
				// after the load's last interval began.
				if sent := lastSent.Sub(signalled); last < tt.after-250*time.Millisecond || last > sent+prestopLate {
					t.Errorf("the last arrival was %s after the shutdown began; want the load's last request, sent %s after SIGTERM",
						last, sent)
				}
				if took-last < quiet || took-last > quiet+prestopLate {
					t.Errorf("the delay ended %s after the last arrival; want the quiet period %s, at most %s more",
						took-last, quiet, prestopLate)
				}
			case "minimum":
				if took > least+prestopLate {
					t.Errorf("the delay lasted %s; want the minimum %s, at most %s more", took, least, prestopLate)
				}
			}
			if code := p.wait(10 * time.Second); code != 0 {
				t.Errorf("exit code = %d; want 0", code)
			}
			s := summary(t, p)
			if s["requests_late"] != 0 || l.late.Load() != 0 {
				t.Errorf("requests_late = %v, the client saw %d late answers; want 0: the load stopped before the delay ended",
					s["requests_late"], l.late.Load())
			}
			if l.ok.Load() == 0 {
				t.Errorf("no request was answered 200: the load sent nothing")
			}
		})
	}
}

// TestPrestopEndsAtMaximum: a load that never stops keeps the delay going
// to its maximum, not one moment more; what it sends afterwards, while the
// queue drains, is answered late (503, Retry-After, Connection: close),
// never refused or reset, and the account counts those answers exactly.
func TestPrestopEndsAtMaximum(t *testing.T) {
	skipShort(t)
	t.Parallel()
	const most = 1500 * time.Millisecond
	p := startBinary(t, "LAMEDUCK_PRESTOP_MIN=300ms", "LAMEDUCK_PRESTOP_QUIET=500ms", "LAMEDUCK_PRESTOP_DELAY="+most.String(),
		"LAMEDUCK_WORKERS=1")
	// One worker with 4 s of work keeps the process in its shutdown (the
	// queue phase) well after the delay: the load ends before it exits.
	c := &http.Client{Timeout: 5 * time.Second}
	for range 4 {
		postJob(t, c, "http://"+p.app, "1s")
	}
	l := startSteady(t, p.app, 4, 20*time.Millisecond)
	time.Sleep(200 * time.Millisecond) // steady before the signal; nothing here waits for a state
	p.signal(syscall.SIGTERM)

	end, took, last := prestopEnded(p, 10*time.Second)
	time.Sleep(300 * time.Millisecond) // late arrivals, while the queue drains
	l.end()
	t.Logf("the delay ended (%s) after %s, the last arrival at %s; the client saw %d answered, %d late",
		end, took, last, l.ok.Load(), l.late.Load())
	if end != "maximum" {
		t.Errorf("prestop_end = %q; want %q", end, "maximum")
	}
	if took < most || took > most+prestopLate {
		t.Errorf("the delay lasted %s; want the maximum %s, at most %s more", took, most, prestopLate)
	}
	if code := p.wait(10 * time.Second); code != 0 {
		t.Errorf("exit code = %d; want 0", code)
	}
	s := summary(t, p)
	if l.late.Load() == 0 {
		t.Errorf("the client saw no late answer; want some: the load went on after the delay")
	}
	if s["requests_late"] != float64(l.late.Load()) {
		t.Errorf("requests_late = %v; want the %d late answers the client saw", s["requests_late"], l.late.Load())
	}
	if s["jobs_processed"] != 4 || s["jobs_dropped"] != 0 || s["requests_cut"] != 0 {
		t.Errorf("summary = %v; want 4 jobs processed, 0 dropped, 0 cut", s)
	}
}

// TestLateArrivalAnswered: as the preStop delay ends, connections idle since
// before the signal close (HTTP/2: after a GOAWAY), at once, not at the end
// of the HTTP phase; after it, while the process still finishes its work (a
// request in flight; or a queue draining), whatever arrives is answered at
// once with 503, Retry-After: 1 and Connection: close, and takes no job: a
// new HTTP/1.1 connection (GET and POST /jobs), a keep-alive client's next
// request (its pooled connection closed), and an h2c stream, whose
// connection also gets a GOAWAY (its client's next request dials anew). The
// HTTP phase does not wait for them, they are counted in requests_late, the
// exit is clean, and only after it is a connection refused.
func TestLateArrivalAnswered(t *testing.T) {
	skipShort(t)
	t.Parallel()
	tests := []struct {
		name string
		busy func(t *testing.T, p *proc) <-chan error // keeps the shutdown going after the delay
	}{
		{"while a request in flight finishes", func(t *testing.T, p *proc) <-chan error {
			done := make(chan error, 1)
			go func() { done <- getStatus("http://"+p.app+"/hello?delay=3s", http.StatusOK) }()
			waitFor(t, 5*time.Second, "the slow request in flight", func() bool {
				return metric(t, "http://"+p.admin, "lameduck_http_inflight_requests") >= 1
			})
			return done
		}},
		{"while the queue drains", func(t *testing.T, p *proc) <-chan error {
			c := &http.Client{Timeout: 5 * time.Second}
			for range 3 {
				postJob(t, c, "http://"+p.app, "1s")
			}
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := startBinary(t, "LAMEDUCK_PRESTOP_DELAY=500ms", "LAMEDUCK_WORKERS=1")
			addr := p.app
			idle := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
			if err := getStatusWith(idle, "http://"+addr+"/hello", http.StatusOK); err != nil {
				t.Fatal(err) // its connection stays in idle's pool, idle, from here on
			}
			rawIdle := dialIdle(t, addr)  // HTTP/1.1, answered once, idle from before the signal
			rawH2C := dialRawH2C(t, addr) // h2c, idle from before the signal
			slow := tt.busy(t, p)
			signalled := time.Now()
			p.signal(syscall.SIGTERM)
			if end, took, _ := prestopEnded(p, 10*time.Second); end != "fixed" || took < 500*time.Millisecond {
				t.Errorf("the delay ended (%s) after %s; want fixed, after 500ms", end, took)
			}
			// The idle connections close as the delay ends, not when the HTTP
			// phase does (with a request in flight, 2.5 s later).
			_ = rawIdle.SetReadDeadline(time.Now().Add(time.Second))
			if n, err := rawIdle.Read(make([]byte, 1)); n != 0 || err != io.EOF {
				t.Errorf("the HTTP/1.1 connection idle since before SIGTERM, read after the delay = %d, %v; want EOF within 1s, closed", n, err)
			}
			goAway := func() *http2.GoAwayFrame {
				rawH2C.mu.Lock()
				defer rawH2C.mu.Unlock()
				return rawH2C.goAway
			}
			waitFor(t, time.Second, "a GOAWAY on the h2c connection idle since before SIGTERM", func() bool { return goAway() != nil })
			if g := goAway(); g.ErrCode != http2.ErrCodeNo || g.LastStreamID != 0 {
				t.Errorf("the idle h2c connection's GOAWAY = %v, last stream %d; want NO_ERROR, 0", g.ErrCode, g.LastStreamID)
			}

			// Each late arrival: the answer, its headers, and that it took no job.
			late := 0
			check := func(what string, resp *http.Response, err error) {
				t.Helper()
				if err != nil {
					t.Errorf("%s after the delay: %v; want 503, not a refused or reset connection", what, err)
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if !isLate(resp, body) {
					t.Errorf("%s after the delay = %d %q, Retry-After %q, close %t; want 503, Retry-After 1, Connection: close, no body",
						what, resp.StatusCode, body, resp.Header.Get("Retry-After"), resp.Close)
					return
				}
				late++
			}
			fresh := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			resp, err := fresh.Get("http://" + addr + "/hello")
			check("GET /hello on a new connection", resp, err)
			resp, err = fresh.Post("http://"+addr+"/jobs", "application/json", strings.NewReader(`{}`))
			check("POST /jobs on a new connection", resp, err)
			resp, err = idle.Get("http://" + addr + "/hello")
			check("GET /hello of a keep-alive client whose connection closed as the delay ended", resp, err)

			var dials atomic.Int64
			h2 := h2cClient(&dials)
			defer h2.CloseIdleConnections()
			for i := range 2 {
				a := h2cDo(h2, http.MethodGet, "http://"+addr+"/hello")
				if a.err != nil || a.code != http.StatusServiceUnavailable || a.proto != 2 {
					t.Errorf("h2c GET /hello %d after the delay = %d HTTP/%d, %v; want 503 over HTTP/2", i+1, a.code, a.proto, a.err)
					continue
				}
				late++
			}
			if d := dials.Load(); d != 2 {
				t.Errorf("the h2c client dialled %d connections for its two late requests; want 2: a GOAWAY with each 503", d)
			}
			lateDone := time.Now()

			if slow != nil {
				if err := <-slow; err != nil {
					t.Errorf("the request in flight at SIGTERM: %v", err)
				}
			}
			if code := p.wait(15 * time.Second); code != 0 {
				t.Errorf("exit code = %d; want 0", code)
			}
			s := summary(t, p)
			t.Logf("late answers sent by %s after SIGTERM; shutdown: %v", lateDone.Sub(signalled).Round(time.Millisecond), s)
			if s["requests_late"] != float64(late) {
				t.Errorf("requests_late = %v; want the %d late answers seen", s["requests_late"], late)
			}
			jobs := 0.0
			if slow == nil {
				jobs = 3
			}
			if s["jobs_accepted"] != jobs || s["jobs_processed"] != jobs || s["jobs_dropped"] != 0 || s["requests_cut"] != 0 {
				t.Errorf("summary = %v; want %v jobs accepted and processed (the late POST took none), 0 dropped, 0 cut", s, jobs)
			}
			if slow != nil && s["http_seconds"] > 3 {
				// The slow request, in flight at SIGTERM, ends 3 s after it
				// began; the late connections must not hold the phase open.
				t.Errorf("http_seconds = %v; want the HTTP phase to end with the request in flight (within 2.5 s of the delay's end)", s["http_seconds"])
			}
			if _, err := net.DialTimeout("tcp", addr, time.Second); !refused(err) {
				t.Errorf("dial after the exit = %v; want connection refused", err)
			}
		})
	}
}

// dialIdle opens a connection, has one GET /hello answered on it, and
// leaves it open and idle.
func dialIdle(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, "GET /hello HTTP/1.1\r\nHost: lameduck\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("GET /hello = %d, close %t; want 200 with the connection kept", resp.StatusCode, resp.Close)
	}
	return c
}

// getStatus GETs url on a new connection and reports an error unless the
// answer is want.
func getStatus(url string, want int) error {
	return getStatusWith(&http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}, url, want)
}

func getStatusWith(c *http.Client, url string, want int) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != want {
		return fmt.Errorf("GET %s = %d; want %d", url, resp.StatusCode, want)
	}
	return nil
}
