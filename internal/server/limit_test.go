package server

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lameduck/lameduck/internal/health"
	"github.com/lameduck/lameduck/internal/metrics"
)

// TestRequestLimitRefuses: with the limit's requests in the handler, one
// more is answered 503, Retry-After: 1, no body, without reaching the
// handler, and counted; once the service drains the refusal closes its
// connection; a freed slot lets the next request in.
func TestRequestLimitRefuses(t *testing.T) {
	for _, draining := range []bool{false, true} {
		t.Run(map[bool]string{false: "serving", true: "draining"}[draining], func(t *testing.T) {
			gate := &health.Gate{}
			if draining {
				gate.Close()
			}
			m := metrics.New(prometheus.NewRegistry())
			entered, release := make(chan struct{}), make(chan struct{})
			var calls int
			var mu sync.Mutex
			h := &Handler{timeouts: newTimeouts(time.Second, time.Second)}
			l := h.limit(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				calls++
				mu.Unlock()
				if r.URL.Path == "/hold" {
					entered <- struct{}{}
					<-release
				}
			}), 1, gate, m)

			var held sync.WaitGroup
			held.Go(func() { l.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/hold", nil)) })
			<-entered
			if n := h.InFlight(); n != 1 {
				t.Errorf("InFlight() with one request held = %d; want 1", n)
			}
			w := httptest.NewRecorder()
			l.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/hello", nil))
			if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "1" || w.Body.Len() != 0 {
				t.Errorf("over the limit: %d, Retry-After %q, body %q; want 503, 1, empty", w.Code, w.Header().Get("Retry-After"), w.Body)
			}
			if got, want := w.Header().Get("Connection") == "close", draining; got != want {
				t.Errorf("Connection: close = %t; want %t (draining %t)", got, want, draining)
			}
			if n := testutil.ToFloat64(m.RequestsRefused); n != 1 {
				t.Errorf("lameduck_http_requests_refused_total = %v; want 1", n)
			}
			close(release)
			held.Wait()
			w = httptest.NewRecorder()
			l.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/hello", nil))
			mu.Lock()
			defer mu.Unlock()
			if w.Code != http.StatusOK || calls != 2 || h.InFlight() != 0 {
				t.Errorf("after the slot freed: %d, handler called %d times, %d in flight; want 200, 2 (the refused one never reached it), 0",
					w.Code, calls, h.InFlight())
			}
		})
	}
}
