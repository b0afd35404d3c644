//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// machine describes where the benchmarks ran.
type machine struct {
	date             time.Time
	cpus             int
	cpu, kernel, mem string
	goVersion, code  string
	loadStart        string
	loadEnd          string
}

func readMachine() machine {
	m := machine{
		date: time.Now().UTC(), cpus: runtime.NumCPU(), goVersion: runtime.Version(),
		cpu: "unknown", kernel: "unknown", mem: "unknown", code: "unknown", loadStart: readLoadavg(),
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if name, val, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(name) == "model name" {
				m.cpu = strings.TrimSpace(val)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				if kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64); err == nil {
					m.mem = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
				}
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "git", "describe", "--always", "--dirty").Output(); err == nil {
		m.code = strings.TrimSpace(string(out))
	}
	return m
}

// readLoadavg returns the 1, 5 and 15 minute load averages.
func readLoadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// renderTable renders rows as a Markdown table.
func renderTable(rows []row) string {
	var b strings.Builder
	b.WriteString("| metric | target | measured | result |\n|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", cell(r.Metric), cell(r.Target), cell(r.Measured), cell(r.Result))
	}
	return b.String()
}

func cell(s string) string {
	if s == "" {
		return none
	}
	return strings.ReplaceAll(s, "|", `\|`)
}

// renderResults is the content of RESULTS.md: the machine, the command,
// the table and how it was measured.
func renderResults(m machine, o options, args []string, table string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# lameduck benchmark results

Written by `+"`make bench`"+` (internal/bench/cmd/bench); rerun it to replace this file. Missed targets read
MISS; they are reported, not failed. Numbers from a busy machine are noisy: compare runs on the same, quiet machine.

- date: %s
- machine: %d CPUs (nproc), %s, %s RAM, kernel %s
- load average (1/5/15 min): %s at start, %s at end
- Go: %s; code: %s
- command: `+"`make bench`"+` = the Go micro-benchmarks (below), then `+"`go run ./internal/bench/cmd/bench %s`"+`

%s
## How each number is measured

- **Overhead.** lameduck (the real binary: middleware with metrics, the request-duration histogram, in-flight
  gauge and draining gate; connection tracking) and internal/bench/plain (net/http, a ServeMux and the same
  "hello\n" answer, nothing else), both built here with the same Go, CGO_ENABLED=0 -trimpath. A third server,
  net/http+timeouts, is plain with lameduck's idle and write timeouts (http.Server's IdleTimeout %s and
  WriteTimeout %s; lameduck runs with the same values): what any server hardened against slow clients pays for
  them, apart from lameduck's own code. The three run at each of %s (GOMAXPROCS in their environment), all at
  once, side by side; wrk (Debian's wrk, -t %d -c %d, keep-alive, closed loop) loads one server at a time.
  %s Each round loads every server for %s (after %s of unrecorded warm-up each), and the order reverses from
  one round to the next (lameduck, plain, plain+timeouts, plain+timeouts, plain, lameduck, ... within a
  GOMAXPROCS); each ratio is the median of %d per-round ratios, so a drift in the machine's load hits both
  sides alike, and the range is the spread.
  Server CPU per request is utime+stime from /proc/PID/stat over a round divided by the requests answered: it
  is the overhead with the generator taken out, and the steadier number on a shared machine; lameduck's own code
  (middleware, connection tracking) shows in user time, while system time is the kernel's loopback TCP work,
  the same for both. Servers busy near their GOMAXPROCS in cores means the server, not wrk or other load, was
  the limit; well below it, throughput says more about the machine than about the servers.
- **Shutdown.** lameduck with LAMEDUCK_PRESTOP_DELAY=%s; the time from SIGTERM to the process's exit (wait4
  returning), minus what it must wait for: the preStop delay (idle: one idle keep-alive connection open, nothing in
  flight), or the later of the preStop delay and the last in-flight response reaching the client. Every run must
  exit 0 having logged msg="shutdown complete".
- **Start-up.** From just before fork/exec to the first 200 from GET /ready (a new connection per probe, as the
  kubelet makes), %d fresh processes.
- **Footprint.** The image is the Dockerfile's prebuilt stage (FROM scratch plus the binary), built from the binary
  built here and removed afterwards; its size is docker image inspect's .Size. Idle memory is VmRSS from
  /proc/PID/status of each fresh process 0.5 s after one GET /hello and one /metrics scrape; under load, VmHWM
  (peak) after the overhead rounds.
- **Queue.** For each load, a fresh lameduck (default workers, job duration and drain timeout; preStop 0) and
  vegeta (github.com/tsenart/vegeta/v12/lib, 8 to 64 workers) posting POST /jobs at a constant rate of 1×, 2× and
  5× what the workers process (4 workers ÷ the job duration); SIGTERM right after the load, so the drain starts
  with the backlog the admission let in. Accepted and rejected are the 202s and 503s vegeta saw; processed and
  dropped come from msg="shutdown complete"; latency is the "latency" of each msg="job processed" record
  (enqueue → processed, the observation behind lameduck_job_latency_seconds). The admission's cost on the hot
  path is queue.BenchmarkEnqueue (a job's whole way through Enqueue, with the decision) and
  queue.BenchmarkEnqueueRefused (a refusal) below; GET /hello does not reach the queue.
- **Micro-benchmarks.** `+"`go test -run '^$' -bench . -skip Parallel -benchmem -count 5 ./internal/server/ ./internal/queue/`"+`,
  then the RunParallel ones, which load the middleware and the connection tracker from every P at once, at
  -cpu 1,2,4: `+"`go test -run '^$' -bench Parallel -benchmem -cpu 1,2,4 -count 5 ./internal/server/ ./internal/app/`"+`;
  raw output in %s, summarised above as the median of the 5 counts. ns/op of a RunParallel benchmark is wall
  time over all the Ps (with 2 cores, -2 and -4 can at best halve -1's); CPU ns/op is the process's CPU time per op,
  which contention on shared memory makes grow with the Ps. To compare a change: the same commands into new.txt,
  then `+"`go run golang.org/x/perf/cmd/benchstat@latest %s new.txt`"+`.
`,
		m.date.Format("2006-01-02 15:04 MST"), m.cpus, m.cpu, m.mem, m.kernel, m.loadStart, m.loadEnd,
		m.goVersion, m.code, shellJoin(args), table,
		fmtDur(benchIdleTimeout), fmtDur(benchWriteTimeout), procsList(o.procs), o.threads, o.conns, pinning(o),
		o.round, o.warmup, o.rounds,
		fmtDur(o.prestop), o.runs, microName(o.micro), microName(o.micro))
	return b.String()
}

// procsList is "GOMAXPROCS=1 and GOMAXPROCS=2" for procs 1, 2.
func procsList(procs []int) string {
	var s []string
	for _, n := range procs {
		s = append(s, "GOMAXPROCS="+strconv.Itoa(n))
	}
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}

// shellJoin quotes args for a shell where needed.
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n'\"$`\\*?[]{}()<>|&;#~") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}

func microName(path string) string {
	if path == "" {
		return "(none given: -micro)"
	}
	return path
}

// microRows summarises raw `go test -bench` output: per benchmark, the
// median of its counts.
func (b *bench) microRows(context.Context) ([]row, error) {
	if b.o.micro == "" {
		return nil, nil
	}
	f, err := os.Open(b.o.micro)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	results, err := parseBench(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.o.micro, err)
	}
	rows := make([]row, 0, len(results))
	for _, r := range results {
		cpu := ""
		if len(r.cpu) > 0 {
			cpu = fmt.Sprintf(" (%s CPU ns/op)", fmtInt(median(r.cpu)))
		}
		rows = append(rows, row{
			"go test -bench " + r.name,
			none,
			fmt.Sprintf("%s ns/op%s, %s B/op, %s allocs/op (median of %d)",
				fmtInt(median(r.ns)), cpu, fmtInt(median(r.bytes)), fmtInt(median(r.allocs)), len(r.ns)),
			none,
		})
	}
	return rows, nil
}

// benchResult is one benchmark's runs.
type benchResult struct {
	name              string // package.BenchmarkName-P
	ns, bytes, allocs []float64
	cpu               []float64 // cpu-ns/op, which the RunParallel benchmarks report
}

// parseBench reads `go test -bench -benchmem` output, keeping the order in
// which benchmarks first appear.
func parseBench(f io.Reader) ([]*benchResult, error) {
	var out []*benchResult
	byName := map[string]*benchResult{}
	pkg := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = p[strings.LastIndexByte(p, '/')+1:]
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 4 || !strings.HasPrefix(fields[0], "Benchmark") {
			continue
		}
		name := fields[0]
		if pkg != "" {
			name = pkg + "." + name
		}
		r := byName[name]
		if r == nil {
			r = &benchResult{name: name}
			byName[name] = r
			out = append(out, r)
		}
		// fields[1] is the iteration count; then value-unit pairs.
		for i := 2; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				continue
			}
			switch fields[i+1] {
			case "ns/op":
				r.ns = append(r.ns, v)
			case "B/op":
				r.bytes = append(r.bytes, v)
			case "allocs/op":
				r.allocs = append(r.allocs, v)
			case "cpu-ns/op":
				r.cpu = append(r.cpu, v)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no benchmark results")
	}
	for _, r := range out {
		if len(r.ns) == 0 || len(r.bytes) != len(r.ns) || len(r.allocs) != len(r.ns) {
			return nil, fmt.Errorf("%s: want ns/op, B/op and allocs/op on every line (run with -benchmem)", r.name)
		}
	}
	return out, nil
}

type number interface{ ~int64 | ~float64 }

// median returns the median of xs (the mean of the middle two for an even
// count); xs must not be empty.
func median[T number](xs []T) T {
	s := sorted(xs)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func maxOf[T number](xs []T) T { return slices.Max(xs) }
func minOf[T number](xs []T) T { return slices.Min(xs) }

func sorted[T number](xs []T) []T {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s
}

// percentile returns the nearest-rank p-quantile (0 < p ≤ 1) of sorted s.
func percentile[T number](s []T, p float64) T {
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// fmtDur renders d with about three significant digits: 850 µs, 1.25 ms,
// 12.3 ms, 300 ms, 1.50 s.
func fmtDur(d time.Duration) string {
	switch {
	case d < 0:
		return "-" + fmtDur(-d)
	case d < time.Millisecond:
		return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	case d < 100*time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
}

func fmtMiB[T number](bytes T) string { return fmt.Sprintf("%.1f MiB", float64(bytes)/(1<<20)) }

// fmtInt renders x rounded, with a space between thousands: 41 250.
func fmtInt[T number](x T) string {
	s := strconv.FormatInt(int64(math.Round(float64(x))), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteRune(' ')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// pinning says where the servers and wrk ran.
func pinning(o options) string {
	if o.pin && slices.Contains(o.procs, 1) {
		return "At GOMAXPROCS=1 the servers are pinned to CPU 0 and wrk to CPU 1 (-pin): each has a core of its own, " +
			"so the server's CPU is the limit, as in a pod with one CPU, and the kernel's choice of core drops out of the " +
			"ratio (unpinned, per-round ratios on this 2-core VM swung by ±30%). At GOMAXPROCS=2 nothing is pinned: " +
			"the server's two threads share the cores with wrk and get what wrk leaves (the cores busy are in the table), " +
			"the same for every server, which is what the ratio compares."
	}
	return "Nothing is pinned (-pin=false): the kernel schedules the servers and wrk's single thread on the cores; " +
		"each server gets what wrk leaves (the cores busy are in the table), the same for every server, which is " +
		"what the ratio compares."
}
