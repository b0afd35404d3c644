package server_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzHelloQuery sends GET /hello with any query string and checks that the
// answer is 200 only for a query that parses and gives delay at most once
// (and nothing else), and otherwise a one-line 400: never a silent default.
func FuzzHelloQuery(f *testing.F) {
	for _, s := range []string{"", "delay=0s", "delay=1ms", "delay=%zz", "delay=0s;x=1", "dealy=1s",
		"delay=0s&delay=1s", "delay=-1s", "delay=1h", "=", "&&", "delay", "delay=0s&", "a=%00"} {
		f.Add(s)
	}
	cfg := testConfig()
	cfg.MaxDelay = time.Millisecond // no fuzzed request waits longer
	f.Fuzz(func(t *testing.T, raw string) {
		fx := newFixture(t, cfg)
		req := httptest.NewRequest(http.MethodGet, "/hello", nil)
		req.URL.RawQuery = raw
		rec := httptest.NewRecorder()
		fx.h.ServeHTTP(rec, req)
		values, err := url.ParseQuery(raw)
		clean := err == nil && len(values["delay"]) <= 1 && (len(values) == 0 || len(values) == 1 && values.Has("delay"))
		switch rec.Code {
		case http.StatusOK:
			if !clean {
				t.Fatalf("GET /hello?%s = 200; want 400 (parse error %v, values %v)", raw, err, values)
			}
			if d, err := time.ParseDuration(values.Get("delay")); values.Get("delay") != "" && (err != nil || d < 0 || d > cfg.MaxDelay) {
				t.Fatalf("GET /hello?%s = 200 with an invalid delay", raw)
			}
		case http.StatusBadRequest:
			if body := rec.Body.String(); strings.Count(body, "\n") != 1 {
				t.Fatalf("GET /hello?%s = 400 with body %q; want a one-line reason", raw, body)
			}
		default:
			t.Fatalf("GET /hello?%s = %d; want 200 or 400", raw, rec.Code)
		}
	})
}

// FuzzIdempotencyKey posts a job with any key, twice: a key over 256 bytes is
// a 400 and takes nothing; any other (non-empty) key takes one job and
// answers the same id twice.
func FuzzIdempotencyKey(f *testing.F) {
	for _, s := range []string{"k", "a b", strings.Repeat("k", 256), strings.Repeat("k", 257), "\x00", "ключ", "\xff\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		if key == "" {
			return // no key: a new job per request, covered elsewhere
		}
		fx := newFixture(t, testConfig())
		first := fx.serve(http.MethodPost, "/jobs", "x", "Idempotency-Key", key)
		second := fx.serve(http.MethodPost, "/jobs", "x", "Idempotency-Key", key)
		if len(key) > 256 {
			if first.Code != http.StatusBadRequest || second.Code != http.StatusBadRequest {
				t.Fatalf("POST /jobs with a %d-byte key = %d, %d; want 400, 400", len(key), first.Code, second.Code)
			}
			if n := fx.q.Stats().Accepted; n != 0 {
				t.Fatalf("%d jobs taken for a refused key; want 0", n)
			}
			return
		}
		if first.Code != http.StatusAccepted || second.Code != http.StatusAccepted || first.Body.String() != second.Body.String() {
			t.Fatalf("POST /jobs twice with key %q = %d %q, %d %q; want 202 and the same id", key,
				first.Code, first.Body.String(), second.Code, second.Body.String())
		}
		if n := fx.q.Stats().Accepted; n != 1 {
			t.Fatalf("%d jobs taken for one key; want 1", n)
		}
	})
}
