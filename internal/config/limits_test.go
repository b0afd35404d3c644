package config_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/lameduck/lameduck/internal/config"
)

func TestLoadRejectsClientLimits(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want []string // substrings of the error; none may be missing
	}{
		{"typo in a name", map[string]string{"LAMEDUCK_PRESTOPDELAY": "1s"},
			[]string{"LAMEDUCK_PRESTOPDELAY", "did you mean LAMEDUCK_PRESTOP_DELAY"}},
		{"unknown name", map[string]string{"LAMEDUCK_COLOUR": "blue"},
			[]string{"LAMEDUCK_COLOUR", "not a variable lameduck reads"}},
		{"lower-case prefix", map[string]string{"lameduck_workers": "2"},
			[]string{"lameduck_workers", "did you mean LAMEDUCK_WORKERS"}},
		{"service link", map[string]string{"LAMEDUCK_PORT": "tcp://10.0.0.1:80"},
			[]string{"LAMEDUCK_PORT", "enableServiceLinks"}},
		{"octal-looking integer", map[string]string{"LAMEDUCK_WORKERS": "010"},
			[]string{"LAMEDUCK_WORKERS", "leading zero"}},
		{"hex integer", map[string]string{"LAMEDUCK_QUEUE_SIZE": "0x10"},
			[]string{"LAMEDUCK_QUEUE_SIZE", "decimal"}},
		{"underscored integer", map[string]string{"LAMEDUCK_MAX_BODY": "1_000"},
			[]string{"LAMEDUCK_MAX_BODY", "decimal"}},
		{"address without a port", map[string]string{"LAMEDUCK_HTTP_ADDR": "localhost"},
			[]string{"LAMEDUCK_HTTP_ADDR", "not a listen address"}},
		{"named port", map[string]string{"LAMEDUCK_HTTP_ADDR": ":http"},
			[]string{"LAMEDUCK_HTTP_ADDR", "port"}},
		{"port out of range", map[string]string{"LAMEDUCK_ADMIN_ADDR": ":65536"},
			[]string{"LAMEDUCK_ADMIN_ADDR", "port"}},
		{"bad IP", map[string]string{"LAMEDUCK_HTTP_ADDR": "256.0.0.1:80"},
			[]string{"LAMEDUCK_HTTP_ADDR", "not an IP address"}},
		{"bad host", map[string]string{"LAMEDUCK_HTTP_ADDR": "no such host:80"},
			[]string{"LAMEDUCK_HTTP_ADDR", "host name"}},
		{"zero idempotency ttl", map[string]string{"LAMEDUCK_IDEMPOTENCY_TTL": "0s"},
			[]string{"LAMEDUCK_IDEMPOTENCY_TTL", "positive"}},
		{"zero drain timeout", map[string]string{"LAMEDUCK_DRAIN_TIMEOUT": "0s"},
			[]string{"LAMEDUCK_DRAIN_TIMEOUT", "positive"}},
		{"zero timeouts", map[string]string{"LAMEDUCK_READ_HEADER_TIMEOUT": "0s", "LAMEDUCK_BODY_TIMEOUT": "0s",
			"LAMEDUCK_WRITE_TIMEOUT": "0s", "LAMEDUCK_IDLE_TIMEOUT": "0s"},
			[]string{"LAMEDUCK_READ_HEADER_TIMEOUT", "LAMEDUCK_BODY_TIMEOUT", "LAMEDUCK_WRITE_TIMEOUT", "LAMEDUCK_IDLE_TIMEOUT"}},
		{"caps out of range", map[string]string{"LAMEDUCK_MAX_CONNS": "0", "LAMEDUCK_MAX_REQUESTS": "0", "LAMEDUCK_MAX_HEADER_BYTES": "100",
			"LAMEDUCK_IDEMPOTENCY_MAX_BYTES": "2000000000"},
			[]string{"LAMEDUCK_MAX_CONNS", "LAMEDUCK_MAX_REQUESTS", "LAMEDUCK_MAX_HEADER_BYTES", "LAMEDUCK_IDEMPOTENCY_MAX_BYTES"}},
		{"syntax and range errors together", map[string]string{"LAMEDUCK_WORKERS": "x", "LAMEDUCK_QUEUE_SIZE": "0",
			"LAMEDUCK_TYPO": "1", "LAMEDUCK_LOG_LEVEL": "loud"},
			[]string{"LAMEDUCK_WORKERS", "LAMEDUCK_QUEUE_SIZE: must be between", "LAMEDUCK_TYPO", "LAMEDUCK_LOG_LEVEL"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			setenv(t, tt.env)
			got, err := config.Load()
			if !errors.Is(err, config.ErrInvalid) {
				t.Fatalf("Load() with %v = %+v, %v; want an error wrapping ErrInvalid", tt.env, got, err)
			}
			for _, s := range tt.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("Load() with %v = error %q; want it to contain %q", tt.env, err, s)
				}
			}
		})
	}
}

// TestLoadSyntaxErrorHidesItsRules: a rule that involves a variable that did
// not parse is not reported with that variable's default standing in.
func TestLoadSyntaxErrorHidesItsRules(t *testing.T) {
	clearEnv(t)
	setenv(t, map[string]string{"LAMEDUCK_PRESTOP_DELAY": "soon", "LAMEDUCK_GRACE_PERIOD": "21s"})
	_, err := config.Load()
	if err == nil {
		t.Fatal("Load() = nil; want the syntax error")
	}
	if got := strings.Count(err.Error(), "LAMEDUCK_GRACE_PERIOD"); got != 0 {
		t.Errorf("Load() = %q; want no budget error (it would use the default preStop delay)", err)
	}
	// The environment is as it was: the bad value is back.
	if got, _ := lookup("LAMEDUCK_PRESTOP_DELAY"); got != "soon" {
		t.Errorf("LAMEDUCK_PRESTOP_DELAY after Load() = %q; want it restored to %q", got, "soon")
	}
}

func TestLoadAcceptsDecimalAndAddresses(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
	}{
		{"plain integers", map[string]string{"LAMEDUCK_WORKERS": "10", "LAMEDUCK_QUEUE_SIZE": "+7", "LAMEDUCK_MAX_CONNS": "512"}},
		{"IPv6 and host names", map[string]string{"LAMEDUCK_HTTP_ADDR": "[::1]:8080", "LAMEDUCK_ADMIN_ADDR": "localhost:0"}},
		{"IPv4", map[string]string{"LAMEDUCK_HTTP_ADDR": "0.0.0.0:80", "LAMEDUCK_ADMIN_ADDR": "127.0.0.1:8086"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			setenv(t, tt.env)
			if _, err := config.Load(); err != nil {
				t.Errorf("Load() with %v = %v; want nil", tt.env, err)
			}
		})
	}
	clearEnv(t)
	t.Setenv("LAMEDUCK_WORKERS", "10")
	if c, err := config.Load(); err != nil || c.Workers != 10 {
		t.Errorf("Load() with LAMEDUCK_WORKERS=10 = %d, %v; want 10 (decimal)", c.Workers, err)
	}
}

func lookup(k string) (string, bool) { return os.LookupEnv(k) }
