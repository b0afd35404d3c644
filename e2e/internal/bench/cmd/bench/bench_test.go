//go:build linux

package main

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// The harness measures; these tests check only its arithmetic and parsing,
// never a timing.

func TestParseBench(t *testing.T) {
	const out = `goos: linux
goarch: amd64
pkg: github.com/lameduck/lameduck/internal/server
cpu: AMD EPYC
BenchmarkHello-2   	 1926997	       600.0 ns/op	    1096 B/op	      12 allocs/op
BenchmarkHello-2   	 1000000	      1000 ns/op	    1096 B/op	      12 allocs/op
BenchmarkHello-2   	 1443109	       800.0 ns/op	    1096 B/op	      12 allocs/op
BenchmarkJobs/key=-2         	  497605	      2316 ns/op	    6474 B/op	      40 allocs/op
PASS
ok  	github.com/lameduck/lameduck/internal/server	3.610s
pkg: github.com/lameduck/lameduck/internal/queue
BenchmarkEnqueue-2   	 5000000	       210.5 ns/op	       0 B/op	       0 allocs/op
`
	got, err := parseBench(strings.NewReader(out))
	if err != nil {
		t.Fatalf("parseBench() error: %v", err)
	}
	var names []string
	for _, r := range got {
		names = append(names, r.name)
	}
	want := []string{"server.BenchmarkHello-2", "server.BenchmarkJobs/key=-2", "queue.BenchmarkEnqueue-2"}
	if !slices.Equal(names, want) {
		t.Fatalf("parseBench() names = %q; want %q", names, want)
	}
	if m := median(got[0].ns); m != 800 {
		t.Errorf("median ns/op of %s = %v; want 800", got[0].name, m)
	}
	if got[2].bytes[0] != 0 || got[2].allocs[0] != 0 {
		t.Errorf("%s = %+v; want 0 B/op, 0 allocs/op", got[2].name, got[2])
	}
}

func TestParseBenchWithoutBenchmem(t *testing.T) {
	if _, err := parseBench(strings.NewReader("BenchmarkHello-2 100 600 ns/op\n")); err == nil {
		t.Error("parseBench(no -benchmem) = nil error; want one")
	}
	if _, err := parseBench(strings.NewReader("PASS\n")); err == nil {
		t.Error("parseBench(no results) = nil error; want one")
	}
}

func TestStatistics(t *testing.T) {
	if got := median([]float64{3, 1, 2}); got != 2 {
		t.Errorf("median(3, 1, 2) = %v; want 2", got)
	}
	if got := median([]time.Duration{4, 1, 3, 2}); got != 2 {
		t.Errorf("median(4, 1, 3, 2) = %v; want 2 (integer mean of 2 and 3)", got)
	}
	s := make([]time.Duration, 100)
	for i := range s {
		s[i] = time.Duration(i + 1)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{0.5, 50}, {0.99, 99}, {1, 100}, {0.001, 1}} {
		if got := percentile(s, c.p); got != c.want {
			t.Errorf("percentile(1..100, %v) = %v; want %v", c.p, got, c.want)
		}
	}
}

func TestFormat(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string
	}{
		{850 * time.Microsecond, "850 µs"},
		{1250 * time.Microsecond, "1.25 ms"},
		{12340 * time.Microsecond, "12.3 ms"},
		{300 * time.Millisecond, "300 ms"},
		{1500 * time.Millisecond, "1.50 s"},
		{-2 * time.Millisecond, "-2.00 ms"},
	} {
		if got := fmtDur(c.d); got != c.want {
			t.Errorf("fmtDur(%v) = %q; want %q", c.d, got, c.want)
		}
	}
	for _, c := range []struct {
		x    float64
		want string
	}{{0, "0"}, {999.6, "1 000"}, {41250, "41 250"}, {1234567, "1 234 567"}, {-1234, "-1 234"}} {
		if got := fmtInt(c.x); got != c.want {
			t.Errorf("fmtInt(%v) = %q; want %q", c.x, got, c.want)
		}
	}
}

func TestRenderTableEscapesPipes(t *testing.T) {
	got := renderTable([]row{{"a|b", "", "x", "pass"}})
	if !strings.Contains(got, `| a\|b | — | x | pass |`) {
		t.Errorf("renderTable() = %q; want the pipe escaped and the empty cell as —", got)
	}
}

func TestShellJoin(t *testing.T) {
	got := shellJoin([]string{"-ldflags", "-s -w -X main.version=v1", "-micro", "it's.txt", ""})
	want := `-ldflags '-s -w -X main.version=v1' -micro 'it'\''s.txt' ''`
	if got != want {
		t.Errorf("shellJoin() = %s; want %s", got, want)
	}
}

func TestParseProcs(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []int
	}{{"1,2", []int{1, 2}}, {" 2 ", []int{2}}, {"4, 1", []int{4, 1}}} {
		got, err := parseProcs(c.in)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("parseProcs(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"", "0", "1,x", "1,1", "-2", "1,"} {
		if got, err := parseProcs(in); err == nil {
			t.Errorf("parseProcs(%q) = %v; want an error", in, got)
		}
	}
}

func TestParseBenchCPU(t *testing.T) {
	got, err := parseBench(strings.NewReader("BenchmarkMiddlewareParallel-2 100 600 ns/op 900 cpu-ns/op 72 B/op 3 allocs/op\n"))
	if err != nil {
		t.Fatalf("parseBench() error: %v", err)
	}
	if len(got) != 1 || len(got[0].cpu) != 1 || got[0].cpu[0] != 900 || got[0].ns[0] != 600 {
		t.Errorf("parseBench() = %+v; want ns/op 600, cpu-ns/op 900", got[0])
	}
}
