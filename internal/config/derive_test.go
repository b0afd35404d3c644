package config_test

import (
	"errors"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lameduck/lameduck/internal/config"
)

// TestLoadDerives: a limit left unset bends to the values set, and each note
// says what moved, from what, and whether that was set or derived.
func TestLoadDerives(t *testing.T) {
	tests := []struct {
		name  string
		env   map[string]string
		check func(config.Config) bool // the values that matter
		notes []string                 // each note begins with one of these, in this order
	}{
		{"the request cap follows the shutdown timeout",
			map[string]string{"LAMEDUCK_SHUTDOWN_TIMEOUT": "2s"},
			func(c config.Config) bool { return c.MaxDelay == time.Second },
			[]string{"LAMEDUCK_MAX_DELAY=1s (default 4s) derived from LAMEDUCK_SHUTDOWN_TIMEOUT=2s (set): "}},
		{"the job cap follows the drain timeout",
			map[string]string{"LAMEDUCK_DRAIN_TIMEOUT": "1s"},
			func(c config.Config) bool {
				return c.MaxWork == 948*time.Millisecond && c.MaxWork+config.JobAllowance <= c.DrainBudget()
			},
			[]string{"LAMEDUCK_MAX_WORK=948ms (default 1s) derived from LAMEDUCK_DRAIN_TIMEOUT=1s (set): "}},
		{"the phases follow the grace period, in proportion",
			map[string]string{"LAMEDUCK_GRACE_PERIOD": "10s"},
			func(c config.Config) bool {
				return c.PrestopDelay == 1800*time.Millisecond && c.ShutdownTimeout == 5400*time.Millisecond &&
					c.DrainTimeout == 1800*time.Millisecond && c.Budget() == 9*time.Second
			},
			[]string{
				"LAMEDUCK_PRESTOP_DELAY=1.8s (default 5s) derived from LAMEDUCK_GRACE_PERIOD=10s (set): ",
				"LAMEDUCK_SHUTDOWN_TIMEOUT=5.4s (default 15s) derived from LAMEDUCK_GRACE_PERIOD=10s (set): ",
				"LAMEDUCK_DRAIN_TIMEOUT=1.8s (default 5s) derived from LAMEDUCK_GRACE_PERIOD=10s (set): ",
				"LAMEDUCK_PRESTOP_MIN=1.8s (default 5s) derived from LAMEDUCK_PRESTOP_DELAY=1.8s (derived): ",
			}},
		{"a short grace period cascades to the caps",
			map[string]string{"LAMEDUCK_GRACE_PERIOD": "5s"},
			func(c config.Config) bool {
				return c.PrestopDelay == time.Second && c.ShutdownTimeout == 2*time.Second && c.DrainTimeout == time.Second &&
					c.MaxDelay == time.Second && c.MaxWork == 948*time.Millisecond
			},
			[]string{
				"LAMEDUCK_PRESTOP_DELAY=1s (default 5s) derived from LAMEDUCK_GRACE_PERIOD=5s (set): ",
				"LAMEDUCK_SHUTDOWN_TIMEOUT=2s (default 15s) derived from LAMEDUCK_GRACE_PERIOD=5s (set): ",
				"LAMEDUCK_DRAIN_TIMEOUT=1s (default 5s) derived from LAMEDUCK_GRACE_PERIOD=5s (set): ",
				"LAMEDUCK_PRESTOP_MIN=1s (default 5s) derived from LAMEDUCK_PRESTOP_DELAY=1s (derived): ",
				"LAMEDUCK_MAX_DELAY=1s (default 4s) derived from LAMEDUCK_SHUTDOWN_TIMEOUT=2s (derived): ",
				"LAMEDUCK_MAX_WORK=948ms (default 1s) derived from LAMEDUCK_DRAIN_TIMEOUT=1s (derived): ",
			}},
		{"the platform sets the grace period, the team the preStop delay",
			map[string]string{"LAMEDUCK_GRACE_PERIOD": "10s", "LAMEDUCK_PRESTOP_DELAY": "3s"},
			func(c config.Config) bool {
				return c.PrestopDelay == 3*time.Second && c.PrestopMin == 3*time.Second &&
					c.ShutdownTimeout == 4500*time.Millisecond && c.DrainTimeout == 1500*time.Millisecond
			},
			[]string{
				"LAMEDUCK_SHUTDOWN_TIMEOUT=4.5s (default 15s) derived from LAMEDUCK_GRACE_PERIOD=10s (set), LAMEDUCK_PRESTOP_DELAY=3s (set): ",
				"LAMEDUCK_DRAIN_TIMEOUT=1.5s (default 5s) derived from LAMEDUCK_GRACE_PERIOD=10s (set), LAMEDUCK_PRESTOP_DELAY=3s (set): ",
				"LAMEDUCK_PRESTOP_MIN=3s (default 5s) derived from LAMEDUCK_PRESTOP_DELAY=3s (set): the preStop delay is fixed",
				"LAMEDUCK_MAX_DELAY=3.5s (default 4s) derived from LAMEDUCK_SHUTDOWN_TIMEOUT=4.5s (derived): ",
			}},
		{"a phase grows to a cap set above it, the others make room",
			map[string]string{"LAMEDUCK_MAX_DELAY": "20s"},
			func(c config.Config) bool {
				return c.MaxDelay == 20*time.Second && c.ShutdownTimeout == 21*time.Second &&
					c.PrestopDelay == 4*time.Second && c.DrainTimeout == 4*time.Second
			},
			[]string{
				"LAMEDUCK_PRESTOP_DELAY=4s (default 5s) derived from LAMEDUCK_GRACE_PERIOD=30s (default), LAMEDUCK_SHUTDOWN_TIMEOUT=21s (derived): ",
				"LAMEDUCK_SHUTDOWN_TIMEOUT=21s (default 15s) derived from LAMEDUCK_MAX_DELAY=20s (set): ",
				"LAMEDUCK_DRAIN_TIMEOUT=4s (default 5s) derived from LAMEDUCK_GRACE_PERIOD=30s (default), LAMEDUCK_SHUTDOWN_TIMEOUT=21s (derived): ",
				"LAMEDUCK_PRESTOP_MIN=4s (default 5s) derived from LAMEDUCK_PRESTOP_DELAY=4s (derived): ",
			}},
		{"the preStop delay's maximum grows to a minimum set above it, the others make room",
			map[string]string{"LAMEDUCK_PRESTOP_MIN": "10s"},
			func(c config.Config) bool {
				return c.PrestopMin == 10*time.Second && c.PrestopDelay == 10*time.Second &&
					c.ShutdownTimeout == 14200*time.Millisecond && c.DrainTimeout == 4700*time.Millisecond
			},
			[]string{
				"LAMEDUCK_PRESTOP_DELAY=10s (default 5s) derived from LAMEDUCK_PRESTOP_MIN=10s (set): the preStop delay's maximum must hold its minimum",
				"LAMEDUCK_SHUTDOWN_TIMEOUT=14.2s (default 15s) derived from LAMEDUCK_GRACE_PERIOD=30s (default), LAMEDUCK_PRESTOP_DELAY=10s (derived): ",
				"LAMEDUCK_DRAIN_TIMEOUT=4.7s (default 5s) derived from LAMEDUCK_GRACE_PERIOD=30s (default), LAMEDUCK_PRESTOP_DELAY=10s (derived): ",
			}},
		{"a minimum set under the maximum makes the delay adaptive, and moves nothing",
			map[string]string{"LAMEDUCK_PRESTOP_MIN": "1s", "LAMEDUCK_PRESTOP_DELAY": "8s", "LAMEDUCK_PRESTOP_QUIET": "500ms"},
			func(c config.Config) bool {
				return c.PrestopMin == time.Second && c.PrestopDelay == 8*time.Second && c.PrestopQuiet == 500*time.Millisecond &&
					len(c.Warnings()) == 0
			},
			nil}, // 8s + 15s + 5s + 1s fit in 30s
		{"a cap grows to the default set above it",
			map[string]string{"LAMEDUCK_JOB_DURATION": "2s"},
			func(c config.Config) bool { return c.MaxWork == 2*time.Second },
			[]string{"LAMEDUCK_MAX_WORK=2s (default 1s) derived from LAMEDUCK_JOB_DURATION=2s (set): "}},
		{"the queue shrinks to what the drain budget admits",
			map[string]string{"LAMEDUCK_DRAIN_TIMEOUT": "100ms", "LAMEDUCK_WORKERS": "2"},
			func(c config.Config) bool { return c.QueueSize == 94 && len(c.Warnings()) == 0 },
			[]string{
				"LAMEDUCK_MAX_WORK=93ms (default 1s) derived from LAMEDUCK_DRAIN_TIMEOUT=100ms (set): ",
				"LAMEDUCK_QUEUE_SIZE=94 (default 1000) derived from LAMEDUCK_DRAIN_TIMEOUT=100ms (set), LAMEDUCK_WORKERS=2 (set): ",
			}},
		{"values that fit move nothing",
			map[string]string{"LAMEDUCK_SHUTDOWN_TIMEOUT": "5s", "LAMEDUCK_DRAIN_TIMEOUT": "2s", "LAMEDUCK_GRACE_PERIOD": "20s"},
			func(c config.Config) bool {
				return c.MaxDelay == 4*time.Second && c.MaxWork == time.Second && c.PrestopDelay == 5*time.Second
			},
			nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			setenv(t, tt.env)
			c, err := config.Load()
			if err != nil {
				t.Fatalf("Load() with %v: %v", tt.env, err)
			}
			if !tt.check(c) {
				t.Errorf("Load() with %v = %+v; not the values derived", tt.env, c)
			}
			notes := c.Derived()
			if len(notes) != len(tt.notes) {
				t.Fatalf("Derived() with %v = %d notes; want %d:\n%s", tt.env, len(notes), len(tt.notes), strings.Join(notes, "\n"))
			}
			for i, want := range tt.notes {
				if !strings.HasPrefix(notes[i], want) {
					t.Errorf("Derived()[%d] = %q; want it to begin %q", i, notes[i], want)
				}
			}
			if err := c.Validate(); err != nil {
				t.Errorf("Validate() of what Load returned = %v", err)
			}
		})
	}
}

// fixRE finds the fix in a problem's message, and the alternative, if any.
var fixRE = regexp.MustCompile(`fix: (LAMEDUCK_\w+)=([^ ,;()]+)(?:[^(]*\(or (LAMEDUCK_\w+)=([^ ,;()]+))?`)

// TestLoadRefusesOnlyConflictsBetweenValuesSet: a conflict that involves a
// value set on purpose and no default that can bend is refused; its message
// says which values were set, defaulted or derived, and gives a fix that
// works: applied (or its alternative), Load succeeds. Each value of a
// conflict between values set works alone, with the others derived.
func TestLoadRefusesOnlyConflictsBetweenValuesSet(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want []string // substrings of the error
	}{
		{"a request cap the shutdown timeout set cannot wait for",
			map[string]string{"LAMEDUCK_SHUTDOWN_TIMEOUT": "2s", "LAMEDUCK_MAX_DELAY": "4s"},
			[]string{"LAMEDUCK_MAX_DELAY: 4s does not fit LAMEDUCK_SHUTDOWN_TIMEOUT (2s)",
				"LAMEDUCK_MAX_DELAY=4s (set)", "LAMEDUCK_SHUTDOWN_TIMEOUT=2s (set)",
				"fix: LAMEDUCK_MAX_DELAY=1s (or LAMEDUCK_SHUTDOWN_TIMEOUT=5s)"}},
		{"a job cap the drain timeout set cannot finish",
			map[string]string{"LAMEDUCK_DRAIN_TIMEOUT": "1s", "LAMEDUCK_MAX_WORK": "2s"},
			[]string{"LAMEDUCK_MAX_WORK: 2s does not fit LAMEDUCK_DRAIN_TIMEOUT (1s)",
				"LAMEDUCK_MAX_WORK=2s (set)", "LAMEDUCK_DRAIN_TIMEOUT=1s (set)", "fix: LAMEDUCK_MAX_WORK=948ms"}},
		{"a default delay the shutdown timeout set cannot wait for",
			map[string]string{"LAMEDUCK_HELLO_DELAY": "5s", "LAMEDUCK_SHUTDOWN_TIMEOUT": "3s"},
			[]string{"LAMEDUCK_HELLO_DELAY: 5s does not fit LAMEDUCK_SHUTDOWN_TIMEOUT (3s)",
				"LAMEDUCK_HELLO_DELAY=5s (set)", "LAMEDUCK_SHUTDOWN_TIMEOUT=3s (set)", "fix: LAMEDUCK_HELLO_DELAY=2s"}},
		{"a default delay over the cap set",
			map[string]string{"LAMEDUCK_HELLO_DELAY": "2s", "LAMEDUCK_MAX_DELAY": "1s"},
			[]string{"LAMEDUCK_HELLO_DELAY: 2s exceeds LAMEDUCK_MAX_DELAY (1s)", "(set)", "fix: LAMEDUCK_HELLO_DELAY=1s"}},
		{"default work over the cap set",
			map[string]string{"LAMEDUCK_JOB_DURATION": "2s", "LAMEDUCK_MAX_WORK": "1s"},
			[]string{"LAMEDUCK_JOB_DURATION: 2s exceeds LAMEDUCK_MAX_WORK (1s)", "fix: LAMEDUCK_JOB_DURATION=1s"}},
		{"phases set over the grace period set",
			map[string]string{"LAMEDUCK_GRACE_PERIOD": "20s", "LAMEDUCK_PRESTOP_DELAY": "10s", "LAMEDUCK_SHUTDOWN_TIMEOUT": "10s"},
			[]string{"LAMEDUCK_GRACE_PERIOD: 20s is too short", "LAMEDUCK_GRACE_PERIOD=20s (set)",
				"LAMEDUCK_PRESTOP_DELAY=10s (set)", "LAMEDUCK_DRAIN_TIMEOUT=1s (derived; default 5s)",
				"fix: LAMEDUCK_PRESTOP_DELAY=8s (or LAMEDUCK_SHUTDOWN_TIMEOUT=8s)"}},
		{"a grace period set too short for the least of each phase",
			map[string]string{"LAMEDUCK_GRACE_PERIOD": "4s"},
			[]string{"LAMEDUCK_GRACE_PERIOD: 4s is too short", "LAMEDUCK_GRACE_PERIOD=4s (set)",
				"LAMEDUCK_SHUTDOWN_TIMEOUT=2s (derived; default 15s)",
				"fix: LAMEDUCK_GRACE_PERIOD=5s, with the pod's terminationGracePeriodSeconds"}},
		{"a preStop delay's minimum set over its maximum set",
			map[string]string{"LAMEDUCK_PRESTOP_MIN": "6s", "LAMEDUCK_PRESTOP_DELAY": "4s"},
			[]string{"LAMEDUCK_PRESTOP_MIN: 6s exceeds LAMEDUCK_PRESTOP_DELAY (4s)", "LAMEDUCK_PRESTOP_MIN=6s (set)",
				"LAMEDUCK_PRESTOP_DELAY=4s (set)", "fix: LAMEDUCK_PRESTOP_MIN=4s (or LAMEDUCK_PRESTOP_DELAY=6s)"}},
		{"a preStop delay's minimum set beyond the default grace period",
			map[string]string{"LAMEDUCK_PRESTOP_MIN": "28s"},
			[]string{"LAMEDUCK_PRESTOP_MIN: 28s exceeds LAMEDUCK_PRESTOP_DELAY (26s)", "LAMEDUCK_PRESTOP_MIN=28s (set)",
				"LAMEDUCK_PRESTOP_DELAY=26s (derived; default 5s)", "LAMEDUCK_GRACE_PERIOD=30s (default)",
				"fix: LAMEDUCK_PRESTOP_MIN=26s (or LAMEDUCK_GRACE_PERIOD=32s"}},
		{"a preStop delay set beyond the default grace period",
			map[string]string{"LAMEDUCK_PRESTOP_DELAY": "28s"},
			[]string{"LAMEDUCK_GRACE_PERIOD: 30s is too short", "LAMEDUCK_GRACE_PERIOD=30s (default)",
				"LAMEDUCK_PRESTOP_DELAY=28s (set)", "fix: LAMEDUCK_PRESTOP_DELAY=26s (or LAMEDUCK_GRACE_PERIOD=32s"}},
		{"a request cap set beyond the default grace period",
			map[string]string{"LAMEDUCK_MAX_DELAY": "30s"},
			[]string{"LAMEDUCK_MAX_DELAY: 30s does not fit LAMEDUCK_SHUTDOWN_TIMEOUT (27s)", "LAMEDUCK_MAX_DELAY=30s (set)",
				"LAMEDUCK_SHUTDOWN_TIMEOUT=27s (derived; default 15s)", "LAMEDUCK_GRACE_PERIOD=30s (default)",
				"fix: LAMEDUCK_MAX_DELAY=26s (or LAMEDUCK_GRACE_PERIOD=34s"}},
		{"default work set beyond the default grace period",
			map[string]string{"LAMEDUCK_JOB_DURATION": "30s"},
			[]string{"LAMEDUCK_JOB_DURATION: 30s does not fit LAMEDUCK_DRAIN_TIMEOUT (26s)", "LAMEDUCK_JOB_DURATION=30s (set)",
				"LAMEDUCK_MAX_WORK=30s (derived; default 1s)", "fix: LAMEDUCK_JOB_DURATION="}},
		{"an app address set on the default admin address",
			map[string]string{"LAMEDUCK_HTTP_ADDR": ":8086"},
			[]string{"LAMEDUCK_HTTP_ADDR: must differ from LAMEDUCK_ADMIN_ADDR", "LAMEDUCK_HTTP_ADDR=:8086 (set)",
				"LAMEDUCK_ADMIN_ADDR=:8086 (default)", "fix: LAMEDUCK_HTTP_ADDR=:8080"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			setenv(t, tt.env)
			_, err := config.Load()
			if !errors.Is(err, config.ErrInvalid) {
				t.Fatalf("Load() with %v = %v; want an error wrapping ErrInvalid", tt.env, err)
			}
			msg := err.Error()
			if n := strings.Count(msg, "\n") + 1; n != 1 {
				t.Errorf("Load() with %v = %d problems:\n%s\nwant one: a conflict is reported once, against the value set", tt.env, n, msg)
			}
			for _, s := range tt.want {
				if !strings.Contains(msg, s) {
					t.Errorf("Load() with %v = error %q; want it to contain %q", tt.env, msg, s)
				}
			}
			m := fixRE.FindStringSubmatch(msg)
			if m == nil {
				t.Fatalf("Load() with %v = error %q; want a fix", tt.env, msg)
			}
			for _, fix := range [][2]string{{m[1], m[2]}, {m[3], m[4]}} {
				if fix[0] == "" {
					continue
				}
				env := maps.Clone(tt.env)
				env[fix[0]] = fix[1]
				clearEnv(t)
				setenv(t, env)
				if _, err := config.Load(); err != nil {
					t.Errorf("the fix %s=%s does not work: Load() with %v = %v", fix[0], fix[1], env, err)
				}
			}
			if len(tt.env) < 2 {
				return
			}
			for _, k := range slices.Sorted(maps.Keys(tt.env)) {
				clearEnv(t)
				t.Setenv(k, tt.env[k])
				if _, err := config.Load(); err != nil {
					t.Errorf("Load() with %s=%s alone = %v; want the others derived from it", k, tt.env[k], err)
				}
			}
		})
	}
}

// TestLoadReportsEveryConflictWithItsFix: two conflicts are both reported,
// each with its own fix, and the two fixes together work.
func TestLoadReportsEveryConflictWithItsFix(t *testing.T) {
	clearEnv(t)
	env := map[string]string{"LAMEDUCK_MAX_DELAY": "30s", "LAMEDUCK_MAX_WORK": "30s", "LAMEDUCK_WORKERS": "0"}
	setenv(t, env)
	_, err := config.Load()
	if err == nil {
		t.Fatal("Load() = nil; want the conflicts")
	}
	lines := strings.Split(err.Error(), "\n")
	fixed := map[string]string{}
	for _, l := range lines {
		if m := fixRE.FindStringSubmatch(l); m != nil {
			fixed[m[1]] = m[2]
		}
	}
	if len(fixed) != 2 || fixed["LAMEDUCK_MAX_DELAY"] == "" || fixed["LAMEDUCK_MAX_WORK"] == "" {
		t.Fatalf("Load() = %q; want a fix of LAMEDUCK_MAX_DELAY and one of LAMEDUCK_MAX_WORK", err)
	}
	if !strings.Contains(err.Error(), "LAMEDUCK_WORKERS: must be between 1 and") {
		t.Errorf("Load() = %q; want the range error of LAMEDUCK_WORKERS too", err)
	}
	env["LAMEDUCK_WORKERS"] = "2"
	maps.Copy(env, fixed)
	clearEnv(t)
	setenv(t, env)
	if _, err := config.Load(); err != nil {
		t.Errorf("Load() with both fixes, %v = %v", env, err)
	}
}
