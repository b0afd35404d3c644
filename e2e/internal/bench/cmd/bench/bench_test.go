//go:build linux

package main

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// The command measures; these tests check what it reads and computes,
// never a timing.

// TestSameLimits: the baseline of the goal gets every limit lameduck has by
// default, as values the plain server's flags parse; a renamed field in
// lameduck's config fails here, not in a late `make bench`.
func TestSameLimits(t *testing.T) {
	args, err := sameLimits()
	if err != nil {
		t.Fatalf("sameLimits() error: %v", err)
	}
	if len(args) != 8 {
		t.Fatalf("sameLimits() = %q; want 4 flags with values", args)
	}
	for i := 0; i < len(args); i += 2 {
		flag, v := args[i], args[i+1]
		var err error
		if flag == "-max-header-bytes" {
			_, err = strconv.Atoi(v)
		} else {
			_, err = time.ParseDuration(v)
		}
		if err != nil || !strings.HasPrefix(flag, "-") {
			t.Errorf("sameLimits(): %s %q does not parse: %v", flag, v, err)
		}
	}
}

func TestParseWrk(t *testing.T) {
	out := []byte("Running 1s test @ http://127.0.0.1:1/hello\n  1 threads and 32 connections\n" +
		`{"requests":40000,"duration_us":2000000,"p99_us":2250.5,"errors":3}` + "\n")
	r, err := parseWrk(out)
	if err != nil {
		t.Fatalf("parseWrk() error: %v", err)
	}
	if r.Requests != 40000 || r.DurationUS != 2e6 || r.P99US != 2250.5 || r.Errors != 3 {
		t.Errorf("parseWrk() = %+v; want 40000 requests in 2 s, p99 2250.5 µs, 3 errors", r)
	}
	for _, bad := range []string{"unable to connect to 127.0.0.1:1 Connection refused\n", "\n{\"requests\":0,\"duration_us\":0}\n", "\n{oops\n"} {
		if r, err := parseWrk([]byte(bad)); err == nil {
			t.Errorf("parseWrk(%q) = %+v; want an error", bad, r)
		}
	}
}

// servers returns lameduck and one baseline with the given req/s per
// round; 0 is a failed round.
func servers(l, b []float64) (*server, *server) {
	mk := func(name string, rps []float64) *server {
		s := &server{name: name}
		for _, r := range rps {
			s.samples = append(s.samples, sample{ok: r > 0, rps: r, p99: time.Millisecond, cpu: 20 * time.Microsecond})
		}
		return s
	}
	return mk("lameduck", l), mk("net/http, lameduck's limits", b)
}

func TestCompareSkipsFailedRounds(t *testing.T) {
	l, b := servers([]float64{90, 0, 100, 80, 99}, []float64{100, 100, 0, 100, 100})
	r := compare(l, b) // rounds 1, 4 and 5: 0.9, 0.8, 0.99
	if r.n != 3 || r.median != 0.9 || r.lo != 0.8 || r.hi != 0.99 {
		t.Errorf("compare() = %+v; want the median 0.9 of 3 rounds, range 0.8–0.99", r)
	}
	if r := compare(servers([]float64{0}, []float64{100})); r.n != 0 {
		t.Errorf("compare(no round both completed) = %+v; want n 0", r)
	}
	if got := median([]float64{4, 1, 3, 2}); got != 2.5 {
		t.Errorf("median(4, 1, 3, 2) = %v; want 2.5", got)
	}
}

func TestTableSaysWhetherTheGoalIsMet(t *testing.T) {
	for _, c := range []struct {
		l, b []float64
		met  bool
		cell string
	}{
		{[]float64{95, 97}, []float64{100, 100}, true, "**0.960× (0.95–0.97)**: goal ≥ 0.95×, met"},
		{[]float64{90, 94}, []float64{100, 100}, false, "**0.920× (0.90–0.94)**: goal ≥ 0.95×, MISSED"},
		{[]float64{0, 0}, []float64{100, 100}, false, "**no round completed**: goal ≥ 0.95×, MISSED"},
	} {
		l, b := servers(c.l, c.b)
		bare := &server{name: "net/http, bare", samples: b.samples}
		got, met := table([]*set{{procs: 1, pinned: true, servers: []*server{l, b, bare}}})
		if met != c.met || !strings.Contains(got, c.cell) || !strings.Contains(got, "| 1, pinned | net/http, bare |") {
			t.Errorf("table(lameduck %v, net/http %v) = %t:\n%s\nwant %t and the cell %q", c.l, c.b, met, got, c.met, c.cell)
		}
	}
	if _, met := table(nil); met {
		t.Error("table(nothing measured) says the goal is met")
	}
}
