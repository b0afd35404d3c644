package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestCheck: lameduck -check URL, what charts/lameduck's helm test pods run,
// exits 0 on 200 OK and 1 on any other status or no answer, and never reads
// the configuration (an invalid LAMEDUCK_ variable does not matter to it).
func TestCheck(t *testing.T) {
	t.Setenv("LAMEDUCK_WORKERS", "not a number")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ok" {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()

	tests := []struct {
		url  string
		want int
		out  string // part of stdout or stderr
	}{
		{srv.URL + "/ok", 0, "200 OK"},
		{srv.URL + "/ready", 1, "503 Service Unavailable"},
		{closed.URL + "/ok", 1, "connection refused"},
		{"::not a url", 2, "missing protocol scheme"},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), []string{"-check", tt.url}, &stdout, &stderr, nil)
		if code != tt.want {
			t.Errorf("lameduck -check %s = %d; want %d (stdout %q, stderr %q)", tt.url, code, tt.want, stdout.String(), stderr.String())
		}
		if out := stdout.String() + stderr.String(); !strings.Contains(out, tt.out) {
			t.Errorf("lameduck -check %s printed %q; want it to contain %q", tt.url, out, tt.out)
		}
	}
}
