package config

// White-box: the checks below go over every variable by name, through the
// variable table Load itself uses.

import (
	"os"
	"strings"
	"testing"
)

// unsetAll unsets every LAMEDUCK_* variable for the duration of the test.
func unsetAll(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(strings.ToUpper(k), Prefix+"_") {
			t.Setenv(k, "") // restores the original value at cleanup
			if err := os.Unsetenv(k); err != nil {
				t.Fatalf("Unsetenv(%q): %v", k, err)
			}
		}
	}
}

// TestLoadEachVariableAlone: every variable, set alone to a valid value
// other than its default (the smallest and the largest sensible ones among
// them), starts the service: Load succeeds, the variable reads as asked,
// and every other value is its default or derived, and said so in a note.
// The grace period stays at its default 30s throughout, so the largest
// values are the most that fit in it with every other phase at its least.
func TestLoadEachVariableAlone(t *testing.T) {
	type derived map[string]string // key: the value derived
	tests := []struct {
		key, value string
		what       string // "smallest", "largest" or ""
		derived    derived
	}{
		{envPrestopDelay, "0s", "smallest", derived{envPrestopMin: "0s"}},
		{envPrestopDelay, "10s", "", derived{envPrestopMin: "10s", envShutdownTimeout: "14.2s", envDrainTimeout: "4.7s"}},
		{envPrestopDelay, "26s", "largest", derived{envPrestopMin: "26s", envShutdownTimeout: "2s", envDrainTimeout: "1s",
			envMaxDelay: "1s", envMaxWork: "948ms"}},
		{envPrestopMin, "0s", "smallest", nil}, // an adaptive delay of 0s to 5s
		{envPrestopMin, "2s", "", nil},
		{envPrestopMin, "10s", "", derived{envPrestopDelay: "10s", envShutdownTimeout: "14.2s", envDrainTimeout: "4.7s"}},
		{envPrestopMin, "26s", "largest", derived{envPrestopDelay: "26s", envShutdownTimeout: "2s", envDrainTimeout: "1s",
			envMaxDelay: "1s", envMaxWork: "948ms"}},
		{envPrestopQuiet, "1ns", "smallest", nil},
		{envPrestopQuiet, "250ms", "", nil},
		{envPrestopQuiet, "24h", "largest", nil}, // with the fixed default delay, it changes nothing
		{envShutdownTimeout, "1s", "smallest", derived{envMaxDelay: "0s"}},
		{envShutdownTimeout, "2s", "", derived{envMaxDelay: "1s"}},
		{envShutdownTimeout, "20s", "", derived{envPrestopDelay: "4.5s", envPrestopMin: "4.5s", envDrainTimeout: "4.5s"}},
		{envShutdownTimeout, "27s", "largest", derived{envPrestopDelay: "1s", envPrestopMin: "1s", envDrainTimeout: "1s", envMaxWork: "948ms"}},
		{envDrainTimeout, "3ms", "smallest", derived{envMaxWork: "850µs", envJobDuration: "850µs", envQueueSize: "4"}},
		{envDrainTimeout, "100ms", "", derived{envMaxWork: "93ms", envQueueSize: "188"}},
		{envDrainTimeout, "1s", "", derived{envMaxWork: "948ms"}},
		{envDrainTimeout, "10s", "", derived{envPrestopDelay: "4.7s", envPrestopMin: "4.7s", envShutdownTimeout: "14.2s"}},
		{envDrainTimeout, "26s", "largest", derived{envPrestopDelay: "1s", envPrestopMin: "1s", envShutdownTimeout: "2s", envMaxDelay: "1s"}},
		{envGracePeriod, "5s", "smallest", derived{envPrestopDelay: "1s", envPrestopMin: "1s", envShutdownTimeout: "2s", envDrainTimeout: "1s",
			envMaxDelay: "1s", envMaxWork: "948ms"}},
		{envGracePeriod, "10s", "", derived{envPrestopDelay: "1.8s", envPrestopMin: "1.8s", envShutdownTimeout: "5.4s", envDrainTimeout: "1.8s"}},
		{envGracePeriod, "26s", "", nil}, // exactly the defaults' 5s + 15s + 5s + 1s
		{envGracePeriod, "24h", "largest", nil},
		{envHelloDelay, "1ms", "smallest", nil},
		{envHelloDelay, "10s", "", derived{envMaxDelay: "10s"}},
		{envHelloDelay, "26s", "largest", derived{envMaxDelay: "26s", envShutdownTimeout: "27s", envPrestopDelay: "1s", envPrestopMin: "1s",
			envDrainTimeout: "1s", envMaxWork: "948ms"}},
		{envMaxDelay, "0s", "smallest", nil},
		{envMaxDelay, "20s", "", derived{envShutdownTimeout: "21s", envPrestopDelay: "4s", envPrestopMin: "4s", envDrainTimeout: "4s"}},
		{envMaxDelay, "26s", "largest", derived{envShutdownTimeout: "27s", envPrestopDelay: "1s", envPrestopMin: "1s", envDrainTimeout: "1s", envMaxWork: "948ms"}},
		{Prefix + "_MAX_CONNS", "1", "smallest", nil},
		{Prefix + "_MAX_CONNS", "100000", "largest", nil},
		{Prefix + "_MAX_REQUESTS", "1", "smallest", nil},
		{Prefix + "_MAX_REQUESTS", "100000", "largest", nil},
		{Prefix + "_MAX_HEADER_BYTES", "1024", "smallest", nil},
		{Prefix + "_MAX_HEADER_BYTES", "1048576", "largest", nil},
		{Prefix + "_READ_HEADER_TIMEOUT", "1ms", "smallest", nil},
		{Prefix + "_READ_HEADER_TIMEOUT", "24h", "largest", nil},
		{Prefix + "_BODY_TIMEOUT", "1ms", "smallest", nil},
		{Prefix + "_BODY_TIMEOUT", "24h", "largest", nil},
		{Prefix + "_WRITE_TIMEOUT", "1ms", "smallest", nil},
		{Prefix + "_WRITE_TIMEOUT", "24h", "largest", nil},
		{Prefix + "_IDLE_TIMEOUT", "1ms", "smallest", nil},
		{Prefix + "_IDLE_TIMEOUT", "24h", "largest", nil},
		{Prefix + "_MAX_BODY", "1", "smallest", nil},
		{Prefix + "_MAX_BODY", "1073741824", "largest", nil},
		{envQueueSize, "1", "smallest", nil},
		{envQueueSize, "1000000", "largest", nil}, // set, it is only warned about (Warnings)
		{envWorkers, "1", "smallest", nil},
		{envWorkers, "10000", "largest", nil},
		{envJobDuration, "0s", "smallest", nil},
		{envJobDuration, "2s", "", derived{envMaxWork: "2s"}},
		{envJobDuration, "24s", "largest", derived{envMaxWork: "24s", envDrainTimeout: "25.27s", envPrestopDelay: "1s", envPrestopMin: "1s",
			envShutdownTimeout: "2.7s", envMaxDelay: "1.7s"}},
		{envMaxWork, "0s", "smallest", derived{envJobDuration: "0s"}},
		{envMaxWork, "10ms", "", derived{envJobDuration: "10ms"}},
		{envMaxWork, "10s", "", derived{envDrainTimeout: "10.53s", envPrestopDelay: "4.6s", envPrestopMin: "4.6s", envShutdownTimeout: "13.8s"}},
		{envMaxWork, "24s", "largest", derived{envDrainTimeout: "25.27s", envPrestopDelay: "1s", envPrestopMin: "1s", envShutdownTimeout: "2.7s", envMaxDelay: "1.7s"}},
		{Prefix + "_QUEUE_URL", "nats://127.0.0.1:4222", "", nil},
		{Prefix + "_QUEUE_URL", "nats://a:4222, nats://b:4222,tls://c", "", nil},
		{Prefix + "_QUEUE_STREAM", "jobs-2_x", "", nil},
		{Prefix + "_QUEUE_REPLICAS", "2", "smallest", nil}, // 1 is the default
		{Prefix + "_QUEUE_REPLICAS", "5", "largest", nil},
		{Prefix + "_IDEMPOTENCY_TTL", "1ms", "smallest", nil},
		{Prefix + "_IDEMPOTENCY_TTL", "24h", "largest", nil},
		{Prefix + "_IDEMPOTENCY_MAX_KEYS", "1", "smallest", nil},
		{Prefix + "_IDEMPOTENCY_MAX_KEYS", "10000000", "largest", nil},
		{Prefix + "_IDEMPOTENCY_MAX_BYTES", "1024", "smallest", nil},
		{Prefix + "_IDEMPOTENCY_MAX_BYTES", "1073741824", "largest", nil},
		{Prefix + "_LOG_FORMAT", "json", "", nil},
		{Prefix + "_LOG_FORMAT", "text", "", nil},
		{Prefix + "_LOG_LEVEL", "debug", "", nil},
		{Prefix + "_LOG_LEVEL", "WARNING", "", nil},
		{Prefix + "_LOG_LEVEL", "error", "", nil},
		{envHTTPAddr, "127.0.0.1:0", "", nil},
		{envHTTPAddr, ":65535", "", nil},
		{envAdminAddr, "[::1]:9001", "", nil},
		{envAdminAddr, "localhost:0", "", nil},
	}

	// Every variable is here; every number or duration at its smallest and
	// its largest.
	cases := map[string]map[string]bool{}
	for _, tt := range tests {
		if cases[tt.key] == nil {
			cases[tt.key] = map[string]bool{}
		}
		cases[tt.key][tt.what] = true
	}
	for _, v := range variableList() {
		switch {
		case cases[v.key] == nil:
			t.Errorf("no case sets %s", v.key)
		case v.typ != "String" && (!cases[v.key]["smallest"] || !cases[v.key]["largest"]):
			t.Errorf("%s lacks its smallest or its largest case", v.key)
		}
	}

	def := defaultConfig()
	for _, tt := range tests {
		t.Run(tt.key+"="+tt.value, func(t *testing.T) {
			unsetAll(t)
			t.Setenv(tt.key, tt.value)
			got, err := Load()
			if err != nil {
				t.Fatalf("Load() with %s=%s alone: %v", tt.key, tt.value, err)
			}
			var asked Config
			if err := setField(&asked, tt.key, tt.value); err != nil {
				t.Fatal(err)
			}
			if g, w := valueOf(got, tt.key), valueOf(asked, tt.key); g != w {
				t.Errorf("%s = %s; want %s, as set", tt.key, g, w)
			}
			if w := valueOf(def, tt.key); w == tt.value {
				t.Errorf("the case sets %s to its default %s; want another value", tt.key, w)
			}
			notes := got.Derived()
			moved := 0
			for _, v := range variableList() {
				if v.key == tt.key {
					continue
				}
				g := valueOf(got, v.key)
				want, ok := tt.derived[v.key]
				if !ok {
					want = valueOf(def, v.key)
				}
				if g != want {
					t.Errorf("%s = %s; want %s", v.key, g, want)
				}
				if g == valueOf(def, v.key) {
					continue
				}
				moved++
				prefix := v.key + "=" + g + " (default " + valueOf(def, v.key) + ") derived from "
				if !containsPrefix(notes, prefix) {
					t.Errorf("%s moved to %s but no note says so; notes:\n%s", v.key, g, strings.Join(notes, "\n"))
				}
			}
			if len(notes) != moved {
				t.Errorf("%d notes for %d values derived:\n%s", len(notes), moved, strings.Join(notes, "\n"))
			}
			if err := got.Validate(); err != nil {
				t.Errorf("Validate() of what Load returned = %v; want nil", err)
			}
			if need := got.Budget() + GraceSpare; need > got.GracePeriod {
				t.Errorf("Budget() + GraceSpare = %s; want it within the grace period %s", need, got.GracePeriod)
			}
		})
	}
}

func containsPrefix(list []string, prefix string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}

// TestFieldsCoverEveryVariable: the variable table (field, setField,
// valueOf) knows every variable envconfig reads, and the defaults read
// through it are what envconfig itself reads with nothing set.
func TestFieldsCoverEveryVariable(t *testing.T) {
	var c Config
	for _, v := range variableList() {
		if c.field(v.key) == nil {
			t.Errorf("Config.field(%q) = nil; add the variable to it", v.key)
		}
	}
	unsetAll(t)
	got, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if got != defaultConfig() {
		t.Errorf("Load() with nothing set = %+v; defaultConfig() = %+v", got, defaultConfig())
	}
}

// TestGroupsFollowConfig: the -h groups list every variable once, in
// Config's order (the order envconfig and the manifest checks list them in).
func TestGroupsFollowConfig(t *testing.T) {
	var grouped []string
	for _, g := range groups {
		for _, n := range g.names {
			grouped = append(grouped, Prefix+"_"+n)
		}
	}
	var declared []string
	for _, v := range variableList() {
		declared = append(declared, v.key)
	}
	if strings.Join(grouped, " ") != strings.Join(declared, " ") {
		t.Errorf("the groups list\n%s\nwant Config's order\n%s", strings.Join(grouped, " "), strings.Join(declared, " "))
	}
}
