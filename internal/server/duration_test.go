package server_test

import (
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lameduck/lameduck/internal/metrics"
)

// durationCounts reads lameduck_http_request_duration_seconds from reg: the
// sample count of each series, by "route code", and the sum of all.
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
			counts[labels["route"]+" "+labels["code"]] = m.GetHistogram().GetSampleCount()
			sum += m.GetHistogram().GetSampleSum()
		}
	}
	return counts, sum
}

// TestRequestDuration: every answered request is observed once in
// lameduck_http_request_duration_seconds, by route and status code, with
// the same labels as lameduck_http_requests_total.
func TestRequestDuration(t *testing.T) {
	f := newFixture(t, testConfig())
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
		"/hello 200": 2, "/hello 400": 2, "/hello 405": 1, "/jobs 202": 1, "/jobs 413": 1, "other 404": 1,
		"/hello 503": 0, "/jobs 503": 0, "other 200": 0,
	} {
		if got := counts[series]; got != want {
			t.Errorf("lameduck_http_request_duration_seconds %s: %d samples; want %d", series, got, want)
		}
	}
	if sum < 0.020 {
		t.Errorf("sum of durations = %v s; want at least the 20ms a ?delay= took", sum)
	}
}

// requestsTotal reads lameduck_http_requests_total{code}, summed over the
// routes (0 when no series has that code), or, for "cut",
// lameduck_http_requests_cut_total over the routes.
func (f fixture) requestsTotal(t *testing.T, code string) float64 {
	t.Helper()
	if code == "cut" {
		return metrics.Sum(f.m.Cut)
	}
	return metrics.ByLabel(f.m.Requests, "code")[code]
}

// inflight reads the handler's count of requests in flight.
func (f fixture) inflight(*testing.T) float64 { return float64(f.h.InFlight()) }
