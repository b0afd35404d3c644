//go:build linux

// Command bench measures what lameduck promises, side by side with a plain
// net/http server (internal/bench/plain): request overhead, shutdown and
// start-up times, footprint and the job queue. It builds lameduck and the
// plain server into a temporary directory, runs every measurement against
// the real processes, prints one Markdown table and writes it, with the
// machine it ran on, to -out. `make bench` runs it after the Go
// micro-benchmarks, whose raw output (-micro) it summarises in the table.
//
// A missed target shows as MISS in the table; it is not an error. The
// command exits 1 only when a measurement could not be made.
//
//	go run ./internal/bench/cmd/bench -rounds 16 -round 2s -out internal/bench/RESULTS.md
//	go run ./internal/bench/cmd/bench -only overhead,startup   # prints, writes nothing
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/lameduck/lameduck/internal/child"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // a measurement could not be made
	exitUsage = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// options are the harness's flags.
type options struct {
	out, micro, ldflags, image string
	docker                     bool
	only                       map[string]bool // empty: every section

	gomaxprocs     int
	procs          []int // overhead: the GOMAXPROCS values, side by side
	rounds         int
	round, warmup  time.Duration
	threads, conns int
	pin            bool

	runs    int
	prestop time.Duration

	jobFor  time.Duration
	jobWork time.Duration
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.out, "out", "internal/bench/RESULTS.md", "write the table and the machine it ran on to this file (empty: don't; with -only, only when given)")
	fs.StringVar(&o.micro, "micro", "", "raw `go test -bench` output to summarise in the table (empty: none)")
	fs.StringVar(&o.ldflags, "ldflags", "-s -w", "go build -ldflags for lameduck (make bench passes the Makefile's LDFLAGS)")
	fs.BoolVar(&o.docker, "docker", true, "measure the image: docker build --target prebuilt from the binary built here (needs docker)")
	fs.StringVar(&o.image, "image", "lameduck:bench", "tag of that image, removed afterwards")
	fs.IntVar(&o.gomaxprocs, "gomaxprocs", 1, "GOMAXPROCS of the servers the harness starts, but for overhead's (-procs)")
	procs := fs.String("procs", "1,2", "overhead: comma-separated GOMAXPROCS values; lameduck, plain and plain with timeouts run at each, side by side")
	fs.IntVar(&o.rounds, "rounds", 16, "overhead: rounds, each loading every server, in alternating order (more, shorter rounds: a burst of noise on the shared machine skews fewer of them)")
	fs.DurationVar(&o.round, "round", 2*time.Second, "overhead: length of each load (whole seconds)")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "overhead: unrecorded load of each server before the rounds")
	fs.IntVar(&o.threads, "threads", 1, "overhead: wrk threads")
	fs.IntVar(&o.conns, "conns", 32, "overhead: wrk keep-alive connections")
	fs.BoolVar(&o.pin, "pin", true, "overhead: at GOMAXPROCS=1, run the servers on CPU 0 and wrk on CPU 1 (needs 2 CPUs)")
	fs.IntVar(&o.runs, "runs", 7, "start-up and shutdown: runs of each")
	fs.DurationVar(&o.prestop, "prestop", 300*time.Millisecond, "shutdown: LAMEDUCK_PRESTOP_DELAY")
	fs.DurationVar(&o.jobFor, "job-for", 5*time.Second, "queue: each load (1×, 2×, 5× the workers' capacity) lasts this long")
	fs.DurationVar(&o.jobWork, "job-work", 50*time.Millisecond, "queue: LAMEDUCK_JOB_DURATION (the capacity is 4 workers / this)")
	only := fs.String("only", "", "comma-separated sections to run: overhead, startup, inflight, footprint, queue, micro (default all)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	var err error
	if o.procs, err = parseProcs(*procs); err != nil {
		fmt.Fprintln(stderr, "bench: -procs:", err)
		return exitUsage
	}
	if fs.NArg() > 0 || o.gomaxprocs < 1 || o.rounds < 1 || o.runs < 1 || o.threads < 1 ||
		o.conns < o.threads || o.jobWork <= 0 || o.round < time.Second {
		fmt.Fprintln(stderr, "bench: want no arguments, positive counts, -conns >= -threads, -round of at least 1s")
		return exitUsage
	}
	o.only = map[string]bool{}
	for name := range strings.SplitSeq(*only, ",") {
		if name = strings.TrimSpace(name); name != "" {
			o.only[name] = true
		}
	}
	outGiven := false
	fs.Visit(func(f *flag.Flag) { outGiven = outGiven || f.Name == "out" })
	if len(o.only) > 0 && !outGiven {
		o.out = "" // a partial table does not replace the full one
	}

	logf := func(format string, args ...any) {
		fmt.Fprintf(stderr, "%s bench: "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
	m := readMachine()
	dir, err := os.MkdirTemp("", "lameduck-bench-")
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return exitError
	}
	defer os.RemoveAll(dir)
	logf("building lameduck and the plain server into %s", dir)
	bins, err := build(ctx, dir, o.ldflags)
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return exitError
	}
	b := &bench{o: o, bins: bins, dir: dir, logf: logf}

	var rows []row
	failed := false
	type section struct {
		name, title string
		f           func(context.Context) ([]row, error)
	}
	sections := []section{
		{"overhead", "overhead: GET /hello, lameduck vs plain net/http", b.overhead},
		{"startup", "start-up and idle shutdown", b.lifecycle},
		{"inflight", "shutdown with requests in flight", b.inflight},
		{"footprint", "footprint", b.footprint},
		{"queue", "queue", b.queue},
		{"micro", "micro-benchmarks", b.microRows},
	}
	for name := range o.only {
		if !slices.ContainsFunc(sections, func(s section) bool { return s.name == name }) {
			fmt.Fprintf(stderr, "bench: -only: no section %q\n", name)
			return exitUsage
		}
	}
	for _, s := range sections {
		if len(o.only) > 0 && !o.only[s.name] {
			continue
		}
		if ctx.Err() != nil {
			fmt.Fprintln(stderr, "bench: interrupted")
			return exitError
		}
		logf("%s", s.title)
		rs, err := s.f(ctx)
		rows = append(rows, rs...)
		if err != nil {
			failed = true
			logf("%s: %v", s.title, err)
			rows = append(rows, row{s.title, "", "error: " + firstLine(err.Error()), "ERROR"})
		}
	}
	m.loadEnd = readLoadavg()

	table := renderTable(rows)
	fmt.Fprint(stdout, table)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(renderResults(m, o, args, table)), 0o644); err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return exitError
		}
		logf("wrote %s", o.out)
	}
	if failed {
		return exitError
	}
	return exitOK
}

// binaries are the programs under test.
type binaries struct {
	root     string // the module's directory
	lameduck string // alone in its directory: the image's build context
	plain    string
}

// build compiles lameduck as the Makefile's build target does (static,
// -trimpath, ldflags), and the plain server (of this, the tooling module) the
// same way.
func build(ctx context.Context, dir, ldflags string) (binaries, error) {
	root, err := child.ModuleDir(ctx)
	if err != nil {
		return binaries{}, err
	}
	b := binaries{
		root:     root,
		lameduck: filepath.Join(dir, "image", "lameduck"),
		plain:    filepath.Join(dir, "plain"),
	}
	for _, t := range []struct{ out, dir, pkg, ldflags string }{
		{b.lameduck, root, ".", ldflags},
		{b.plain, "", "github.com/lameduck/lameduck/e2e/internal/bench/plain", "-s -w"},
	} {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", t.ldflags, "-o", t.out, t.pkg)
		cmd.Dir = t.dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return binaries{}, fmt.Errorf("go build %s: %w\n%s", t.pkg, err, out)
		}
	}
	return b, nil
}

// parseProcs parses -procs: distinct positive integers, comma-separated.
func parseProcs(s string) ([]int, error) {
	var procs []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive integer", strings.TrimSpace(f))
		}
		if slices.Contains(procs, n) {
			return nil, fmt.Errorf("%d given twice", n)
		}
		procs = append(procs, n)
	}
	return procs, nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
