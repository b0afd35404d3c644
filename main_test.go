package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lameduck/lameduck/internal/child"
)

// binary is the lameduck binary built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() { // every test here drives the binary
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "lameduck-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary, err = child.Build(context.Background(), dir, "-race")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// skipShort skips tests that drive the whole binary under -short.
func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("drives the whole binary; skipped with -short")
	}
}

// proc is a running lameduck binary (child, shared with the rehearsal and
// the benchmarks) whose waits fail the test.
type proc struct {
	*child.Process
	t          *testing.T
	app, admin string // bound addresses, from the "serving" record
}

// startBinary runs lameduck with env (on free loopback ports unless env says
// otherwise) and waits until it serves.
func startBinary(t *testing.T, env ...string) *proc {
	t.Helper()
	p := startRaw(t, env...)
	rec := p.waitRecord("serving", 20*time.Second)
	p.app, p.admin = rec["http_addr"].(string), rec["admin_addr"].(string)
	return p
}

// startRaw runs lameduck with env without waiting for it to serve.
func startRaw(t *testing.T, env ...string) *proc {
	t.Helper()
	bp, err := child.Launch(binary, child.Config{Env: env})
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{Process: bp, t: t}
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("lameduck log (stdout and stderr):\n%s", p.Log())
		}
	})
	return p
}

// waitRecord waits for the first log record with msg and returns it.
func (p *proc) waitRecord(msg string, timeout time.Duration) map[string]any {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	r, err := p.WaitRecord(ctx, msg)
	if err != nil {
		p.t.Fatal(err)
	}
	return r
}

func (p *proc) find(msg string) map[string]any { return p.Find(msg) }

// all returns every record with msg.
func (p *proc) all(msg string) []map[string]any {
	var out []map[string]any
	for _, r := range p.All(msg) {
		out = append(out, r)
	}
	return out
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(timeout time.Duration) int {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	code, err := p.Wait(ctx)
	if err != nil {
		p.t.Fatal(err)
	}
	return code
}

func (p *proc) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
}

func (p *proc) stderrText() string { return p.Stderr() }

// status GETs url with a fresh connection and returns the status code, or
// the error.
func status(url string) (int, error) {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// postJob submits a job and returns its id.
func postJob(t *testing.T, c *http.Client, base, work string) string {
	t.Helper()
	resp, err := c.Post(base+"/jobs?work="+work, "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatalf("POST /jobs: %v", err)
	}
	defer resp.Body.Close()
	var body struct{ ID string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /jobs = %d (decode: %v); want 202 with an id", resp.StatusCode, err)
	}
	return body.ID
}

func summary(t *testing.T, p *proc) map[string]float64 {
	t.Helper()
	rec := p.waitRecord("shutdown complete", 5*time.Second)
	out := map[string]float64{}
	for _, k := range []string{"jobs_accepted", "jobs_processed", "jobs_dropped", "requests_cut",
		"requests_after_signal", "connections_peak", "connections_refused", "requests_refused", "requests_late",
		"prestop_seconds", "prestop_last_arrival_seconds", "http_seconds", "queue_seconds", "total_seconds"} {
		v, ok := rec[k].(float64)
		if !ok {
			t.Fatalf("shutdown complete record lacks %s: %v", k, rec)
		}
		out[k] = v
	}
	return out
}

func refused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

// TestShutdownSequence drives the whole sequence on the real binary: an
// in-flight slow request and queued jobs survive SIGTERM, readiness flips at
// once while liveness stays green, responses during the preStop delay carry
// Connection: close, jobs posted during it are accepted and processed, a new
// connection after it is answered 503 (late) and one after the exit is
// refused, and the exit is clean and prompt.
func TestShutdownSequence(t *testing.T) {
	skipShort(t)
	t.Parallel()
	const prestop = 1500 * time.Millisecond
	p := startBinary(t, "LAMEDUCK_PRESTOP_DELAY=1.5s", "LAMEDUCK_SHUTDOWN_TIMEOUT=6s",
		"LAMEDUCK_DRAIN_TIMEOUT=4s", "LAMEDUCK_GRACE_PERIOD=13s", "LAMEDUCK_WORKERS=2")
	app, admin := "http://"+p.app, "http://"+p.admin
	if code, err := status(admin + "/ready"); code != 200 {
		t.Fatalf("/ready before SIGTERM = %d, %v; want 200", code, err)
	}

	// A keep-alive client with a pooled connection, and work in flight.
	keep := &http.Client{Timeout: 10 * time.Second}
	var ids []string
	for range 6 {
		ids = append(ids, postJob(t, keep, app, "300ms"))
	}
	type answer struct {
		code  int
		body  string
		err   error
		at    time.Time
		close bool // the response carried Connection: close
	}
	get := func(url string, out chan<- answer) {
		resp, err := http.Get(url)
		if err != nil {
			out <- answer{err: err, at: time.Now()}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		out <- answer{code: resp.StatusCode, body: string(b), err: err, at: time.Now(), close: resp.Close}
	}
	// slow ends after the preStop delay, during Shutdown; early ends within it.
	slow, early := make(chan answer, 1), make(chan answer, 1)
	go get(app+"/hello?delay=3s", slow)
	go get(app+"/hello?delay=700ms", early)
	// Both are in flight once the server counts them.
	waitFor(t, 5*time.Second, "two requests in flight", func() bool {
		return metric(t, admin, "lameduck_http_inflight_requests") >= 2
	})

	signalled := time.Now()
	p.signal(syscall.SIGTERM)

	// 1. Readiness fails at once; liveness does not.
	waitFor(t, 2*time.Second, "/ready 503", func() bool {
		code, _ := status(admin + "/ready")
		return code == http.StatusServiceUnavailable
	})
	if flip := time.Since(signalled); flip > 500*time.Millisecond {
		t.Errorf("/ready turned 503 after %s; want within 100 ms (500 ms tolerance on a busy machine)", flip)
	}
	if code, err := status(admin + "/live"); code != 200 {
		t.Errorf("/live while draining = %d, %v; want 200", code, err)
	}

	// 2. During the preStop delay: still serving, keep-alives off, jobs accepted.
	resp, err := keep.Get(app + "/hello")
	if err != nil {
		t.Fatalf("GET /hello during preStop: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	// net/http moves a "Connection: close" response header into resp.Close.
	if resp.StatusCode != 200 || !resp.Close {
		t.Errorf("GET /hello during preStop = %d, close %t; want 200 with Connection: close", resp.StatusCode, resp.Close)
	}
	ids = append(ids, postJob(t, keep, app, "300ms"))

	// 3. After the delay a request is late: a new connection is answered 503
	// at once, with Retry-After and Connection: close, not refused (the
	// listener stays open until the exit).
	p.waitRecord("prestop ended", prestop+3*time.Second)
	if ended := time.Since(signalled); ended < prestop-50*time.Millisecond {
		t.Errorf("the preStop delay ended %s after SIGTERM; want no sooner than %s", ended, prestop)
	}
	if code, err := status(app + "/hello"); code != http.StatusServiceUnavailable {
		t.Errorf("GET /hello on a new connection after the preStop delay = %d, %v; want 503, late", code, err)
	}

	// The in-flight requests still get their answers. Both were in flight
	// at the signal: their answers must still turn keep-alive off, or their
	// connections would go back to the pool and be closed under the
	// client's next request.
	e := <-early
	if e.err != nil || e.code != 200 || !e.close {
		t.Errorf("/hello?delay=700ms in flight at SIGTERM = %d, %v, close %t; want 200 with Connection: close", e.code, e.err, e.close)
	}
	if e.at.Sub(signalled) >= prestop {
		t.Logf("the 700 ms request ended %s after SIGTERM, after the preStop delay: its check proves less", e.at.Sub(signalled))
	}
	a := <-slow
	if a.err != nil || a.code != 200 || a.body != "hello\n" || !a.close {
		t.Errorf("in-flight /hello?delay=3s = %d %q, %v, close %t; want 200 hello with Connection: close", a.code, a.body, a.err, a.close)
	}

	// 4, 5. Every job processed, clean exit, honest summary, prompt exit.
	if code := p.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit code = %d; want 0", code)
	}
	exited := time.Since(signalled)
	s := summary(t, p)
	if s["jobs_accepted"] != float64(len(ids)) || s["jobs_processed"] != float64(len(ids)) ||
		s["jobs_dropped"] != 0 || s["requests_cut"] != 0 {
		t.Errorf("summary = %v; want %d accepted and processed, 0 dropped, 0 cut", s, len(ids))
	}
	if s["requests_after_signal"] < 2 {
		t.Errorf("requests_after_signal = %v; want at least 2", s["requests_after_signal"])
	}
	if s["requests_late"] != 1 {
		t.Errorf("requests_late = %v; want 1", s["requests_late"])
	}
	if _, err := status(app + "/hello"); !refused(err) {
		t.Errorf("GET /hello after the exit: %v; want connection refused", err)
	}
	processed := map[string]bool{}
	for _, r := range p.all("job processed") {
		processed[r["job_id"].(string)] = true
	}
	for _, id := range ids {
		if !processed[id] {
			t.Errorf("job %s was accepted but never logged as processed", id)
		}
	}
	// The slow request ends about 3 s after it started; the jobs finish well
	// before that. Exit must follow within a small margin, not at the sum of
	// the timeouts (1.5 + 6 + 4 s).
	if lastWork := a.at.Sub(signalled); exited > lastWork+2*time.Second {
		t.Errorf("exited %s after SIGTERM, %s after the last request finished; want within 2 s", exited, exited-lastWork)
	}
}

// TestIdleExitsAfterPrestop: an idle service exits right after the preStop
// delay, not after the sum of the timeouts.
func TestIdleExitsAfterPrestop(t *testing.T) {
	skipShort(t)
	t.Parallel()
	p := startBinary(t, "LAMEDUCK_PRESTOP_DELAY=500ms")
	signalled := time.Now()
	p.signal(syscall.SIGINT)
	if code := p.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit code = %d; want 0", code)
	}
	if d := time.Since(signalled); d < 500*time.Millisecond || d > 2500*time.Millisecond {
		t.Errorf("idle exit took %s; want the preStop delay 500ms plus at most 2s", d)
	}
	summary(t, p)
}

// TestSecondSignalAborts: a second signal during the sequence exits at once
// with code 130, after logging what it abandons: the queued job, and the
// request it cut, which counts as code="cut", not as the 200 its handler
// would have written.
// getOnce sends GET path on a connection of its own and returns why no
// answer came, or "answered CODE". Not http.Client: its transport sends a
// GET again, on a new connection, when the first closes unanswered.
func getOnce(addr, path string, timeout time.Duration) error {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: lameduck\r\n\r\n", path); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return fmt.Errorf("answered %d", resp.StatusCode)
}

func TestSecondSignalAborts(t *testing.T) {
	skipShort(t)
	t.Parallel()
	p := startBinary(t, "LAMEDUCK_PRESTOP_DELAY=20s", "LAMEDUCK_SHUTDOWN_TIMEOUT=5s", "LAMEDUCK_DRAIN_TIMEOUT=25s",
		"LAMEDUCK_GRACE_PERIOD=60s", "LAMEDUCK_WORKERS=1", "LAMEDUCK_MAX_WORK=20s")
	id := postJob(t, &http.Client{Timeout: 5 * time.Second}, "http://"+p.app, "20s")
	slow := make(chan error, 1)
	go func() { // ends when the abort closes its connection, or by the deadline
		slow <- getOnce(p.app, "/hello?delay=4s", 10*time.Second)
	}()
	waitFor(t, 5*time.Second, "the slow request in flight", func() bool {
		return metric(t, "http://"+p.admin, "lameduck_http_inflight_requests") >= 1
	})
	p.signal(syscall.SIGTERM)
	p.waitRecord("shutdown started", 5*time.Second)
	waitOutRepeat()
	second := time.Now()
	p.signal(syscall.SIGTERM)
	if code := p.wait(10 * time.Second); code != 130 {
		t.Fatalf("exit code = %d; want 130", code)
	}
	if d := time.Since(second); d > 3*time.Second {
		t.Errorf("exit took %s after the second signal; want at once (under 3 s)", d)
	}
	rec := p.waitRecord("shutdown aborted", time.Second)
	if rec["jobs_dropped"] != 1.0 || rec["requests_cut"] != 1.0 {
		t.Errorf("shutdown aborted record = %v; want jobs_dropped 1, requests_cut 1", rec)
	}
	want := map[string]any{"202": 1.0, "cut": 1.0}
	if got := rec["requests_by_code"]; !reflect.DeepEqual(got, want) {
		t.Errorf("requests_by_code = %v; want %v (the cut request counted as cut, not 200)", got, want)
	}
	if err := <-slow; err == nil || strings.Contains(err.Error(), "answered") {
		t.Errorf("the cut request: %v; want its connection closed unanswered", err)
	}
	if d := p.waitRecord("job dropped", time.Second); d["job_id"] != id {
		t.Errorf("job dropped record = %v; want job_id %s", d, id)
	}
}

// TestBadConfigExits2: bad configuration stops the program before it
// listens, with exit code 2 and a message naming the variable.
func TestBadConfigExits2(t *testing.T) {
	skipShort(t)
	t.Parallel()
	tests := []struct {
		name, env, want string
	}{
		{"unparsable duration", "LAMEDUCK_PRESTOP_DELAY=soon", "LAMEDUCK_PRESTOP_DELAY"},
		{"negative size", "LAMEDUCK_QUEUE_SIZE=-1", "LAMEDUCK_QUEUE_SIZE"},
		{"zero workers", "LAMEDUCK_WORKERS=0", "LAMEDUCK_WORKERS"},
		{"unknown log level", "LAMEDUCK_LOG_LEVEL=loud", "LAMEDUCK_LOG_LEVEL"},
		{"budget over grace period", "LAMEDUCK_GRACE_PERIOD=4s", "LAMEDUCK_GRACE_PERIOD"},
		{"delay the shutdown cannot wait for", "LAMEDUCK_MAX_DELAY=30s", "LAMEDUCK_MAX_DELAY: 30s does not fit LAMEDUCK_SHUTDOWN_TIMEOUT"},
		{"work a drain cannot finish", "LAMEDUCK_MAX_WORK=30s", "LAMEDUCK_MAX_WORK: 30s does not fit LAMEDUCK_DRAIN_TIMEOUT"},
		{"default job a drain cannot finish", "LAMEDUCK_JOB_DURATION=30s", "LAMEDUCK_JOB_DURATION: 30s does not fit LAMEDUCK_DRAIN_TIMEOUT"},
		{"typo", "LAMEDUCK_PRESTOPDELAY=1s", "did you mean LAMEDUCK_PRESTOP_DELAY"},
		{"octal-looking", "LAMEDUCK_WORKERS=010", "LAMEDUCK_WORKERS"},
		{"invalid address", "LAMEDUCK_HTTP_ADDR=localhost", "LAMEDUCK_HTTP_ADDR"},
		{"zero ttl", "LAMEDUCK_IDEMPOTENCY_TTL=0s", "LAMEDUCK_IDEMPOTENCY_TTL"},
		{"zero drain", "LAMEDUCK_DRAIN_TIMEOUT=0s", "LAMEDUCK_DRAIN_TIMEOUT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := startRaw(t, tt.env)
			if code := p.wait(10 * time.Second); code != 2 {
				t.Fatalf("exit code = %d; want 2", code)
			}
			if stderr := p.stderrText(); !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr = %q; want it to name %s", stderr, tt.want)
			}
			if p.find("serving") != nil {
				t.Errorf("it served despite the bad configuration")
			}
		})
	}
}

// TestHelpListsVariables: -h prints every variable with its default.
func TestHelpListsVariables(t *testing.T) {
	skipShort(t)
	t.Parallel()
	out, err := exec.Command(binary, "-h").Output()
	if err != nil {
		t.Fatalf("lameduck -h: %v", err)
	}
	for _, want := range []string{"LAMEDUCK_HTTP_ADDR", "LAMEDUCK_PRESTOP_DELAY", "LAMEDUCK_GRACE_PERIOD", "30s", "LAMEDUCK_WORKERS"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("lameduck -h output lacks %q:\n%s", want, out)
		}
	}
}

// waitFor polls cond every 5 ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := child.Until(ctx, 5*time.Millisecond, cond); err != nil {
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}

// metric reads one unlabelled sample from the admin /metrics.
func metric(t *testing.T, admin, name string) float64 {
	t.Helper()
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err == nil {
				return f
			}
		}
	}
	t.Fatalf("/metrics has no sample %s", name)
	return 0
}

// TestOverloadLosesNothing is issue #10 at the default configuration: jobs
// offered at 5× what the workers can do (4 workers × 50 ms = 80 jobs/s; the
// load asks 400/s), then SIGTERM while the load goes on. Every 202 must be
// processed (exit 0, 0 dropped), and every answer must be a 202, a 400 (asked
// for on purpose: ?work= and ?delay= the shutdown could not finish) or a 503
// with an honest Retry-After; after the preStop delay, every answer is the
// late one (503, Retry-After: 1, Connection: close), counted exactly in
// requests_late. "until the listener closes" is the hard case: the queue
// closes with a backlog at the admission's limit, and the drain must finish
// it within LAMEDUCK_DRAIN_TIMEOUT while the load goes on, answered late.
func TestOverloadLosesNothing(t *testing.T) {
	skipShort(t)
	t.Parallel()
	const (
		capacity = 80 // jobs/s: LAMEDUCK_WORKERS (4) / LAMEDUCK_JOB_DURATION (50ms)
		rate     = 5 * capacity
		before   = 4 * time.Second // of load before SIGTERM
		prestop  = 5 * time.Second // LAMEDUCK_PRESTOP_DELAY's default
		drain    = 5 * time.Second // LAMEDUCK_DRAIN_TIMEOUT's default
	)
	tests := []struct {
		name  string
		after time.Duration // of load after SIGTERM; the listener closes at the exit
	}{
		{"load goes on 2s after SIGTERM", 2 * time.Second},
		{"load goes on until the listener closes", time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startBinary(t) // the defaults; only the addresses differ
			admin := "http://" + p.admin
			l := startOverload(t, "http://"+p.app, rate)
			time.Sleep(before) // the load runs meanwhile; nothing here waits for a state
			backlog := metric(t, admin, "lameduck_jobs_backlog_seconds")
			signalled := time.Now()
			p.signal(syscall.SIGTERM)
			r := l.stopAfter(signalled, tt.after)

			code := p.wait(prestop + 15*time.Second + drain + 10*time.Second)
			s := summary(t, p)
			t.Logf("offered %d requests at %.0f/s: %d accepted (202), %d refused (503), %d bad requests (400), %d late (503); backlog %.2fs at SIGTERM; shutdown %v",
				r.sent, r.rate, len(r.ids), r.unavailable, r.bad, r.late, backlog, s)
			if code != 0 {
				t.Errorf("exit code = %d; want 0", code)
			}
			if r.rate < 3*capacity {
				t.Errorf("the load reached %.0f jobs/s; want at least 3× capacity (%d/s) for the test to mean anything", r.rate, 3*capacity)
			}
			if r.unavailable < len(r.ids) {
				t.Errorf("%d answers 503, %d 202; want more refused than accepted at 5× capacity", r.unavailable, len(r.ids))
			}
			// The exit's account names why each job was refused; every 503
			// the client saw is one of them.
			rejected, _ := p.waitRecord("shutdown complete", time.Second)["jobs_rejected"].(map[string]any)
			var byReason float64
			for _, reason := range []string{"full", "budget", "closed"} {
				n, ok := rejected[reason].(float64)
				if !ok {
					t.Errorf("shutdown complete's jobs_rejected lacks %q: %v", reason, rejected)
				}
				byReason += n
			}
			if int(byReason) != r.unavailable {
				t.Errorf("jobs_rejected %v adds up to %.0f; want the %d answers 503 the client saw", rejected, byReason, r.unavailable)
			}
			if s["requests_late"] != float64(r.late) {
				t.Errorf("requests_late = %v; want the %d late answers the client saw", s["requests_late"], r.late)
			}
			if backlog <= 4 || backlog > 4.75 {
				t.Errorf("lameduck_jobs_backlog_seconds under overload = %v; want near the 4.75 s drain budget, never over it", backlog)
			}
			if s["jobs_dropped"] != 0 || s["requests_cut"] != 0 || s["jobs_accepted"] != float64(len(r.ids)) ||
				s["jobs_processed"] != float64(len(r.ids)) {
				t.Errorf("summary = %v; want %d accepted and processed (the 202s answered), 0 dropped, 0 cut", s, len(r.ids))
			}
			var slowest time.Duration
			processed := map[string]bool{}
			for _, rec := range p.all("job processed") {
				processed[rec["job_id"].(string)] = true
				if d, err := time.ParseDuration(rec["latency"].(string)); err == nil && d > slowest {
					slowest = d
				}
			}
			var lost []string
			for _, id := range r.ids {
				if !processed[id] {
					lost = append(lost, id)
				}
			}
			if len(lost) > 0 {
				t.Errorf("%d jobs answered 202 were never processed, the first %s", len(lost), lost[0])
			}
			if n := r.dishonest.Load(); n > 0 {
				t.Errorf("%d answers 503 had no Retry-After between 1 and 5 s", n)
			}
			// Admission counts on finishing each job within the 4.75 s drain
			// budget of its acceptance; on a starved machine the workers run
			// late (5.12 s seen with all of make test on 2 cores). What must
			// hold is the above: nothing dropped. This is the measurement.
			t.Logf("slowest job: %s from enqueue to processed (drain budget 4.75s); queue phase %.2fs", slowest, s["queue_seconds"])
		})
	}
}

// overload is a bounded load on POST /jobs: a fixed number of clients share
// one schedule of rate requests a second. One request in 25 asks ?work=30s
// and one in 50 is GET /hello?delay=30s, both beyond what a shutdown can
// finish: each must be a 400.
type overload struct {
	t         *testing.T
	stop      chan struct{}
	wg        sync.WaitGroup
	started   time.Time
	stopped   atomic.Int64 // unix nanoseconds when the listener was found closed, or 0
	dishonest atomic.Int64 // 503s without a Retry-After within the budget

	mu                           sync.Mutex
	ids                          []string
	sent, bad, unavailable, late int
	rate                         float64
}

const overloadClients = 16

func startOverload(t *testing.T, base string, rate int) *overload {
	t.Helper()
	l := &overload{t: t, stop: make(chan struct{}), started: time.Now()}
	tr := &http.Transport{MaxIdleConnsPerHost: overloadClients}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	interval := time.Second / time.Duration(rate)
	var next atomic.Int64
	for range overloadClients {
		l.wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if d := time.Until(l.started.Add(time.Duration(i) * interval)); d > 0 {
					select {
					case <-time.After(d):
					case <-l.stop:
						return
					}
				}
				select {
				case <-l.stop:
					return
				default:
				}
				if !l.one(c, base, i) {
					return
				}
			}
		})
	}
	return l
}

// one sends request i and records its answer; false once the listener has
// closed.
func (l *overload) one(c *http.Client, base string, i int64) bool {
	var resp *http.Response
	var err error
	kind := "POST /jobs"
	switch {
	case i%50 == 49:
		kind = "GET /hello?delay=30s"
		resp, err = c.Get(base + "/hello?delay=30s")
	case i%25 == 24:
		kind = "POST /jobs?work=30s"
		resp, err = c.Post(base+"/jobs?work=30s", "application/json", strings.NewReader(`{}`))
	default:
		resp, err = c.Post(base+"/jobs", "application/json", strings.NewReader(`{}`))
	}
	if err != nil {
		// At the exit the listener closes: that ends the load.
		if refused(err) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) {
			l.stopped.CompareAndSwap(0, time.Now().UnixNano())
			return false
		}
		l.t.Errorf("%s: %v", kind, err)
		return false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sent++
	switch {
	case isLate(resp, body): // after the preStop delay, whatever was asked
		l.late++
	case kind != "POST /jobs":
		if resp.StatusCode != http.StatusBadRequest || strings.Count(string(body), "\n") != 1 {
			l.t.Errorf("%s = %d %q; want 400 with a one-line reason", kind, resp.StatusCode, body)
		}
		l.bad++
	case resp.StatusCode == http.StatusAccepted:
		var job struct{ ID string }
		if err := json.Unmarshal(body, &job); err != nil || job.ID == "" {
			l.t.Errorf("POST /jobs = 202 %q; want an id", body)
		}
		l.ids = append(l.ids, job.ID)
	case resp.StatusCode == http.StatusServiceUnavailable:
		// The backlog has room again within one job's time, and never later
		// than the 4.75 s drain budget.
		ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
		if (err != nil || ra < 1 || ra > 5) && l.dishonest.Add(1) == 1 {
			l.t.Errorf("POST /jobs = 503 with Retry-After %q; want whole seconds between 1 and 5 (only the first such answer is reported)", resp.Header.Get("Retry-After"))
		}
		l.unavailable++
	default:
		l.t.Errorf("POST /jobs = %d %q; want 202 or 503", resp.StatusCode, body)
	}
	return true
}

// stopAfter ends the load d after signalled, or when the listener closes, and
// returns what it saw; rate is over the time the load ran.
func (l *overload) stopAfter(signalled time.Time, d time.Duration) *overload {
	l.t.Helper()
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-time.After(time.Until(signalled.Add(d))):
	case <-done: // every client saw the listener closed
	}
	close(l.stop)
	<-done
	end := time.Now()
	if ns := l.stopped.Load(); ns != 0 {
		end = time.Unix(0, ns)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rate = float64(l.sent) / end.Sub(l.started).Seconds()
	return l
}
