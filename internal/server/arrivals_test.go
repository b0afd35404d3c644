package server

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lameduck/lameduck/internal/health"
	"github.com/lameduck/lameduck/internal/metrics"
)

// TestArrivals: before the signal, arrivals are not noted; while the
// service drains, each request moves LastArrival and is served; once the
// preStop delay is over (Late), every request is answered 503 with
// Retry-After: 1, Connection: close and no body, without reaching the
// handler or the count in flight, and counted as late.
func TestArrivals(t *testing.T) {
	gate := &health.Gate{}
	m := metrics.New(prometheus.NewRegistry())
	h := &Handler{timeouts: newTimeouts(time.Second, time.Second), epoch: time.Now()}
	calls := 0
	a := h.arrivals(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { calls++ }), gate, m)
	get := func() *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		a.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/jobs", strings.NewReader("{}")))
		return w
	}

	get()
	if at := h.LastArrival(); !at.IsZero() {
		t.Errorf("LastArrival() before the signal = %v; want the zero time (nothing is noted while serving)", at)
	}
	gate.Close()
	before := time.Now()
	if w := get(); w.Code != http.StatusOK {
		t.Errorf("a request while draining = %d; want 200, served", w.Code)
	}
	if at := h.LastArrival(); at.Before(before) || at.After(time.Now()) {
		t.Errorf("LastArrival() = %v; want the request's arrival, between %v and now", at, before)
	}
	arrived := h.LastArrival()

	h.Late()
	w := get()
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "1" ||
		w.Header().Get("Connection") != "close" || w.Body.Len() != 0 {
		t.Errorf("a late request = %d, Retry-After %q, Connection %q, body %q; want 503, 1, close, empty",
			w.Code, w.Header().Get("Retry-After"), w.Header().Get("Connection"), w.Body)
	}
	if calls != 2 {
		t.Errorf("the handler ran %d times; want 2: a late request never reaches it", calls)
	}
	if n := testutil.ToFloat64(m.RequestsLate); n != 1 {
		t.Errorf("lameduck_http_requests_late_total = %v; want 1", n)
	}
	if got := h.LastArrival(); !got.Equal(arrived) {
		t.Errorf("LastArrival() after a late request = %v; want %v: the delay is over", got, arrived)
	}
	if n := h.InFlight(); n != 0 {
		t.Errorf("InFlight() = %d; want 0", n)
	}
}
