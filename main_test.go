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
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
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
	binary = filepath.Join(dir, "lameduck")
	build := exec.Command("go", "build", "-race", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build lameduck:", err)
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

// proc is a running lameduck binary and its JSON log.
type proc struct {
	t     *testing.T
	cmd   *exec.Cmd
	start time.Time

	mu      sync.Mutex
	records []map[string]any
	stderr  bytes.Buffer
	changed chan struct{} // closed and replaced on each new record
	exited  chan struct{} // closed when the process has exited
	code    int

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

func startRaw(t *testing.T, env ...string) *proc {
	t.Helper()
	p := &proc{t: t, changed: make(chan struct{}), exited: make(chan struct{})}
	p.cmd = exec.Command(binary)
	// GORACE: the race detector otherwise sleeps 1 s at exit.
	p.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "GORACE=atexit_sleep_ms=0",
		"LAMEDUCK_HTTP_ADDR=127.0.0.1:0", "LAMEDUCK_ADMIN_ADDR=127.0.0.1:0"}, env...)
	p.cmd.Stderr = &lockedWriter{mu: &p.mu, w: &p.stderr}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.start = time.Now()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go p.read(out)
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("lameduck log:\n%s\nstderr:\n%s", p.logText(), p.stderrText())
		}
	})
	return p
}

func (p *proc) read(out io.Reader) {
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			rec = map[string]any{"msg": "NOT JSON", "line": sc.Text()}
		}
		p.mu.Lock()
		p.records = append(p.records, rec)
		close(p.changed)
		p.changed = make(chan struct{})
		p.mu.Unlock()
	}
	_ = p.cmd.Wait() // the exit code says what matters; -1 when killed
	p.mu.Lock()
	p.code = p.cmd.ProcessState.ExitCode()
	p.mu.Unlock()
	close(p.exited)
}

// waitRecord waits for the first log record with msg and returns it.
func (p *proc) waitRecord(msg string, timeout time.Duration) map[string]any {
	p.t.Helper()
	deadline := time.After(timeout)
	for {
		p.mu.Lock()
		changed := p.changed
		for _, r := range p.records {
			if r["msg"] == msg {
				p.mu.Unlock()
				return r
			}
		}
		p.mu.Unlock()
		select {
		case <-changed:
		case <-p.exited:
			// the last records are read before exited closes
			if r := p.find(msg); r != nil {
				return r
			}
			p.t.Fatalf("lameduck exited (code %d) without logging %q", p.exitCode(), msg)
		case <-deadline:
			p.t.Fatalf("no %q record within %s", msg, timeout)
		}
	}
}

func (p *proc) find(msg string) map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.records {
		if r["msg"] == msg {
			return r
		}
	}
	return nil
}

// all returns every record with msg.
func (p *proc) all(msg string) []map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []map[string]any
	for _, r := range p.records {
		if r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.exited:
		return p.exitCode()
	case <-time.After(timeout):
		p.t.Fatalf("lameduck still running after %s", timeout)
		return 0
	}
}

func (p *proc) exitCode() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.code
}

func (p *proc) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %s: %v", sig, err)
	}
}

func (p *proc) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b strings.Builder
	for _, r := range p.records {
		j, _ := json.Marshal(r)
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

func (p *proc) stderrText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

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
		"requests_after_signal", "prestop_seconds", "http_seconds", "queue_seconds", "total_seconds"} {
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
// Connection: close, jobs posted during it are accepted and processed, new
// connections are refused after it, and the exit is clean and prompt.
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

	// 3. After the delay the listener is closed: a new connection is refused.
	waitFor(t, prestop+3*time.Second, "connection refused", func() bool {
		_, err := status(app + "/hello")
		return refused(err)
	})
	if closed := time.Since(signalled); closed < prestop-50*time.Millisecond {
		t.Errorf("listener closed %s after SIGTERM; want no sooner than the preStop delay %s", closed, prestop)
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

// TestDrainTimeoutDropsJobs: jobs left at the drain deadline are dropped,
// each logged with its id, the account balances, and the exit code is 1.
func TestDrainTimeoutDropsJobs(t *testing.T) {
	skipShort(t)
	t.Parallel()
	p := startBinary(t, "LAMEDUCK_PRESTOP_DELAY=0s", "LAMEDUCK_DRAIN_TIMEOUT=300ms", "LAMEDUCK_WORKERS=1")
	c := &http.Client{Timeout: 5 * time.Second}
	var ids []string
	for range 4 {
		ids = append(ids, postJob(t, c, "http://"+p.app, "2s"))
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(10 * time.Second); code != 1 {
		t.Fatalf("exit code = %d; want 1", code)
	}
	s := summary(t, p)
	if s["jobs_accepted"] != 4 || s["jobs_processed"]+s["jobs_dropped"] != 4 || s["jobs_dropped"] < 3 {
		t.Errorf("summary = %v; want 4 accepted = processed + dropped, at least 3 dropped", s)
	}
	dropped, processed := map[string]bool{}, map[string]bool{}
	for _, r := range p.all("job dropped") {
		dropped[r["job_id"].(string)] = true
	}
	for _, r := range p.all("job processed") {
		processed[r["job_id"].(string)] = true
	}
	if len(dropped) != int(s["jobs_dropped"]) {
		t.Errorf("%d job dropped records; want %v", len(dropped), s["jobs_dropped"])
	}
	for _, id := range ids {
		switch {
		case dropped[id] && processed[id]:
			t.Errorf("job %s logged both processed and dropped", id)
		case !dropped[id] && !processed[id]:
			t.Errorf("job %s neither processed nor logged as dropped", id)
		}
	}
}

// TestShutdownTimeoutCutsRequests: a request still running at the shutdown
// deadline is cut, counted, and makes the exit code 1.
func TestShutdownTimeoutCutsRequests(t *testing.T) {
	skipShort(t)
	t.Parallel()
	p := startBinary(t, "LAMEDUCK_PRESTOP_DELAY=0s", "LAMEDUCK_SHUTDOWN_TIMEOUT=500ms")
	errc := make(chan error, 1)
	go func() {
		resp, err := http.Get("http://" + p.app + "/hello?delay=20s")
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	waitFor(t, 5*time.Second, "slow request in flight", func() bool {
		return metric(t, "http://"+p.admin, "lameduck_http_inflight_requests") >= 1
	})
	p.signal(syscall.SIGTERM)
	if code := p.wait(10 * time.Second); code != 1 {
		t.Fatalf("exit code = %d; want 1", code)
	}
	if s := summary(t, p); s["requests_cut"] != 1 {
		t.Errorf("requests_cut = %v; want 1", s["requests_cut"])
	}
	if err := <-errc; err == nil {
		t.Errorf("the cut request got an answer; want a transport error")
	}
}

// TestSecondSignalAborts: a second signal during the sequence exits at once
// with code 130, after logging what it abandons.
func TestSecondSignalAborts(t *testing.T) {
	skipShort(t)
	t.Parallel()
	p := startBinary(t, "LAMEDUCK_PRESTOP_DELAY=20s", "LAMEDUCK_SHUTDOWN_TIMEOUT=5s", "LAMEDUCK_GRACE_PERIOD=60s",
		"LAMEDUCK_WORKERS=1")
	id := postJob(t, &http.Client{Timeout: 5 * time.Second}, "http://"+p.app, "20s")
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
	if rec["jobs_dropped"] != 1.0 {
		t.Errorf("shutdown aborted record = %v; want jobs_dropped 1", rec)
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
		{"budget over grace period", "LAMEDUCK_GRACE_PERIOD=25s", "LAMEDUCK_GRACE_PERIOD"},
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
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		case <-tick.C:
		}
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
