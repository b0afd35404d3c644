package config_test

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/kelseyhightower/envconfig"

	"github.com/lameduck/lameduck/internal/config"
)

// TestLoadSuggestsForTypos: an unknown LAMEDUCK_ variable near a real one
// (a letter wrong, missing, extra or swapped; case and underscores; a word
// too many) is refused with the name it most likely meant and says its
// value would be ignored; one far from any suggests nothing.
func TestLoadSuggestsForTypos(t *testing.T) {
	typos := []struct{ typo, want string }{
		{"LAMEDUCK_PRESTOP_DELAI", "LAMEDUCK_PRESTOP_DELAY"},      // wrong letter
		{"LAMEDUCK_WORKER", "LAMEDUCK_WORKERS"},                   // missing letter
		{"LAMEDUCK_SHUTDOWN_TIMOUT", "LAMEDUCK_SHUTDOWN_TIMEOUT"}, // missing letter
		{"LAMEDUCK_PRESTOP_DELAYS", "LAMEDUCK_PRESTOP_DELAY"},     // extra letter
		{"LAMEDUCK_DRIAN_TIMEOUT", "LAMEDUCK_DRAIN_TIMEOUT"},      // swapped letters
		{"LAMEDUCK_SHUTDOWN_TIEMOUT", "LAMEDUCK_SHUTDOWN_TIMEOUT"},
		{"LAMEDUCK_QUEUE_SIZ", "LAMEDUCK_QUEUE_SIZE"},
		{"LAMEDUCK_LOG_LEVL", "LAMEDUCK_LOG_LEVEL"},
		{"LAMEDUCK_MAX_REQUEST", "LAMEDUCK_MAX_REQUESTS"},
		{"LAMEDUCK_IDEMPOTENCY_MAX_KEY", "LAMEDUCK_IDEMPOTENCY_MAX_KEYS"},
		{"LAMEDUCK_MAX_WROK", "LAMEDUCK_MAX_WORK"},
		{"LAMEDUCK_HELO_DELAY", "LAMEDUCK_HELLO_DELAY"},
		{"LAMEDUCK_PRESTOPDELAY", "LAMEDUCK_PRESTOP_DELAY"}, // underscores
		{"LAMEDUCK_GRACEPERIOD", "LAMEDUCK_GRACE_PERIOD"},
		{"lameduck_workers", "LAMEDUCK_WORKERS"},                   // case
		{"Lameduck_Max_Delay", "LAMEDUCK_MAX_DELAY"},               // case
		{"LAMEDUCK_GRACE_PERIOD_SECONDS", "LAMEDUCK_GRACE_PERIOD"}, // a word too many
		{"LAMEDUCK_DRIAN_TIMEOTU", "LAMEDUCK_DRAIN_TIMEOUT"},       // two swaps: 2, where other edits would take 4
		{"LAMEDUCK_SHUTDONW_TIEMOUT", "LAMEDUCK_SHUTDOWN_TIMEOUT"}, // two swaps
		{"LAMEDUCK_ADMIN_ADDRESS", "LAMEDUCK_ADMIN_ADDR"},
		{"LAMEDUCK_MAX_BODY_BYTES", "LAMEDUCK_MAX_BODY"},
		{"LAMEDUCK_TTL", "LAMEDUCK_IDEMPOTENCY_TTL"}, // a part of one
		{"LAMEDUCK_LOG", "LAMEDUCK_LOG_LEVEL or LAMEDUCK_LOG_FORMAT"},
		{"LAMEDUCK_ADDR", "LAMEDUCK_HTTP_ADDR or LAMEDUCK_ADMIN_ADDR"},
	}
	for _, tt := range typos {
		t.Run(tt.typo, func(t *testing.T) {
			clearEnv(t)
			t.Setenv(tt.typo, "1")
			_, err := config.Load()
			if !errors.Is(err, config.ErrInvalid) {
				t.Fatalf("Load() with %s set = %v; want an error wrapping ErrInvalid", tt.typo, err)
			}
			want := tt.typo + ": not a variable lameduck reads, so its value would be ignored; did you mean " + tt.want + "?"
			if err.Error() != "invalid configuration: "+want {
				t.Errorf("Load() with %s set = %q; want %q", tt.typo, err, want)
			}
		})
	}
	far := []string{"LAMEDUCK_COLOUR", "LAMEDUCK_TYPO", "LAMEDUCK_DATABASE_URL", "LAMEDUCK_PODS", "LAMEDUCK_VERSION",
		"LAMEDUCK_DEBUG", "LAMEDUCK_SECRET", "LAMEDUCK_X", "LAMEDUCK_ER", "LAMEDUCK_LO" /* too short a part */, "LAMEDUCK_ID",
		"LAMEDUCK_TIMEOUT", "LAMEDUCK_MAX" /* too many variables end or begin so: none stands out */}
	for _, name := range far {
		t.Run(name, func(t *testing.T) {
			clearEnv(t)
			t.Setenv(name, "1")
			_, err := config.Load()
			if !errors.Is(err, config.ErrInvalid) {
				t.Fatalf("Load() with %s set = %v; want an error wrapping ErrInvalid", name, err)
			}
			if msg := err.Error(); strings.Contains(msg, "did you mean") || !strings.Contains(msg, name+": not a variable lameduck reads, so its value would be ignored") {
				t.Errorf("Load() with %s set = %q; want it refused as unknown, with no suggestion", name, msg)
			}
		})
	}
}

// TestUsageGroups: -h prints the variables grouped by what they govern, each
// once, in the order envconfig (and so the manifest checks) list them, with
// the rules that derive one from another; no other line starts with a
// variable's name, since tools read those lines as the list.
func TestUsageGroups(t *testing.T) {
	var buf bytes.Buffer
	if err := config.Usage(&buf); err != nil {
		t.Fatalf("Usage: %v", err)
	}
	out := buf.String()
	var keys strings.Builder
	if err := envconfig.Usagef(config.Prefix, &config.Config{}, &keys, "{{range .}}{{usage_key .}}\n{{end}}"); err != nil {
		t.Fatal(err)
	}
	var listed []string
	group := map[string]string{}
	title := ""
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
		case strings.HasPrefix(f[0], config.Prefix+"_"): // what the manifest checks read as a variable
			listed = append(listed, f[0])
			group[f[0]] = title
		case !strings.HasPrefix(line, " "):
			title = line
		}
	}
	if want := strings.Fields(keys.String()); !slices.Equal(listed, want) {
		t.Errorf("Usage lists\n%q\nwant\n%q", listed, want)
	}
	groups := map[string][]string{
		"Shutdown budget": {"PRESTOP_DELAY", "PRESTOP_MIN", "PRESTOP_QUIET", "SHUTDOWN_TIMEOUT", "DRAIN_TIMEOUT", "GRACE_PERIOD"},
		"Requests":        {"HELLO_DELAY", "MAX_DELAY", "MAX_CONNS", "MAX_REQUESTS", "READ_HEADER_TIMEOUT", "IDLE_TIMEOUT"},
		"Jobs":            {"QUEUE_SIZE", "WORKERS", "JOB_DURATION", "MAX_WORK", "MAX_BODY", "IDEMPOTENCY_TTL"},
		"Logging":         {"LOG_FORMAT", "LOG_LEVEL"},
		"Listeners":       {"HTTP_ADDR", "ADMIN_ADDR"},
	}
	for g, names := range groups {
		for _, n := range names {
			if got := group[config.Prefix+"_"+n]; !strings.HasPrefix(got, g) {
				t.Errorf("Usage lists %s_%s under %q; want under %q", config.Prefix, n, got, g)
			}
		}
	}
	flat := strings.Join(strings.Fields(out), " ") // the rules are wrapped
	for _, want := range []string{
		"LAMEDUCK_GRACE_PERIOD Duration 30s", // with its default
		"GRACE_PERIOD is never derived",
		"in proportion to their defaults, none below 1s, 2s and 1s",
		"SHUTDOWN_TIMEOUT left unset grows to hold MAX_DELAY + 1s",
		"in between it ends once no connection or request has arrived for PRESTOP_QUIET",
		"PRESTOP_DELAY left unset grows to a PRESTOP_MIN set above it",
		"MAX_DELAY + 1s must fit in SHUTDOWN_TIMEOUT",
		"QUEUE_SIZE left unset shrinks",
		"LAMEDUCK_LOG_FORMAT String auto",
	} {
		if !strings.Contains(flat, want) {
			t.Errorf("Usage output lacks %q:\n%s", want, out)
		}
	}
}
