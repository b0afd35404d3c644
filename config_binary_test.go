package main

import (
	"io"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lameduck/lameduck/internal/config"
)

// TestConfigDerivedFromOneVariable is issue #22 on the real binary: one
// shutdown variable set alone (the listeners aside) starts the service, the
// start-up log says what was derived from it, the derived caps are the ones
// enforced, and SIGTERM ends in exit 0 within the shutdown budget it
// reported.
func TestConfigDerivedFromOneVariable(t *testing.T) {
	skipShort(t)
	t.Parallel()
	tests := []struct {
		env    string
		notes  []string          // the "configuration derived" records' notes begin so, in order
		budget string            // shutdown_budget in the "serving" record
		phases map[string]string // the "shutdown started" record's phases
		at     string            // a request at the derived cap: accepted, and finished before the exit
		over   string            // a request over it: 400
	}{
		{"LAMEDUCK_SHUTDOWN_TIMEOUT=2s",
			[]string{"LAMEDUCK_MAX_DELAY=1s (default 4s) derived from LAMEDUCK_SHUTDOWN_TIMEOUT=2s (set)"},
			"12s", map[string]string{"prestop_delay": "5s", "shutdown_timeout": "2s", "drain_timeout": "5s"},
			"/hello?delay=1s", "/hello?delay=1001ms"},
		{"LAMEDUCK_DRAIN_TIMEOUT=1s",
			[]string{"LAMEDUCK_MAX_WORK=948ms (default 1s) derived from LAMEDUCK_DRAIN_TIMEOUT=1s (set)"},
			"21s", map[string]string{"prestop_delay": "5s", "shutdown_timeout": "15s", "drain_timeout": "1s"},
			"/jobs?work=948ms", "/jobs?work=949ms"},
		{"LAMEDUCK_GRACE_PERIOD=10s",
			[]string{
				"LAMEDUCK_PRESTOP_DELAY=1.8s (default 5s) derived from LAMEDUCK_GRACE_PERIOD=10s (set)",
				"LAMEDUCK_SHUTDOWN_TIMEOUT=5.4s (default 15s) derived from LAMEDUCK_GRACE_PERIOD=10s (set)",
				"LAMEDUCK_DRAIN_TIMEOUT=1.8s (default 5s) derived from LAMEDUCK_GRACE_PERIOD=10s (set)",
				"LAMEDUCK_PRESTOP_MIN=1.8s (default 5s) derived from LAMEDUCK_PRESTOP_DELAY=1.8s (derived)",
			},
			"9s", map[string]string{"prestop_delay": "1.8s", "prestop_min": "1.8s", "shutdown_timeout": "5.4s", "drain_timeout": "1.8s"},
			"/hello?delay=4s", "/hello?delay=4001ms"},
	}
	for _, tt := range tests {
		t.Run(tt.env, func(t *testing.T) {
			t.Parallel()
			p := startBinary(t, tt.env)
			var notes []string
			for _, r := range p.all("configuration derived") {
				notes = append(notes, r["note"].(string))
			}
			if len(notes) != len(tt.notes) {
				t.Fatalf("%d configuration derived records; want %d:\n%s", len(notes), len(tt.notes), strings.Join(notes, "\n"))
			}
			for i, want := range tt.notes {
				if !strings.HasPrefix(notes[i], want) {
					t.Errorf("configuration derived record %d: %q; want it to begin %q", i, notes[i], want)
				}
			}
			serving := p.find("serving")
			if got := serving["shutdown_budget"]; got != tt.budget {
				t.Errorf("serving record: shutdown_budget %v; want %s", got, tt.budget)
			}
			budget, err := time.ParseDuration(tt.budget)
			if err != nil {
				t.Fatal(err)
			}

			app, admin := "http://"+p.app, "http://"+p.admin
			if code, err := status(admin + "/ready"); code != http.StatusOK {
				t.Fatalf("/ready = %d, %v; want 200", code, err)
			}
			if code, err := status(app + "/hello"); code != http.StatusOK {
				t.Fatalf("GET /hello = %d, %v; want 200", code, err)
			}
			client := &http.Client{Timeout: 10 * time.Second}
			send := func(path string) (int, error) { // status() gives up after 2 s
				var resp *http.Response
				var err error
				if strings.HasPrefix(path, "/jobs") {
					resp, err = client.Post(app+path, "application/json", strings.NewReader(`{}`))
				} else {
					resp, err = client.Get(app + path)
				}
				if err != nil {
					return 0, err
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return resp.StatusCode, nil
			}
			if code, err := send(tt.over); code != http.StatusBadRequest {
				t.Errorf("%s, over the derived cap = %d, %v; want 400", tt.over, code, err)
			}
			// The request at the cap is in flight at SIGTERM.
			done := make(chan int, 1)
			go func() {
				code, err := send(tt.at)
				if err != nil {
					t.Errorf("%s: %v", tt.at, err)
				}
				done <- code
			}()
			if strings.HasPrefix(tt.at, "/hello") {
				waitFor(t, 5*time.Second, "the request in flight", func() bool {
					return metric(t, admin, "lameduck_http_inflight_requests") >= 1
				})
			} else if code := <-done; code != http.StatusAccepted {
				t.Fatalf("POST %s at the derived cap = %d; want 202", tt.at, code)
			}

			signalled := time.Now()
			p.signal(syscall.SIGTERM)
			started := p.waitRecord("shutdown started", 5*time.Second)
			for k, want := range tt.phases {
				if got := started[k]; got != want {
					t.Errorf("shutdown started record: %s %v; want %s (derived)", k, got, want)
				}
			}
			if code := p.wait(budget + 5*time.Second); code != 0 {
				t.Fatalf("exit code = %d; want 0", code)
			}
			if took := time.Since(signalled); took > budget {
				t.Errorf("exited %s after SIGTERM; want within the shutdown budget it reported, %s", took, budget)
			}
			if strings.HasPrefix(tt.at, "/hello") {
				if code := <-done; code != http.StatusOK {
					t.Errorf("GET %s at the derived cap, in flight at SIGTERM = %d; want 200", tt.at, code)
				}
			}
			s := summary(t, p)
			if s["requests_cut"] != 0 || s["jobs_dropped"] != 0 || s["jobs_processed"] != s["jobs_accepted"] {
				t.Errorf("summary = %v; want nothing cut or dropped", s)
			}
		})
	}
}

// TestConfigRefusedWithFix: bad input stays bad on the real binary. A
// conflict between values set, a typo and an out-of-range value are all
// reported at once, exit 2, before anything listens; the conflict names what
// was set and gives a fix, the typo the name meant. With the fix applied and
// the typo corrected, it serves (logging JSON on a pipe, format auto).
func TestConfigRefusedWithFix(t *testing.T) {
	skipShort(t)
	t.Parallel()
	p := startRaw(t, "LAMEDUCK_SHUTDOWN_TIMEOUT=2s", "LAMEDUCK_MAX_DELAY=4s", "LAMEDUCK_PRESTOP_DELAI=1s", "LAMEDUCK_WORKERS=0")
	if code := p.wait(10 * time.Second); code != 2 {
		t.Fatalf("exit code = %d; want 2", code)
	}
	stderr := p.stderrText()
	for _, want := range []string{
		"LAMEDUCK_MAX_DELAY: 4s does not fit LAMEDUCK_SHUTDOWN_TIMEOUT (2s)",
		"LAMEDUCK_MAX_DELAY=4s (set), LAMEDUCK_SHUTDOWN_TIMEOUT=2s (set)",
		"fix: LAMEDUCK_MAX_DELAY=1s",
		"LAMEDUCK_PRESTOP_DELAI: not a variable lameduck reads, so its value would be ignored; did you mean LAMEDUCK_PRESTOP_DELAY?",
		"LAMEDUCK_WORKERS: must be between 1 and",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if p.find("serving") != nil || p.find("configuration derived") != nil {
		t.Errorf("it logged as if it started despite the bad configuration:\n%s", p.Log())
	}
	fix := regexp.MustCompile(`fix: (LAMEDUCK_MAX_DELAY=\S+?)[ ;(\n]`).FindStringSubmatch(stderr + "\n")
	if fix == nil {
		t.Fatalf("no fix of LAMEDUCK_MAX_DELAY in:\n%s", stderr)
	}
	fixed := startBinary(t, "LAMEDUCK_SHUTDOWN_TIMEOUT=2s", fix[1], "LAMEDUCK_PRESTOP_DELAY=1s", "LAMEDUCK_WORKERS=2",
		"LAMEDUCK_LOG_FORMAT=auto")
	fixed.signal(syscall.SIGTERM)
	if code := fixed.wait(10 * time.Second); code != 0 {
		t.Fatalf("with %s: exit code = %d; want 0", fix[1], code)
	}
}

// TestNewLoggerFormat: LAMEDUCK_LOG_FORMAT=auto logs text to a terminal
// (any character device: /dev/null stands in for one) and JSON to anything
// else; json and text hold whatever the output is.
func TestNewLoggerFormat(t *testing.T) {
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	file, err := os.Create(t.TempDir() + "/log")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	var buf strings.Builder
	tests := []struct {
		format string
		out    io.Writer
		text   bool
	}{
		{"auto", devNull, true},
		{"auto", w, false},
		{"auto", file, false},
		{"auto", &buf, false},
		{"json", devNull, false},
		{"text", w, true},
		{"text", &buf, true},
	}
	for _, tt := range tests {
		cfg := config.Config{LogFormat: tt.format, LogLevel: "info"}
		h := newLogger(cfg, tt.out).Handler()
		_, text := h.(*slog.TextHandler)
		if text != tt.text {
			t.Errorf("newLogger(LAMEDUCK_LOG_FORMAT=%s, %T) logs text %t; want %t", tt.format, tt.out, text, tt.text)
		}
	}
}
