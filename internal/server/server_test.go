package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/lameduck/lameduck/internal/config"
	"github.com/lameduck/lameduck/internal/health"
	"github.com/lameduck/lameduck/internal/idempotency"
	"github.com/lameduck/lameduck/internal/metrics"
	"github.com/lameduck/lameduck/internal/queue"
	"github.com/lameduck/lameduck/internal/server"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const maxBody = 64

func testConfig() config.Config {
	return config.Config{
		HelloDelay:         0,
		MaxDelay:           10 * time.Second,
		MaxWork:            10 * time.Second,
		MaxBody:            maxBody,
		QueueSize:          100,
		Workers:            2,
		JobDuration:        0,
		IdempotencyTTL:     time.Hour,
		IdempotencyMaxKeys: 100,
		DrainTimeout:       time.Minute,

		IdempotencyMaxBytes: 1 << 20,
		MaxRequests:         1000,
	}
}

// logBuffer collects log output written from any goroutine.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// jobIDs returns the job_id of every JSON record with message msg.
func (b *logBuffer) jobIDs(t *testing.T, msg string) []string {
	t.Helper()
	b.mu.Lock()
	data := b.buf.String()
	b.mu.Unlock()
	var ids []string
	for line := range strings.Lines(data) {
		var r struct {
			Msg   string `json:"msg"`
			JobID string `json:"job_id"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		if r.Msg == msg {
			ids = append(ids, r.JobID)
		}
	}
	return ids
}

type fixture struct {
	h       *server.Handler
	q       *queue.Queue
	m       *metrics.Metrics
	gate    *health.Gate
	logs    *logBuffer
	metrics *prometheus.Registry
}

// newFixture returns the app handler over a real queue, whose workers stop
// when the test ends.
func newFixture(t *testing.T, cfg config.Config) fixture {
	t.Helper()
	logs := &logBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	gate := &health.Gate{}
	q := queue.New(cfg.QueueSize, cfg.Workers, queue.Admission{Budget: cfg.DrainBudget(), PerJob: config.JobAllowance}, logger, m)
	t.Cleanup(func() { q.Abort() })
	keys := idempotency.New(cfg.IdempotencyTTL, cfg.IdempotencyMaxKeys, cfg.IdempotencyMaxBytes)
	return fixture{h: server.New(cfg, logger, m, gate, server.InMemory(q, keys)), q: q, m: m, gate: gate, logs: logs, metrics: reg}
}

// serve runs one request through the handler; headers are name, value pairs.
func (f fixture) serve(method, target, body string, headers ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	return rec
}

// waitFor polls cond until it holds, failing the test after a generous
// deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// checkOneLineError checks an error response: code and a one-line reason.
func checkOneLineError(t *testing.T, req string, rec *httptest.ResponseRecorder, code int, mention string) {
	t.Helper()
	body := rec.Body.String()
	if rec.Code != code {
		t.Errorf("%s = %d; want %d (body %q)", req, rec.Code, code, body)
	}
	if strings.Count(body, "\n") != 1 || !strings.HasSuffix(body, "\n") || len(body) < 2 {
		t.Errorf("%s: body %q; want a one-line reason", req, body)
	}
	if !strings.Contains(body, mention) {
		t.Errorf("%s: body %q; want it to mention %q", req, body, mention)
	}
}

var idPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

// jobID decodes a 202 response's {"id": ...} and checks the id's form.
func jobID(t *testing.T, req string, rec *httptest.ResponseRecorder) string {
	t.Helper()
	if rec.Code != http.StatusAccepted {
		t.Fatalf("%s = %d; want 202 (body %q)", req, rec.Code, rec.Body.String())
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type = %q; want application/json", req, ct)
	}
	var got map[string]string
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("%s: body %q is not a JSON object of strings: %v", req, rec.Body.String(), err)
	}
	if len(got) != 1 || !idPattern.MatchString(got["id"]) {
		t.Fatalf("%s: body %q; want {\"id\": 32 lower-case hex digits}", req, rec.Body.String())
	}
	return got["id"]
}

func TestHello(t *testing.T) {
	tests := []struct {
		target    string
		wantCode  int
		mention   string        // what a 400's reason names
		wantLeast time.Duration // least time the answer takes
	}{
		{target: "/hello", wantCode: 200},
		{target: "/hello?delay=0s", wantCode: 200},
		{target: "/hello?delay=50ms", wantCode: 200, wantLeast: 50 * time.Millisecond},
		{target: "/hello?delay=soon", wantCode: 400, mention: `delay="soon"`},
		{target: "/hello?delay=50", wantCode: 400, mention: "delay"},
		{target: "/hello?delay=-1s", wantCode: 400, mention: "negative"},
		{target: "/hello?delay=10s1ns", wantCode: 400, mention: "maximum of 10s"},
		{target: "/hello?delay=1h", wantCode: 400, mention: "maximum of 10s (LAMEDUCK_MAX_DELAY, what a shutdown can wait for)"},
	}
	f := newFixture(t, testConfig())
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			start := time.Now()
			rec := f.serve(http.MethodGet, tt.target, "")
			elapsed := time.Since(start)
			req := "GET " + tt.target
			if tt.wantCode != http.StatusOK {
				checkOneLineError(t, req, rec, tt.wantCode, tt.mention)
				return
			}
			if rec.Code != http.StatusOK || rec.Body.String() != "hello\n" {
				t.Errorf("%s = %d %q; want 200 %q", req, rec.Code, rec.Body.String(), "hello\n")
			}
			if ct := rec.Header().Get("Content-Type"); ct != "text/plain; charset=utf-8" {
				t.Errorf("%s: Content-Type = %q; want text/plain; charset=utf-8", req, ct)
			}
			if elapsed < tt.wantLeast {
				t.Errorf("%s answered after %s; want at least %s", req, elapsed, tt.wantLeast)
			}
		})
	}
}

func TestHelloDefaultDelay(t *testing.T) {
	cfg := testConfig()
	cfg.HelloDelay = 40 * time.Millisecond
	f := newFixture(t, cfg)
	start := time.Now()
	rec := f.serve(http.MethodGet, "/hello", "")
	if elapsed := time.Since(start); elapsed < cfg.HelloDelay {
		t.Errorf("GET /hello with LAMEDUCK_HELLO_DELAY=%s answered after %s; want at least that", cfg.HelloDelay, elapsed)
	}
	if rec.Code != http.StatusOK {
		t.Errorf("GET /hello = %d; want 200", rec.Code)
	}
	start = time.Now()
	f.serve(http.MethodGet, "/hello?delay=0s", "")
	if elapsed := time.Since(start); elapsed >= 5*time.Second {
		t.Errorf("GET /hello?delay=0s answered after %s; want ?delay= to override the default", elapsed)
	}
}

func TestHelloStopsWhenClientGoes(t *testing.T) {
	f := newFixture(t, testConfig())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/hello?delay=10s", nil)
	rec := httptest.NewRecorder()
	start := time.Now()
	f.h.ServeHTTP(rec, req)
	if elapsed := time.Since(start); elapsed >= 5*time.Second {
		t.Errorf("GET /hello?delay=10s from a client gone answered after %s; want at once", elapsed)
	}
	if rec.Body.Len() != 0 {
		t.Errorf("GET /hello from a client gone wrote %q; want nothing", rec.Body.String())
	}
}

func TestMethodsAndPaths(t *testing.T) {
	tests := []struct {
		method, target string
		want           int
	}{
		{http.MethodPost, "/hello", http.StatusMethodNotAllowed},
		{http.MethodDelete, "/hello", http.StatusMethodNotAllowed},
		{http.MethodGet, "/jobs", http.StatusMethodNotAllowed},
		{http.MethodPut, "/jobs", http.StatusMethodNotAllowed},
		{http.MethodHead, "/hello", http.StatusOK},
		{http.MethodGet, "/", http.StatusNotFound},
		{http.MethodGet, "/nope", http.StatusNotFound},
		{http.MethodPost, "/nope", http.StatusNotFound},
		{http.MethodGet, "/ready", http.StatusNotFound}, // probes are on the admin listener
	}
	f := newFixture(t, testConfig())
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.target, func(t *testing.T) {
			if rec := f.serve(tt.method, tt.target, ""); rec.Code != tt.want {
				t.Errorf("%s %s = %d; want %d", tt.method, tt.target, rec.Code, tt.want)
			}
		})
	}
	if got := f.q.Stats().Accepted; got != 0 {
		t.Errorf("queue accepted %d jobs; want 0", got)
	}
	if got := f.requestsTotal(t, "405"); got != 4 {
		t.Errorf("lameduck_http_requests_total{code=\"405\"} = %v; want 4", got)
	}
}

func TestJobsAccepted(t *testing.T) {
	f := newFixture(t, testConfig())
	var ids []string
	for _, target := range []string{"/jobs", "/jobs?work=0s", "/jobs?work=2ms"} {
		rec := f.serve(http.MethodPost, target, `{"any":"body"}`)
		ids = append(ids, jobID(t, "POST "+target, rec))
	}
	if got := f.q.Stats().Accepted; got != int64(len(ids)) {
		t.Errorf("queue accepted %d jobs after %d 202s; want %d", got, len(ids), len(ids))
	}
	if s := slices.Compact(slices.Sorted(slices.Values(ids))); len(s) != len(ids) {
		t.Errorf("POST /jobs ids %v; want all different", ids)
	}
	// The id answered is the id of the job the queue processes.
	if st := f.q.Drain(context.Background()); st.Processed != int64(len(ids)) {
		t.Fatalf("Drain() = %+v; want %d processed", st, len(ids))
	}
	processed := f.logs.jobIDs(t, "job processed")
	slices.Sort(processed)
	slices.Sort(ids)
	if !slices.Equal(processed, ids) {
		t.Errorf("queue processed jobs %v; want the ids answered %v", processed, ids)
	}
}

func TestJobsBodySize(t *testing.T) {
	tests := []struct {
		name string
		size int
		want int
	}{
		{"empty", 0, http.StatusAccepted},
		{"at MaxBody", maxBody, http.StatusAccepted},
		{"over MaxBody by 1", maxBody + 1, http.StatusRequestEntityTooLarge},
		{"far over MaxBody", 1 << 20, http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, testConfig())
			rec := f.serve(http.MethodPost, "/jobs", strings.Repeat("x", tt.size))
			req := "POST /jobs with a " + strconv.Itoa(tt.size) + "-byte body"
			wantAccepted := int64(0)
			if tt.want == http.StatusAccepted {
				jobID(t, req, rec)
				wantAccepted = 1
			} else {
				checkOneLineError(t, req, rec, tt.want, strconv.Itoa(maxBody))
			}
			if got := f.q.Stats().Accepted; got != wantAccepted {
				t.Errorf("%s: queue accepted %d jobs; want %d", req, got, wantAccepted)
			}
		})
	}
}

func TestJobsBadWork(t *testing.T) {
	tests := []struct {
		target, mention string
	}{
		{"/jobs?work=abc", `work="abc"`},
		{"/jobs?work=5", "work"},
		{"/jobs?work=-1ms", "negative"},
		{"/jobs?work=11s", "maximum of 10s (LAMEDUCK_MAX_WORK, what a drain can finish)"},
	}
	f := newFixture(t, testConfig())
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			rec := f.serve(http.MethodPost, tt.target, "body")
			checkOneLineError(t, "POST "+tt.target, rec, http.StatusBadRequest, tt.mention)
		})
	}
	if got := f.q.Stats().Accepted; got != 0 {
		t.Errorf("queue accepted %d jobs after bad ?work=; want 0", got)
	}
}

func TestJobsQueueFull(t *testing.T) {
	cfg := testConfig()
	cfg.QueueSize, cfg.Workers = 1, 1
	f := newFixture(t, cfg)

	jobID(t, "POST /jobs?work=10s", f.serve(http.MethodPost, "/jobs?work=10s", "")) // keeps the worker busy
	waitFor(t, "the worker to take the first job", func() bool { return f.q.Stats().Depth == 0 })
	jobID(t, "POST /jobs", f.serve(http.MethodPost, "/jobs", "")) // fills the queue

	for _, key := range []string{"", "full-key"} {
		rec := f.serve(http.MethodPost, "/jobs", "", "Idempotency-Key", key)
		req := "POST /jobs (Idempotency-Key " + strconv.Quote(key) + ") on a full queue"
		checkOneLineError(t, req, rec, http.StatusServiceUnavailable, "full")
		ra := rec.Header().Get("Retry-After")
		// A slot frees when the running job ends: its 10 s of work, plus the
		// 2 ms allowance, after it began, in whole seconds rounded up.
		if n, err := strconv.Atoi(ra); err != nil || n < 10 || n > 11 {
			t.Errorf("%s: Retry-After = %q; want the integer 11 (10 on a slow machine): when the running job ends", req, ra)
		}
	}
	if got := f.q.Stats().Accepted; got != 2 {
		t.Errorf("queue accepted %d jobs; want 2 (the 503s not enqueued)", got)
	}
	if got := testutil.ToFloat64(f.m.JobsRejected.WithLabelValues(metrics.ReasonFull)); got != 2 {
		t.Errorf("lameduck_jobs_rejected_total{reason=\"full\"} = %v; want 2", got)
	}
	if got := f.requestsTotal(t, "503"); got != 2 {
		t.Errorf("lameduck_http_requests_total{code=\"503\"} = %v; want 2", got)
	}
}

// TestJobsOverBudget: a job the drain budget cannot finish is refused before
// it is taken, 503 with a Retry-After of when it would fit, and counted.
func TestJobsOverBudget(t *testing.T) {
	cfg := testConfig()
	cfg.Workers = 1
	cfg.DrainTimeout = 6 * time.Second // a 5.7 s budget
	f := newFixture(t, cfg)

	jobID(t, "POST /jobs?work=3s", f.serve(http.MethodPost, "/jobs?work=3s", ""))
	for _, key := range []string{"", "budget-key"} {
		rec := f.serve(http.MethodPost, "/jobs?work=3s", "", "Idempotency-Key", key)
		req := "POST /jobs?work=3s (Idempotency-Key " + strconv.Quote(key) + ") behind 3 s of work with a 5.7 s budget"
		checkOneLineError(t, req, rec, http.StatusServiceUnavailable, "drain")
		// 3 s ahead + 3 s = 6 s: it fits in 0.3 s, rounded up to whole seconds.
		if ra := rec.Header().Get("Retry-After"); ra != "1" {
			t.Errorf("%s: Retry-After = %q; want 1", req, ra)
		}
	}
	// A shorter job still fits, and the refused key was not remembered.
	jobID(t, "POST /jobs?work=1s", f.serve(http.MethodPost, "/jobs?work=1s", "", "Idempotency-Key", "budget-key"))
	if got := f.q.Stats().Accepted; got != 2 {
		t.Errorf("queue accepted %d jobs; want 2 (the 503s not enqueued)", got)
	}
	if got := testutil.ToFloat64(f.m.JobsRejected.WithLabelValues(metrics.ReasonBudget)); got != 2 {
		t.Errorf("lameduck_jobs_rejected_total{reason=\"budget\"} = %v; want 2", got)
	}
}

func TestJobsQueueClosed(t *testing.T) {
	f := newFixture(t, testConfig())
	f.q.Close()
	rec := f.serve(http.MethodPost, "/jobs", "")
	checkOneLineError(t, "POST /jobs on a closed queue", rec, http.StatusServiceUnavailable, "closed")
	if ra := rec.Header().Get("Retry-After"); ra != "1" {
		t.Errorf("POST /jobs on a closed queue: Retry-After = %q; want %q", ra, "1")
	}
}

func TestIdempotencyKey(t *testing.T) {
	f := newFixture(t, testConfig())
	post := func(key string) *httptest.ResponseRecorder {
		return f.serve(http.MethodPost, "/jobs", "body", "Idempotency-Key", key)
	}
	first := jobID(t, "POST /jobs with key a", post("a"))
	for range 3 {
		if again := jobID(t, "POST /jobs with key a again", post("a")); again != first {
			t.Errorf("POST /jobs with key a again: id %s; want the first id %s", again, first)
		}
	}
	if got := f.q.Stats().Accepted; got != 1 {
		t.Errorf("queue accepted %d jobs for one key; want 1", got)
	}
	if other := jobID(t, "POST /jobs with key b", post("b")); other == first {
		t.Errorf("POST /jobs with key b: id %s; want a new id", other)
	}
	// No key: every request is a new job.
	if x, y := jobID(t, "POST /jobs", post("")), jobID(t, "POST /jobs", post("")); x == y {
		t.Errorf("two POST /jobs without a key: ids %s and %s; want different", x, y)
	}
	if got := f.q.Stats().Accepted; got != 4 {
		t.Errorf("queue accepted %d jobs; want 4", got)
	}

	// Keys are bounded.
	jobID(t, "POST /jobs with a 256-byte key", post(strings.Repeat("k", 256)))
	checkOneLineError(t, "POST /jobs with a 257-byte key", post(strings.Repeat("k", 257)), http.StatusBadRequest, "Idempotency-Key")
	if got := f.q.Stats().Accepted; got != 5 {
		t.Errorf("queue accepted %d jobs; want 5 (not the one with the long key)", got)
	}
}

func TestDrainingTurnsKeepAlivesOff(t *testing.T) {
	f := newFixture(t, testConfig())
	after := func() float64 { return testutil.ToFloat64(f.m.RequestsAfterSignal) }
	requests := []struct{ method, target string }{
		{http.MethodGet, "/hello"},
		{http.MethodPost, "/jobs"},
		{http.MethodGet, "/hello?delay=bad"},
		{http.MethodGet, "/nope"},
	}
	for _, r := range requests {
		if rec := f.serve(r.method, r.target, ""); rec.Header().Get("Connection") != "" {
			t.Errorf("%s %s before draining: Connection = %q; want none", r.method, r.target, rec.Header().Get("Connection"))
		}
	}
	if got := after(); got != 0 {
		t.Errorf("lameduck_http_requests_after_signal_total before draining = %v; want 0", got)
	}

	f.gate.Close()
	for i, r := range requests {
		if rec := f.serve(r.method, r.target, ""); rec.Header().Get("Connection") != "close" {
			t.Errorf("%s %s while draining: Connection = %q; want close", r.method, r.target, rec.Header().Get("Connection"))
		}
		if got, want := after(), float64(i+1); got != want {
			t.Errorf("lameduck_http_requests_after_signal_total after %d requests while draining = %v; want %v", i+1, got, want)
		}
	}
	// Draining still serves: jobs are accepted until the queue closes.
	if got := f.q.Stats().Accepted; got != 2 {
		t.Errorf("queue accepted %d jobs; want 2 (one before draining, one during)", got)
	}
}

func TestRequestsTotal(t *testing.T) {
	f := newFixture(t, testConfig())
	count := func(code string) float64 { return f.requestsTotal(t, code) }
	for range 3 {
		f.serve(http.MethodPost, "/jobs", "")
	}
	f.serve(http.MethodGet, "/hello", "")
	f.serve(http.MethodGet, "/hello?delay=x", "")
	f.serve(http.MethodPost, "/jobs", strings.Repeat("x", maxBody+1))
	f.serve(http.MethodGet, "/nope", "")
	f.serve(http.MethodPatch, "/jobs", "")
	for code, want := range map[string]float64{"202": 3, "200": 1, "400": 1, "413": 1, "404": 1, "405": 1, "503": 0} {
		if got := count(code); got != want {
			t.Errorf("lameduck_http_requests_total{code=%q} = %v; want %v", code, got, want)
		}
	}
	if got := f.inflight(t); got != 0 {
		t.Errorf("lameduck_http_inflight_requests after every request = %v; want 0", got)
	}
}

func TestInflight(t *testing.T) {
	f := newFixture(t, testConfig())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/hello?delay=10s", nil)
		f.h.ServeHTTP(httptest.NewRecorder(), req)
	}()
	waitFor(t, "lameduck_http_inflight_requests to be 1", func() bool { return f.inflight(t) == 1 })
	cancel()
	<-done
	if got := f.inflight(t); got != 0 {
		t.Errorf("lameduck_http_inflight_requests after the request = %v; want 0", got)
	}
}

// TestOverHTTP runs the handler behind a real server and client.
func TestOverHTTP(t *testing.T) {
	f := newFixture(t, testConfig())
	srv := httptest.NewServer(f.h)
	t.Cleanup(srv.Close)
	client := srv.Client()

	get := func(path string) (*http.Response, string) {
		t.Helper()
		resp, err := client.Get(srv.URL + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("GET %s: reading body: %v", path, err)
		}
		return resp, string(body)
	}
	resp, body := get("/hello")
	if resp.StatusCode != http.StatusOK || body != "hello\n" || resp.Close {
		t.Errorf("GET /hello = %d %q, Close %t; want 200 %q, false", resp.StatusCode, body, resp.Close, "hello\n")
	}

	resp, err := client.Post(srv.URL+"/jobs", "text/plain", strings.NewReader(strings.Repeat("x", 10*maxBody)))
	if err != nil {
		t.Fatalf("POST /jobs: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("POST /jobs with a %d-byte body = %d; want 413", 10*maxBody, resp.StatusCode)
	}

	f.gate.Close()
	resp, body = get("/hello")
	if resp.StatusCode != http.StatusOK || body != "hello\n" || !resp.Close {
		t.Errorf("GET /hello while draining = %d %q, Close %t; want 200 %q, true", resp.StatusCode, body, resp.Close, "hello\n")
	}
}

// discard is a queue that takes every job and does nothing with it.
type discard struct{}

func (discard) Enqueue(queue.Job) error { return nil }

func benchHandler(b *testing.B, q interface{ Enqueue(queue.Job) error }) http.Handler {
	b.Helper()
	logger := slog.New(slog.DiscardHandler)
	return server.New(testConfig(), logger, metrics.New(prometheus.NewRegistry()), &health.Gate{}, server.InMemory(q, idempotency.New(time.Hour, 100, 1<<20)))
}

// BenchmarkHello measures GET /hello through the middleware and the mux.
func BenchmarkHello(b *testing.B) {
	h := benchHandler(b, discard{})
	req := httptest.NewRequest(http.MethodGet, "/hello", nil)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("GET /hello = %d; want 200", rec.Code)
		}
	}
}

// BenchmarkJobs measures POST /jobs through the middleware, the mux and the
// handler up to Enqueue (which takes every job and does nothing).
func BenchmarkJobs(b *testing.B) {
	for _, key := range []string{"", "same-key"} {
		b.Run("key="+key, func(b *testing.B) {
			h := benchHandler(b, discard{})
			body := strings.Repeat("x", maxBody)
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, "/jobs", strings.NewReader(body))
				if key != "" {
					req.Header.Set("Idempotency-Key", key)
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusAccepted {
					b.Fatalf("POST /jobs = %d; want 202", rec.Code)
				}
			}
		})
	}
}
