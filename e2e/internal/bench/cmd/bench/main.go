//go:build linux

// Command bench measures GET /hello of lameduck against net/http under wrk:
// net/http with lameduck's limits (its default timeouts and header limit,
// the baseline of the goal) and bare net/http, side by side at each
// GOMAXPROCS of -procs. With -micro it adds benchstat's summary of the Go
// micro-benchmarks that `make bench` ran into that file. It writes both
// tables to -out under a header naming the date and the machine.
//
// A missed goal is reported, not failed. The command exits 1 when a
// measurement could not be made, saying whether the service or the harness
// failed; what was measured is still written.
//
//	go run ./internal/bench/cmd/bench -rounds 2 -round 1s -out ''
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lameduck/lameduck/e2e/internal/bench/procfs"
	"github.com/lameduck/lameduck/internal/child"
)

// benchstat summarises the micro-benchmarks; go run fetches it from the
// module proxy on first use.
const benchstat = "golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// options are the command's flags.
type options struct {
	out, micro, ldflags string
	procs               []int
	rounds              int
	round, warmup       time.Duration
	threads, conns      int
	pin                 bool
}

// binaries are the programs under test.
type binaries struct{ lameduck, plain string }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.out, "out", "internal/bench/RESULTS.md", "write the tables to this file (empty: only print them)")
	fs.StringVar(&o.micro, "micro", "", "raw `go test -bench` output to summarise with benchstat (empty: none)")
	fs.StringVar(&o.ldflags, "ldflags", "-s -w", "go build -ldflags for lameduck (make bench passes the Makefile's)")
	procs := fs.String("procs", "1,2", "comma-separated GOMAXPROCS values; every server runs at each")
	fs.IntVar(&o.rounds, "rounds", 16, "rounds, each loading every server once, in alternating order")
	fs.DurationVar(&o.round, "round", 2*time.Second, "length of each load (whole seconds)")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unrecorded load of each server before the rounds")
	fs.IntVar(&o.threads, "threads", 1, "wrk threads")
	fs.IntVar(&o.conns, "conns", 32, "wrk keep-alive connections: the load's concurrency")
	fs.BoolVar(&o.pin, "pin", true, "at GOMAXPROCS=1, run the servers on CPU 0 and wrk on CPU 1 (with taskset, on 2 CPUs or more)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	for f := range strings.SplitSeq(*procs, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			fmt.Fprintf(stderr, "bench: -procs: %q is not a positive integer\n", f)
			return 2
		}
		o.procs = append(o.procs, n)
	}
	if fs.NArg() > 0 || o.rounds < 1 || o.round < time.Second || o.threads < 1 || o.conns < o.threads {
		fmt.Fprintln(stderr, "bench: want no arguments, -rounds ≥ 1, -round ≥ 1s, -threads ≥ 1, -conns ≥ -threads")
		return 2
	}
	logf := func(format string, args ...any) {
		fmt.Fprintf(stderr, "%s bench: "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
	if _, err := exec.LookPath("taskset"); o.pin && (err != nil || runtime.NumCPU() < 2) {
		logf("not pinning: taskset %v, %d CPUs", err, runtime.NumCPU())
		o.pin = false
	}
	machine := procfs.Machine()

	dir, err := os.MkdirTemp("", "lameduck-bench-")
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	logf("building lameduck and the plain server into %s", dir)
	bins, err := build(ctx, dir, o.ldflags)
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	w, err := newWrk(dir, o.threads, o.conns)
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v: %v\n", errHarness, err)
		return 1
	}
	limits, _ := sameLimits() // overhead reports its error
	sets, failures := overhead(ctx, o, bins, w, logf)
	tbl, met := table(sets)
	micro := ""
	if o.micro != "" {
		if micro, err = summarise(ctx, o.micro); err != nil {
			failures = append(failures, err)
		}
	}

	var b strings.Builder
	fmt.Fprintf(&b, "# lameduck: GET /hello against net/http\n\n%s at the start, %s at the end\n\n", machine, procfs.Load())
	fmt.Fprintf(&b, "Written by internal/bench/cmd/bench: wrk -t%d -c%d (keep-alive) loads one server at a time, %d rounds of %s "+
		"each after %s of warm-up, in alternating order; each number is the median over the rounds, a ratio the median of "+
		"the per-round ratios (their range in brackets). lameduck runs with its defaults; net/http with lameduck's limits "+
		"has `%s`, bare net/http none.", o.threads, o.conns, o.rounds, o.round, o.warmup, strings.Join(limits, " "))
	if o.pin {
		b.WriteString(" Pinned at GOMAXPROCS=1: the servers on CPU 0, wrk on CPU 1.")
	}
	fmt.Fprintf(&b, "\n\n%s\nThe goal, lameduck ≥ %.2f× net/http with lameduck's limits at every GOMAXPROCS: **%s**.\n", tbl, goal, verdict(met))
	if len(failures) > 0 {
		b.WriteString("\nWhat could not be measured:\n")
		for _, err := range failures {
			fmt.Fprintf(&b, "- %s\n", firstLine(err.Error()))
		}
	}
	b.WriteString(micro)
	fmt.Fprint(stdout, b.String())
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(b.String()), 0o644); err != nil {
			failures = append(failures, fmt.Errorf("%w: %w", errHarness, err))
		} else {
			logf("wrote %s", o.out)
		}
	}
	for _, err := range failures {
		fmt.Fprintln(stderr, "bench:", err)
	}
	if len(failures) > 0 {
		return 1
	}
	return 0
}

// build compiles lameduck as `make build` does, and the plain server.
func build(ctx context.Context, dir, ldflags string) (binaries, error) {
	os.Setenv("CGO_ENABLED", "0") // a static binary, as shipped; go build inherits it
	lameduck, err := child.Build(ctx, dir, "-trimpath", "-ldflags", ldflags)
	if err != nil {
		return binaries{}, fmt.Errorf("%w: %w", errService, err)
	}
	plain := filepath.Join(dir, "plain")
	out, err := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", plain,
		"github.com/lameduck/lameduck/e2e/internal/bench/plain").CombinedOutput()
	if err != nil {
		return binaries{}, fmt.Errorf("%w: go build plain: %w\n%s", errHarness, err, out)
	}
	return binaries{lameduck, plain}, nil
}

// summarise returns benchstat's summary of the go test -bench output in
// path, as a section of the report; or why there is none, and the error.
func summarise(ctx context.Context, path string) (string, error) {
	const head = "\n## Go micro-benchmarks\n\n"
	out, err := exec.CommandContext(ctx, "go", "run", benchstat, filepath.Base(path)+"="+path).CombinedOutput()
	if err != nil {
		err = fmt.Errorf("%w: benchstat: %w: %s", errHarness, err, firstLine(string(out)))
		return fmt.Sprintf("%s%v; the raw output is in %s.\n", head, err, path), err
	}
	return fmt.Sprintf("%s`benchstat %s`:\n\n```text\n%s```\n", head, filepath.Base(path), out), nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
