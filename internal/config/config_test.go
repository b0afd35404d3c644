package config_test

import (
	"bytes"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lameduck/lameduck/internal/config"
)

// These tests change the process environment with t.Setenv, so none of them
// may call t.Parallel.

// clearEnv unsets every LAMEDUCK_* variable for the duration of the test, so
// the test sees only what it sets itself.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, config.Prefix+"_") {
			t.Setenv(k, "") // restores the original value at cleanup
			if err := os.Unsetenv(k); err != nil {
				t.Fatalf("Unsetenv(%q): %v", k, err)
			}
		}
	}
}

// setenv sets every variable in env for the duration of the test.
func setenv(t *testing.T, env map[string]string) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
}

// defaults is the configuration Load returns when nothing is set.
func defaults() config.Config {
	return config.Config{
		HTTPAddr:           ":8080",
		AdminAddr:          ":8086",
		HelloDelay:         0,
		MaxDelay:           4 * time.Second,
		MaxWork:            time.Second,
		MaxBody:            65536,
		QueueSize:          1000,
		Workers:            4,
		JobDuration:        50 * time.Millisecond,
		IdempotencyTTL:     10 * time.Minute,
		IdempotencyMaxKeys: 100000,

		IdempotencyMaxBytes: 4 << 20,
		MaxConns:            256,
		MaxRequests:         256,
		MaxHeaderBytes:      8192,
		ReadHeaderTimeout:   5 * time.Second,
		BodyTimeout:         5 * time.Second,
		WriteTimeout:        3 * time.Second,
		IdleTimeout:         2 * time.Minute,

		PrestopDelay:    5 * time.Second,
		PrestopMin:      5 * time.Second,
		PrestopQuiet:    time.Second,
		ShutdownTimeout: 15 * time.Second,
		DrainTimeout:    5 * time.Second,
		GracePeriod:     30 * time.Second,
		LogFormat:       "auto",
		LogLevel:        "info",
		QueueStream:     "LAMEDUCK_JOBS",
		QueueReplicas:   1,
	}
}

func TestLoadDefaults(t *testing.T) {
	clearEnv(t)
	got, err := config.Load()
	if err != nil {
		t.Fatalf("Load() with nothing set: %v", err)
	}
	if want := defaults(); got != want {
		t.Errorf("Load() with nothing set = %+v; want %+v", got, want)
	}
	if got, want := got.Budget(), 25*time.Second; got != want {
		t.Errorf("Budget() of the defaults = %s; want %s", got, want)
	}
}

func TestLoadIgnoresUnprefixedVariables(t *testing.T) {
	clearEnv(t)
	// Bad values: if any of these were read, Load would fail or differ.
	setenv(t, map[string]string{
		"WORKERS":          "0",
		"PORT":             "1",
		"PRESTOP_DELAY":    "not-a-duration",
		"HTTP_ADDR":        "",
		"ADMIN_ADDR":       ":1",
		"GRACE_PERIOD":     "1s",
		"QUEUE_SIZE":       "-1",
		"LOG_LEVEL":        "loud",
		"SHUTDOWN_TIMEOUT": "x",
	})
	got, err := config.Load()
	if err != nil {
		t.Fatalf("Load() with unprefixed variables set: %v", err)
	}
	if want := defaults(); got != want {
		t.Errorf("Load() with unprefixed variables set = %+v; want %+v", got, want)
	}
}

func TestLoadRejectsBadValues(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		// want are substrings of the error; the first is the variable at fault.
		want []string
	}{
		{"unparsable duration", map[string]string{"LAMEDUCK_PRESTOP_DELAY": "5 seconds"},
			[]string{"LAMEDUCK_PRESTOP_DELAY", "5 seconds", "not a duration such as"}},
		{"unparsable size", map[string]string{"LAMEDUCK_MAX_BODY": "64k"},
			[]string{"LAMEDUCK_MAX_BODY", "64k"}},
		{"negative size", map[string]string{"LAMEDUCK_MAX_BODY": "-1"},
			[]string{"LAMEDUCK_MAX_BODY", "-1"}},
		{"zero queue size", map[string]string{"LAMEDUCK_QUEUE_SIZE": "0"},
			[]string{"LAMEDUCK_QUEUE_SIZE"}},
		{"queue URL of another scheme", map[string]string{"LAMEDUCK_QUEUE_URL": "http://nats:4222"},
			[]string{"LAMEDUCK_QUEUE_URL", "nats://host:port"}},
		{"queue URL with no host", map[string]string{"LAMEDUCK_QUEUE_URL": "nats://a:4222,nats://"},
			[]string{"LAMEDUCK_QUEUE_URL", "has no host"}},
		{"stream name not one token", map[string]string{"LAMEDUCK_QUEUE_URL": "nats://a:4222", "LAMEDUCK_QUEUE_STREAM": "jobs.a"},
			[]string{"LAMEDUCK_QUEUE_STREAM", "letters, digits"}},
		{"dedupe window too short for JetStream", map[string]string{"LAMEDUCK_QUEUE_URL": "nats://a:4222", "LAMEDUCK_IDEMPOTENCY_TTL": "50ms"},
			[]string{"LAMEDUCK_IDEMPOTENCY_TTL", "at least 100ms"}},
		{"six stream replicas", map[string]string{"LAMEDUCK_QUEUE_URL": "nats://a:4222", "LAMEDUCK_QUEUE_REPLICAS": "6"},
			[]string{"LAMEDUCK_QUEUE_REPLICAS", "between 1 and 5"}},
		{"zero workers", map[string]string{"LAMEDUCK_WORKERS": "0"},
			[]string{"LAMEDUCK_WORKERS", "between 1 and"}},
		{"zero idempotency keys", map[string]string{"LAMEDUCK_IDEMPOTENCY_MAX_KEYS": "0"},
			[]string{"LAMEDUCK_IDEMPOTENCY_MAX_KEYS"}},
		{"queue too large for memory", map[string]string{"LAMEDUCK_QUEUE_SIZE": "100000000"},
			[]string{"LAMEDUCK_QUEUE_SIZE", "between 1 and 1000000"}},
		{"duration beyond a day", map[string]string{"LAMEDUCK_DRAIN_TIMEOUT": "25h", "LAMEDUCK_GRACE_PERIOD": "26h"},
			[]string{"LAMEDUCK_DRAIN_TIMEOUT", "at most 24h"}},
		{"every unparsable value at once", map[string]string{"LAMEDUCK_WORKERS": "x", "LAMEDUCK_PRESTOP_DELAY": "soon",
			"LAMEDUCK_QUEUE_SIZE": "1e9"}, []string{"LAMEDUCK_WORKERS", "LAMEDUCK_PRESTOP_DELAY", "LAMEDUCK_QUEUE_SIZE"}},
		{"unknown log level", map[string]string{"LAMEDUCK_LOG_LEVEL": "loud"},
			[]string{"LAMEDUCK_LOG_LEVEL", "loud"}},
		{"unknown log format", map[string]string{"LAMEDUCK_LOG_FORMAT": "xml"},
			[]string{"LAMEDUCK_LOG_FORMAT", "xml"}},
		{"negative hello delay", map[string]string{"LAMEDUCK_HELLO_DELAY": "-1s"},
			[]string{"LAMEDUCK_HELLO_DELAY", "negative"}},
		{"negative max delay", map[string]string{"LAMEDUCK_MAX_DELAY": "-1s"},
			[]string{"LAMEDUCK_MAX_DELAY", "negative"}},
		{"negative job duration", map[string]string{"LAMEDUCK_JOB_DURATION": "-1ms"},
			[]string{"LAMEDUCK_JOB_DURATION", "negative"}},
		{"negative idempotency ttl", map[string]string{"LAMEDUCK_IDEMPOTENCY_TTL": "-1m"},
			[]string{"LAMEDUCK_IDEMPOTENCY_TTL", "negative"}},
		{"negative prestop delay", map[string]string{"LAMEDUCK_PRESTOP_DELAY": "-1s"},
			[]string{"LAMEDUCK_PRESTOP_DELAY", "negative"}},
		{"negative prestop minimum", map[string]string{"LAMEDUCK_PRESTOP_MIN": "-1s"},
			[]string{"LAMEDUCK_PRESTOP_MIN", "negative"}},
		{"zero prestop quiet period", map[string]string{"LAMEDUCK_PRESTOP_QUIET": "0s"},
			[]string{"LAMEDUCK_PRESTOP_QUIET", "positive"}},
		{"negative shutdown timeout", map[string]string{"LAMEDUCK_SHUTDOWN_TIMEOUT": "-1s"},
			[]string{"LAMEDUCK_SHUTDOWN_TIMEOUT", "negative"}},
		{"zero shutdown timeout", map[string]string{"LAMEDUCK_SHUTDOWN_TIMEOUT": "0s"},
			[]string{"LAMEDUCK_SHUTDOWN_TIMEOUT", "positive"}},
		{"shutdown timeout shorter than any request", map[string]string{"LAMEDUCK_SHUTDOWN_TIMEOUT": "500ms"},
			[]string{"LAMEDUCK_SHUTDOWN_TIMEOUT: 500ms is shorter than the 1s", "make it at least 1s"}},
		{"drain timeout shorter than any job", map[string]string{"LAMEDUCK_DRAIN_TIMEOUT": "2ms"},
			[]string{"LAMEDUCK_DRAIN_TIMEOUT: 2ms cannot finish even one job", "make it at least 3ms"}},
		{"negative drain timeout", map[string]string{"LAMEDUCK_DRAIN_TIMEOUT": "-1s"},
			[]string{"LAMEDUCK_DRAIN_TIMEOUT", "negative"}},
		{"negative grace period", map[string]string{"LAMEDUCK_GRACE_PERIOD": "-30s"},
			[]string{"LAMEDUCK_GRACE_PERIOD", "negative"}},
		{"hello delay over max delay", map[string]string{"LAMEDUCK_HELLO_DELAY": "2s", "LAMEDUCK_MAX_DELAY": "1s", "LAMEDUCK_JOB_DURATION": "0s"},
			[]string{"LAMEDUCK_HELLO_DELAY", "LAMEDUCK_MAX_DELAY"}},
		{"job duration over max work", map[string]string{"LAMEDUCK_JOB_DURATION": "2s", "LAMEDUCK_MAX_WORK": "1s"},
			[]string{"LAMEDUCK_JOB_DURATION", "LAMEDUCK_MAX_WORK"}},
		{"negative max work", map[string]string{"LAMEDUCK_MAX_WORK": "-1s", "LAMEDUCK_JOB_DURATION": "0s"},
			[]string{"LAMEDUCK_MAX_WORK", "negative"}},
		{"empty http addr", map[string]string{"LAMEDUCK_HTTP_ADDR": ""},
			[]string{"LAMEDUCK_HTTP_ADDR", "empty"}},
		{"same addresses", map[string]string{"LAMEDUCK_HTTP_ADDR": ":9000", "LAMEDUCK_ADMIN_ADDR": ":9000"},
			[]string{"LAMEDUCK_ADMIN_ADDR", "LAMEDUCK_HTTP_ADDR"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			setenv(t, tt.env)
			got, err := config.Load()
			if !errors.Is(err, config.ErrInvalid) {
				t.Fatalf("Load() with %v = %+v, %v; want an error wrapping ErrInvalid", tt.env, got, err)
			}
			if got != (config.Config{}) {
				t.Errorf("Load() with %v returned config %+v alongside its error; want the zero Config", tt.env, got)
			}
			for _, s := range tt.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("Load() with %v = error %q; want it to contain %q", tt.env, err, s)
				}
			}
		})
	}
}

func TestLoadReportsEveryProblemAtOnce(t *testing.T) {
	clearEnv(t)
	setenv(t, map[string]string{
		"LAMEDUCK_WORKERS":       "0",
		"LAMEDUCK_LOG_LEVEL":     "loud",
		"LAMEDUCK_LOG_FORMAT":    "xml",
		"LAMEDUCK_DRAIN_TIMEOUT": "-1s",
		"LAMEDUCK_HELLO_DELAY":   "1h",
	})
	_, err := config.Load()
	if !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("Load() = %v; want an error wrapping ErrInvalid", err)
	}
	for _, name := range []string{
		"LAMEDUCK_WORKERS", "LAMEDUCK_LOG_LEVEL", "LAMEDUCK_LOG_FORMAT", "LAMEDUCK_DRAIN_TIMEOUT", "LAMEDUCK_HELLO_DELAY",
	} {
		if !strings.Contains(err.Error(), name+":") {
			t.Errorf("Load() = error %q; want it to name %s", err, name)
		}
	}
}

func TestLoadBudget(t *testing.T) {
	tests := []struct {
		name  string
		grace string
		ok    bool
	}{
		// prestop 2s + shutdown 3s + drain 4s = 9s, plus 1s spare = 10s.
		{"exactly 1s spare", "10s", true},
		{"more than 1s spare", "11s", true},
		{"1ns short of 1s spare", "9.999999999s", false},
		{"no spare", "9s", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			setenv(t, map[string]string{
				"LAMEDUCK_PRESTOP_DELAY":    "2s",
				"LAMEDUCK_SHUTDOWN_TIMEOUT": "3s",
				"LAMEDUCK_MAX_DELAY":        "2s",
				"LAMEDUCK_DRAIN_TIMEOUT":    "4s",
				"LAMEDUCK_GRACE_PERIOD":     tt.grace,
			})
			c, err := config.Load()
			if tt.ok {
				if err != nil {
					t.Fatalf("Load() with LAMEDUCK_GRACE_PERIOD=%s: %v; want no error", tt.grace, err)
				}
				if got, want := c.Budget(), 9*time.Second; got != want {
					t.Errorf("Budget() = %s; want %s", got, want)
				}
				return
			}
			if !errors.Is(err, config.ErrInvalid) {
				t.Fatalf("Load() with LAMEDUCK_GRACE_PERIOD=%s = %v; want an error wrapping ErrInvalid", tt.grace, err)
			}
			if !strings.Contains(err.Error(), "LAMEDUCK_GRACE_PERIOD") {
				t.Errorf("Load() with LAMEDUCK_GRACE_PERIOD=%s = error %q; want it to name LAMEDUCK_GRACE_PERIOD", tt.grace, err)
			}
		})
	}
}

// TestValidateShutdownBudget: no request may be allowed that the shutdown
// cannot finish, nor a default job; every variable at fault is named.
func TestValidateShutdownBudget(t *testing.T) {
	tests := []struct {
		name   string
		change func(*config.Config)
		want   []string // substrings of the error; none for a valid configuration
	}{
		{"the defaults", func(*config.Config) {}, nil},
		{"max delay with exactly 1s spare", func(c *config.Config) { c.MaxDelay = 14 * time.Second }, nil},
		{"max delay without 1s spare", func(c *config.Config) { c.MaxDelay = 14*time.Second + 1 },
			[]string{"LAMEDUCK_MAX_DELAY", "LAMEDUCK_SHUTDOWN_TIMEOUT", "fix: LAMEDUCK_MAX_DELAY=14s"}},
		{"max delay over the shutdown timeout", func(c *config.Config) { c.MaxDelay, c.HelloDelay = 30*time.Second, 20*time.Second },
			[]string{"LAMEDUCK_MAX_DELAY", "LAMEDUCK_SHUTDOWN_TIMEOUT"}},
		{"max work exactly fits the drain", func(c *config.Config) {
			c.MaxWork = c.DrainBudget() - config.JobAllowance
		}, nil},
		{"max work just over the drain budget", func(c *config.Config) { c.MaxWork = c.DrainBudget() - config.JobAllowance + 1 },
			[]string{"LAMEDUCK_MAX_WORK", "LAMEDUCK_DRAIN_TIMEOUT"}},
		{"default job over the drain", func(c *config.Config) {
			c.DrainTimeout = 50 * time.Millisecond // a 47.5 ms budget
		}, []string{"LAMEDUCK_JOB_DURATION", "LAMEDUCK_DRAIN_TIMEOUT", "LAMEDUCK_MAX_WORK"}},
		{"no drain at all", func(c *config.Config) { c.DrainTimeout = 0 },
			[]string{"LAMEDUCK_DRAIN_TIMEOUT: must be positive"}},
		{"every problem at once", func(c *config.Config) {
			c.MaxDelay, c.MaxWork, c.JobDuration = 15*time.Second, 5*time.Second, 5*time.Second
		}, []string{"LAMEDUCK_MAX_DELAY:", "LAMEDUCK_MAX_WORK:", "LAMEDUCK_JOB_DURATION:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := defaults()
			tt.change(&c)
			err := c.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Errorf("Validate() = %v; want nil", err)
				}
				return
			}
			if !errors.Is(err, config.ErrInvalid) {
				t.Fatalf("Validate() = %v; want an error wrapping ErrInvalid", err)
			}
			for _, s := range tt.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("Validate() = %q; want it to contain %q", err, s)
				}
			}
		})
	}
}

// TestWarnings: a queue the budget can never fill is allowed, and said.
func TestWarnings(t *testing.T) {
	if w := defaults().Warnings(); len(w) != 0 {
		t.Errorf("Warnings() of the defaults = %q; want none", w)
	}
	if got, want := defaults().DrainBudget(), 4750*time.Millisecond; got != want {
		t.Errorf("DrainBudget() of the defaults = %s; want %s", got, want)
	}
	// 4 workers × 4.75 s holds at most 9,500 jobs of ?work=0s (2 ms each).
	c := defaults()
	c.QueueSize = 9_500
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("Warnings() with LAMEDUCK_QUEUE_SIZE=9500 = %q; want none: the budget can fill it", w)
	}
	c.QueueSize = 9_501
	w := c.Warnings()
	if len(w) != 1 || !strings.Contains(w[0], "LAMEDUCK_QUEUE_SIZE=9501") || !strings.Contains(w[0], "9500") {
		t.Errorf("Warnings() with LAMEDUCK_QUEUE_SIZE=9501 = %q; want one naming it and the 9500 the budget holds", w)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate() with LAMEDUCK_QUEUE_SIZE=9501 = %v; want nil: a warning, not a refusal", err)
	}

	// A quiet period as long as the maximum makes an adaptive delay last its
	// maximum, always.
	c = defaults()
	c.PrestopMin, c.PrestopQuiet = time.Second, c.PrestopDelay-1
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("Warnings() with LAMEDUCK_PRESTOP_QUIET just under the maximum = %q; want none", w)
	}
	c.PrestopQuiet = c.PrestopDelay
	if w := c.Warnings(); len(w) != 1 || !strings.Contains(w[0], "LAMEDUCK_PRESTOP_QUIET=5s") || !strings.Contains(w[0], "always lasts its maximum") {
		t.Errorf("Warnings() with LAMEDUCK_PRESTOP_QUIET=5s, the maximum = %q; want one saying the delay always lasts its maximum", w)
	}
}

func TestValidate(t *testing.T) {
	// Validate works on a literal too, without the environment.
	if err := defaults().Validate(); err != nil {
		t.Errorf("Validate() of the defaults = %v; want nil", err)
	}
	c := defaults()
	c.Workers = -3
	if err := c.Validate(); !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), "LAMEDUCK_WORKERS") {
		t.Errorf("Validate() with Workers -3 = %v; want an ErrInvalid naming LAMEDUCK_WORKERS", err)
	}
}

func TestLevel(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"debug", "DEBUG", true},
		{"info", "INFO", true},
		{"INFO", "INFO", true},
		{"warn", "WARN", true},
		{"warning", "WARN", true},
		{"error", "ERROR", true},
		{"", "", false},
		{"trace", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := config.Config{LogLevel: tt.in}.Level()
			if (err == nil) != tt.ok {
				t.Fatalf("Level() of %q: err = %v; want ok %t", tt.in, err, tt.ok)
			}
			if tt.ok && got.String() != tt.want {
				t.Errorf("Level() of %q = %s; want %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestUsageListsEveryVariable(t *testing.T) {
	var buf bytes.Buffer
	if err := config.Usage(&buf); err != nil {
		t.Fatalf("Usage: %v", err)
	}
	out := buf.String()
	names := []string{
		"LAMEDUCK_HTTP_ADDR", "LAMEDUCK_ADMIN_ADDR", "LAMEDUCK_HELLO_DELAY", "LAMEDUCK_MAX_DELAY",
		"LAMEDUCK_MAX_WORK", "LAMEDUCK_MAX_BODY", "LAMEDUCK_QUEUE_SIZE", "LAMEDUCK_WORKERS", "LAMEDUCK_JOB_DURATION",
		"LAMEDUCK_IDEMPOTENCY_TTL", "LAMEDUCK_IDEMPOTENCY_MAX_KEYS", "LAMEDUCK_IDEMPOTENCY_MAX_BYTES",
		"LAMEDUCK_MAX_CONNS", "LAMEDUCK_MAX_REQUESTS", "LAMEDUCK_MAX_HEADER_BYTES", "LAMEDUCK_READ_HEADER_TIMEOUT", "LAMEDUCK_BODY_TIMEOUT",
		"LAMEDUCK_WRITE_TIMEOUT", "LAMEDUCK_IDLE_TIMEOUT", "LAMEDUCK_PRESTOP_DELAY", "LAMEDUCK_PRESTOP_MIN", "LAMEDUCK_PRESTOP_QUIET",
		"LAMEDUCK_SHUTDOWN_TIMEOUT", "LAMEDUCK_DRAIN_TIMEOUT", "LAMEDUCK_GRACE_PERIOD",
		"LAMEDUCK_LOG_FORMAT", "LAMEDUCK_LOG_LEVEL", "LAMEDUCK_QUEUE_URL", "LAMEDUCK_QUEUE_STREAM", "LAMEDUCK_QUEUE_REPLICAS",
	}
	exported := 0
	for f := range reflect.TypeFor[config.Config]().Fields() {
		if f.IsExported() {
			exported++
		}
	}
	if got, want := exported, len(names); got != want {
		t.Fatalf("Config has %d exported fields; this test lists %d variables: update the list", got, want)
	}
	for _, name := range names {
		if !strings.Contains(out, name) {
			t.Errorf("Usage output does not list %s:\n%s", name, out)
		}
	}
}

func TestAckWait(t *testing.T) {
	tests := []struct {
		maxWork, want time.Duration
	}{
		{0, time.Second},
		{250 * time.Millisecond, time.Second},
		{time.Second, time.Second},
		{4 * time.Second, 4 * time.Second},
		{10 * time.Second, 10 * time.Second},
		{time.Minute, 10 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.maxWork.String(), func(t *testing.T) {
			if got := (config.Config{MaxWork: tt.maxWork}).AckWait(); got != tt.want {
				t.Errorf("AckWait() with MAX_WORK=%s = %s; want %s", tt.maxWork, got, tt.want)
			}
		})
	}
}
