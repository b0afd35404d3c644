package main

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestRequestLimit: one h2c client opens more streams on its one connection
// than LAMEDUCK_MAX_REQUESTS lets into handlers. The excess is answered 503
// with a valid Retry-After at once (before any admitted stream ends) and
// counted; the requests in handlers never exceed the limit; SIGTERM with the
// admitted streams in flight still exits 0 with each of them answered 200
// and nothing cut.
func TestRequestLimit(t *testing.T) {
	skipShort(t)
	t.Parallel()
	const limit, streams = 4, 10
	p := startBinary(t, "LAMEDUCK_MAX_REQUESTS="+strconv.Itoa(limit), "LAMEDUCK_PRESTOP_DELAY=500ms",
		"LAMEDUCK_SHUTDOWN_TIMEOUT=6s", "LAMEDUCK_DRAIN_TIMEOUT=2s", "LAMEDUCK_GRACE_PERIOD=10s")
	app, admin := "http://"+p.app, "http://"+p.admin

	// The requests in handlers, sampled until the end.
	var most atomic.Int64
	stopSampling := make(chan struct{})
	var sampling sync.WaitGroup
	sampling.Go(func() {
		for {
			if n, err := scrapeOne(admin, "lameduck_http_inflight_requests"); err == nil && int64(n) > most.Load() {
				most.Store(int64(n))
			}
			select {
			case <-stopSampling:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	})

	var dials atomic.Int64
	c := h2cClient(&dials)
	defer c.CloseIdleConnections()
	type answer struct {
		code       int
		proto      int
		retryAfter string
		err        error
		at         time.Time
	}
	// One request first: the streams then share its connection.
	if a := h2cDo(c, http.MethodGet, app+"/hello"); a.err != nil || a.code != 200 || a.proto != 2 {
		t.Fatalf("GET /hello over h2c = %d HTTP/%d, %v; want 200 over HTTP/2", a.code, a.proto, a.err)
	}
	answers := make(chan answer, streams)
	for range streams {
		go func() {
			resp, err := c.Get(app + "/hello?delay=2s")
			if err != nil {
				answers <- answer{err: err, at: time.Now()}
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			answers <- answer{code: resp.StatusCode, proto: resp.ProtoMajor, retryAfter: resp.Header.Get("Retry-After"), at: time.Now()}
		}()
	}

	// Every stream is soon either in a handler or refused (the admitted ones
	// stay 2 s); then SIGTERM, with the admitted ones in flight.
	var inflight, refusedTotal float64
	waitFor(t, 5*time.Second, "every stream in a handler or refused", func() bool {
		var err1, err2 error
		inflight, err1 = scrapeOne(admin, "lameduck_http_inflight_requests")
		refusedTotal, err2 = scrapeOne(admin, "lameduck_http_requests_refused_total")
		return err1 == nil && err2 == nil && inflight+refusedTotal >= streams
	})
	if inflight != limit || refusedTotal != streams-limit {
		t.Errorf("%v streams in handlers, %v refused (lameduck_http_requests_refused_total); want %d and %d", inflight, refusedTotal, limit, streams-limit)
	}
	if d := dials.Load(); d != 1 {
		t.Errorf("the client dialled %d connections; want 1 (its streams multiplexed)", d)
	}
	signalled := time.Now()
	p.signal(syscall.SIGTERM)
	var got []answer
	for range streams {
		got = append(got, <-answers)
	}
	close(stopSampling)
	sampling.Wait()

	var ok, refused int
	var firstOK time.Time
	for _, a := range got {
		switch {
		case a.err != nil || a.proto != 2:
			t.Errorf("stream: HTTP/%d, %v; want an answer over HTTP/2", a.proto, a.err)
		case a.code == http.StatusOK:
			ok++
			if firstOK.IsZero() || a.at.Before(firstOK) {
				firstOK = a.at
			}
			if a.at.Before(signalled) {
				t.Errorf("an admitted stream ended before SIGTERM; want it in flight at the signal")
			}
		case a.code == http.StatusServiceUnavailable:
			refused++
			if s, err := strconv.Atoi(a.retryAfter); err != nil || s < 1 {
				t.Errorf("503 with Retry-After %q; want a positive number of seconds", a.retryAfter)
			}
		default:
			t.Errorf("stream answered %d; want 200 or 503", a.code)
		}
	}
	if ok != limit || refused != streams-limit {
		t.Errorf("%d streams: %d× 200, %d× 503; want %d× 200 (LAMEDUCK_MAX_REQUESTS) and %d× 503", streams, ok, refused, limit, streams-limit)
	}
	for _, a := range got {
		if a.code == http.StatusServiceUnavailable && !firstOK.IsZero() && !a.at.Before(firstOK) {
			t.Errorf("a refusal came %s after the first admitted stream ended; want it at once", a.at.Sub(firstOK))
		}
	}
	if n := most.Load(); n > limit {
		t.Errorf("lameduck_http_inflight_requests reached %d; want at most LAMEDUCK_MAX_REQUESTS %d", n, limit)
	}
	if code := p.wait(15 * time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d; want 0", code)
	}
	s := summary(t, p)
	t.Logf("most requests in handlers %d; shutdown: %v", most.Load(), s)
	if s["requests_cut"] != 0 {
		t.Errorf("requests_cut = %v; want 0", s["requests_cut"])
	}
	if s["requests_refused"] != float64(streams-limit) {
		t.Errorf("requests_refused = %v; want %d, the 503s over the limit", s["requests_refused"], streams-limit)
	}
}

// scrapeOne reads one unlabelled sample from the admin /metrics, without
// failing the test (it runs off the test's goroutine too).
func scrapeOne(admin, name string) (float64, error) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(admin + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("/metrics has no sample %s", name)
}
