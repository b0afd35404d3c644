package health_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/lameduck/lameduck/internal/health"
	"github.com/lameduck/lameduck/internal/metrics"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var info = health.BuildInfo{Version: "v1.2.3", Commit: "abc1234"}

// newServer serves the admin handler, with lameduck's metrics registered,
// until the test ends.
func newServer(t *testing.T) (*httptest.Server, *health.Gate) {
	t.Helper()
	reg := prometheus.NewRegistry()
	metrics.New(reg)
	gate := &health.Gate{}
	srv := httptest.NewServer(health.NewHandler(gate, reg, reg, info))
	t.Cleanup(srv.Close)
	return srv, gate
}

// do requests path with method and returns the status code, the header and
// the body.
func do(t *testing.T, srv *httptest.Server, method, path string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		t.Fatalf("NewRequest(%s %s): %v", method, path, err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return resp.StatusCode, resp.Header, string(body)
}

func TestGate(t *testing.T) {
	var g health.Gate
	if g.Draining() {
		t.Fatal("zero Gate: Draining() = true; want false")
	}
	g.Close()
	g.Close() // idempotent
	if !g.Draining() {
		t.Error("Gate after Close: Draining() = false; want true")
	}
}

func TestProbes(t *testing.T) {
	tests := []struct {
		path      string
		open      int // status before Gate.Close
		draining  int // status after
		wantEmpty bool
	}{
		{"/live", http.StatusOK, http.StatusOK, true},
		{"/ready", http.StatusOK, http.StatusServiceUnavailable, true},
		{"/live?full=1", http.StatusOK, http.StatusOK, false},
		{"/ready?full=1", http.StatusOK, http.StatusServiceUnavailable, false},
	}
	srv, gate := newServer(t)
	for _, phase := range []string{"open", "draining"} {
		if phase == "draining" {
			gate.Close()
		}
		for _, tt := range tests {
			t.Run(phase+" "+tt.path, func(t *testing.T) {
				want := tt.open
				if phase == "draining" {
					want = tt.draining
				}
				code, _, body := do(t, srv, http.MethodGet, tt.path)
				if code != want {
					t.Errorf("GET %s while %s = %d; want %d (body %q)", tt.path, phase, code, want, body)
				}
				if tt.wantEmpty && body != "{}\n" {
					t.Errorf("GET %s while %s: body = %q; want %q", tt.path, phase, body, "{}\n")
				}
			})
		}
	}
}

func TestFullDetails(t *testing.T) {
	srv, gate := newServer(t)
	details := func(path string) map[string]string {
		t.Helper()
		_, _, body := do(t, srv, http.MethodGet, path)
		var got map[string]string
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatalf("GET %s: body %q is not a JSON object of strings: %v", path, body, err)
		}
		return got
	}
	tests := []struct {
		path     string
		draining bool
		want     map[string]string
	}{
		{"/live?full=1", false, map[string]string{"goroutine-threshold": "OK"}},
		{"/ready?full=1", false, map[string]string{"goroutine-threshold": "OK", "not-draining": "OK"}},
		{"/live?full=1", true, map[string]string{"goroutine-threshold": "OK"}},
		{"/ready?full=1", true, map[string]string{"goroutine-threshold": "OK", "not-draining": health.ErrDraining.Error()}},
	}
	for _, tt := range tests {
		if tt.draining {
			gate.Close()
		}
		got := details(tt.path)
		if len(got) != len(tt.want) {
			t.Errorf("GET %s (draining %t) = %v; want %v", tt.path, tt.draining, got, tt.want)
		}
		for k, v := range tt.want {
			if got[k] != v {
				t.Errorf("GET %s (draining %t): %q = %q; want %q", tt.path, tt.draining, k, got[k], v)
			}
		}
	}
	if !strings.Contains(health.ErrDraining.Error(), "draining") {
		t.Errorf("ErrDraining = %q; want it to say draining", health.ErrDraining)
	}
}

// metricLines returns the sample lines of a Prometheus text exposition.
func metricLines(body string) map[string]bool {
	lines := map[string]bool{}
	for line := range strings.Lines(body) {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			lines[line] = true
		}
	}
	return lines
}

func TestMetrics(t *testing.T) {
	srv, gate := newServer(t)
	code, header, body := do(t, srv, http.MethodGet, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics = %d; want 200", code)
	}
	if ct := header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("GET /metrics: Content-Type = %q; want text/plain", ct)
	}
	// Every labelled series exists from start-up, before any shutdown.
	lines := metricLines(body)
	for _, want := range []string{
		`lameduck_queue_depth 0`,
		`lameduck_http_requests_after_signal_total 0`,
		`lameduck_jobs_accepted_total 0`,
		`lameduck_jobs_processed_total 0`,
		`lameduck_jobs_dropped_total 0`,
		`lameduck_job_latency_seconds_count 0`,
		`lameduck_shutdown_phase_seconds{phase="prestop"} 0`,
		`lameduck_shutdown_phase_seconds{phase="http"} 0`,
		`lameduck_shutdown_phase_seconds{phase="queue"} 0`,
		`lameduck_jobs_rejected_total{reason="full"} 0`,
		`lameduck_jobs_rejected_total{reason="closed"} 0`,
		`lameduck_http_requests_total{code="200",route="/hello"} 0`,
		`lameduck_http_requests_total{code="202",route="/jobs"} 0`,
		`lameduck_http_requests_total{code="503",route="/jobs"} 0`,
		`lameduck_http_requests_cut_total{route="/jobs"} 0`,
		`lameduck_healthcheck_status{check="goroutine-threshold"} 0`,
		`lameduck_healthcheck_status{check="not-draining"} 0`,
	} {
		if !lines[want] {
			t.Errorf("GET /metrics at start-up has no line %q", want)
		}
	}
	if t.Failed() {
		t.Logf("GET /metrics:\n%s", body)
	}

	gate.Close()
	_, _, body = do(t, srv, http.MethodGet, "/metrics")
	if want := `lameduck_healthcheck_status{check="not-draining"} 1`; !metricLines(body)[want] {
		t.Errorf("GET /metrics while draining has no line %q:\n%s", want, body)
	}
}

func TestVersion(t *testing.T) {
	srv, _ := newServer(t)
	code, header, body := do(t, srv, http.MethodGet, "/version")
	if code != http.StatusOK {
		t.Fatalf("GET /version = %d; want 200", code)
	}
	if ct := header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("GET /version: Content-Type = %q; want application/json", ct)
	}
	var got struct {
		Version, Commit, Go string
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("GET /version: body %q is not JSON: %v", body, err)
	}
	if got.Version != info.Version || got.Commit != info.Commit || got.Go != runtime.Version() {
		t.Errorf("GET /version = %+v; want version %q, commit %q, go %q", got, info.Version, info.Commit, runtime.Version())
	}
}

func TestMethodsAndPaths(t *testing.T) {
	tests := []struct {
		method, path string
		want         int
	}{
		{http.MethodPost, "/ready", http.StatusMethodNotAllowed},
		{http.MethodPost, "/live", http.StatusMethodNotAllowed},
		{http.MethodPut, "/ready", http.StatusMethodNotAllowed},
		{http.MethodPost, "/metrics", http.StatusMethodNotAllowed},
		{http.MethodPost, "/version", http.StatusMethodNotAllowed},
		{http.MethodHead, "/version", http.StatusOK},
		{http.MethodGet, "/nope", http.StatusNotFound},
		{http.MethodGet, "/hello", http.StatusNotFound}, // app routes are not on the admin listener
	}
	srv, _ := newServer(t)
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			if code, _, _ := do(t, srv, tt.method, tt.path); code != tt.want {
				t.Errorf("%s %s = %d; want %d", tt.method, tt.path, code, tt.want)
			}
		})
	}
}
