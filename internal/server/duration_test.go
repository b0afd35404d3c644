package server_test

import (
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// durationCounts reads lameduck_http_request_duration_seconds from reg: the
// sample count of each series, by "route class", and the sum of all.
func durationCounts(t *testing.T, reg prometheus.Gatherer) (map[string]uint64, float64) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	counts := map[string]uint64{}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != "lameduck_http_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			counts[labels["route"]+" "+labels["class"]] = m.GetHistogram().GetSampleCount()
			sum += m.GetHistogram().GetSampleSum()
		}
	}
	return counts, sum
}

// TestRequestDuration: every answered request is observed once in
// lameduck_http_request_duration_seconds, by route and status class, and
// every series exists from start-up.
func TestRequestDuration(t *testing.T) {
	f := newFixture(t, testConfig())
	counts, _ := durationCounts(t, f.metrics)
	for _, route := range []string{"/hello", "/jobs", "other"} {
		for _, class := range []string{"1xx", "2xx", "3xx", "4xx", "5xx", "cut"} {
			if n, ok := counts[route+" "+class]; !ok || n != 0 {
				t.Errorf("at start-up, series route=%q class=%q: %d samples, present %t; want 0, present", route, class, n, ok)
			}
		}
	}
	for _, r := range []struct{ method, target, body string }{
		{http.MethodGet, "/hello", ""},
		{http.MethodGet, "/hello?delay=20ms", ""},
		{http.MethodGet, "/hello?delay=x", ""},                          // 400
		{http.MethodGet, "/hello?nope=1", ""},                           // 400, before the mux
		{http.MethodPost, "/hello", ""},                                 // 405
		{http.MethodPost, "/jobs", ""},                                  // 202
		{http.MethodPost, "/jobs", "x" + string(make([]byte, maxBody))}, // 413
		{http.MethodGet, "/nope", ""},                                   // 404
	} {
		f.serve(r.method, r.target, r.body)
	}
	counts, sum := durationCounts(t, f.metrics)
	for series, want := range map[string]uint64{
		"/hello 2xx": 2, "/hello 4xx": 3, "/jobs 2xx": 1, "/jobs 4xx": 1, "other 4xx": 1,
		"/hello 5xx": 0, "/jobs 5xx": 0, "other 2xx": 0, "/hello cut": 0,
	} {
		if got := counts[series]; got != want {
			t.Errorf("lameduck_http_request_duration_seconds %s: %d samples; want %d", series, got, want)
		}
	}
	if sum < 0.020 {
		t.Errorf("sum of durations = %v s; want at least the 20ms a ?delay= took", sum)
	}
}

// metricValue reads the counter or gauge name{labels} (name, value pairs)
// from reg, failing the test when it does not exist.
func metricValue(t *testing.T, reg prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue metrics
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no series %s%q", name, labels)
	return 0
}

// requestsTotal reads lameduck_http_requests_total{code}.
func (f fixture) requestsTotal(t *testing.T, code string) float64 {
	t.Helper()
	return metricValue(t, f.metrics, "lameduck_http_requests_total", "code", code)
}

// inflight reads lameduck_http_inflight_requests.
func (f fixture) inflight(t *testing.T) float64 {
	t.Helper()
	return metricValue(t, f.metrics, "lameduck_http_inflight_requests")
}
