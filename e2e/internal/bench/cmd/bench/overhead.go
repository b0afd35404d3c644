//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/lameduck/lameduck/e2e/internal/bench/procfs"
	"github.com/lameduck/lameduck/internal/child"
	"github.com/lameduck/lameduck/internal/config"
)

// goal is what lameduck promises: GET /hello throughput at least this share
// of net/http's with the same limits, at every GOMAXPROCS.
const goal = 0.95

// Who failed, when a measurement could not be made.
var (
	errService = errors.New("service failed")
	errHarness = errors.New("harness failed")
)

// sameLimits are the plain server's flags that give net/http lameduck's
// defaults, read from the default tags of lameduck's config.Config so that
// they cannot drift from it.
func sameLimits() ([]string, error) {
	t := reflect.TypeFor[config.Config]()
	var args []string
	for _, f := range [][2]string{{"ReadHeaderTimeout", "-read-header-timeout"}, {"IdleTimeout", "-idle-timeout"},
		{"WriteTimeout", "-write-timeout"}, {"MaxHeaderBytes", "-max-header-bytes"}} {
		sf, _ := t.FieldByName(f[0])
		v := sf.Tag.Get("default")
		if v == "" {
			return nil, fmt.Errorf("%w: config.Config has no field %s with a default tag", errHarness, f[0])
		}
		args = append(args, f[1], v)
	}
	return args, nil
}

// sample is what one round measured of one server; ok is false when the
// round failed.
type sample struct {
	ok  bool
	rps float64
	p99 time.Duration
	cpu time.Duration // the server's CPU time per request
}

// server is one process under load, with a sample for every round.
type server struct {
	name    string
	p       *child.Process
	samples []sample
	failed  int64 // requests wrk saw fail
	dead    bool  // it exited: loaded no more
}

// set is the servers compared at one GOMAXPROCS: lameduck first, then the
// baselines.
type set struct {
	procs   int
	pinned  bool // the servers on CPU 0, wrk on CPU 1
	servers []*server
}

// overhead starts lameduck and the baselines at each GOMAXPROCS of -procs,
// all at once, and loads GET /hello of one at a time with wrk for -rounds
// rounds. The order reverses from one round to the next (sets and servers
// alike), so a drift in the machine's load hits both sides of a ratio. A
// round that fails is left out of the ratios and reported; the run goes on.
func overhead(ctx context.Context, o options, bins binaries, w *wrk, logf func(string, ...any)) (sets []*set, failures []error) {
	limits, err := sameLimits()
	if err != nil {
		return nil, []error{err}
	}
	defer func() {
		for _, st := range sets {
			for _, s := range st.servers {
				if err := stop(s); err != nil {
					failures = append(failures, err)
				}
			}
		}
	}()
	for _, n := range o.procs {
		st := &set{procs: n, pinned: o.pin && n == 1}
		sets = append(sets, st)
		for _, spec := range []struct {
			name, bin string
			args      []string
		}{
			{"lameduck", bins.lameduck, nil},
			{"net/http, lameduck's limits", bins.plain, limits},
			{"net/http, bare", bins.plain, nil},
		} {
			p, err := start(ctx, spec.name, spec.bin, spec.args, n, st.pinned)
			if err != nil {
				return sets, append(failures, err)
			}
			st.servers = append(st.servers, &server{name: spec.name, p: p, samples: make([]sample, o.rounds)})
		}
	}
	for _, st := range sets {
		for _, s := range st.servers {
			if _, err := load(ctx, w, s, st, o.warmup); err != nil {
				failures = append(failures, fmt.Errorf("warm-up: %w", err))
			}
		}
	}
	for i := range o.rounds {
		order := slices.Clone(sets)
		if i%2 == 1 {
			slices.Reverse(order)
		}
		for _, st := range order {
			servers := slices.Clone(st.servers)
			if i%2 == 1 {
				slices.Reverse(servers)
			}
			for _, s := range servers {
				if s.dead {
					continue
				}
				if ctx.Err() != nil {
					return sets, append(failures, fmt.Errorf("%w: interrupted", errHarness))
				}
				smp, err := load(ctx, w, s, st, o.round)
				if err != nil {
					failures = append(failures, fmt.Errorf("round %d: %w", i+1, err))
					continue
				}
				s.samples[i] = smp
				logf("round %d/%d GOMAXPROCS=%d %-28s %8.0f req/s  p99 %-9s CPU %s/request", i+1, o.rounds, st.procs, s.name,
					smp.rps, smp.p99.Round(time.Microsecond), smp.cpu.Round(10*time.Nanosecond))
			}
		}
	}
	return sets, failures
}

// start runs a server at GOMAXPROCS procs, on CPU 0 when pinned.
func start(ctx context.Context, name, bin string, args []string, procs int, pinned bool) (*child.Process, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second) // a slow machine starts slowly
	defer cancel()
	cfg := child.Config{Name: fmt.Sprintf("%s GOMAXPROCS=%d", name, procs), Args: args,
		Env:  []string{fmt.Sprintf("GOMAXPROCS=%d", procs), "LAMEDUCK_PRESTOP_DELAY=0s"},
		Keep: func(child.Record) bool { return false }}
	if pinned { // taskset binds the server, then becomes it
		cfg.Args = append([]string{"-c", "0", bin}, args...)
		bin = "taskset"
	}
	p, err := child.Start(ctx, bin, cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errService, err)
	}
	return p, nil
}

// stop sends SIGTERM and waits up to 20 s; a server that exits other than
// 0, or not at all, failed.
func stop(s *server) error {
	if s.dead { // reported when found
		return nil
	}
	_ = s.p.Terminate()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	code, err := s.p.Wait(ctx)
	if err != nil {
		s.p.Kill()
	}
	if err != nil || code != 0 {
		return fmt.Errorf("%w: %s: exit code %d after SIGTERM (%v): %s", errService, s.p.Name, code, err, lastLine(s.p.Stderr()))
	}
	return nil
}

// load runs wrk against s for d and measures it.
func load(ctx context.Context, w *wrk, s *server, st *set, d time.Duration) (sample, error) {
	select {
	case <-s.p.Exited():
		s.dead = true
		return sample{}, fmt.Errorf("%w: %s exited with code %d (-1: killed by a signal): %s", errService, s.p.Name, s.p.ExitCode(), lastLine(s.p.Stderr()))
	default:
	}
	cpu0, err0 := procfs.CPU(s.p.Pid())
	r, err := w.run(ctx, "http://"+s.p.HTTPAddr+"/hello", d, st.pinned)
	if err != nil {
		return sample{}, fmt.Errorf("%w: %s: %w", errHarness, s.p.Name, err)
	}
	cpu1, err1 := procfs.CPU(s.p.Pid())
	s.failed += r.Errors
	switch {
	case err0 != nil || err1 != nil:
		return sample{}, fmt.Errorf("%w: %s: %w", errService, s.p.Name, errors.Join(err0, err1))
	case r.Requests == 0:
		return sample{}, fmt.Errorf("%w: %s answered nothing in %s (%d failed requests)", errService, s.p.Name, d, r.Errors)
	}
	return sample{
		ok:  true,
		rps: float64(r.Requests) / (r.DurationUS / 1e6),
		p99: time.Duration(r.P99US * float64(time.Microsecond)),
		cpu: (cpu1 - cpu0) / time.Duration(r.Requests),
	}, nil
}

// ratio is lameduck's throughput over a baseline's: the median of the
// per-round ratios, over the rounds both completed, and their range.
type ratio struct {
	median, lo, hi float64
	n              int
}

func compare(l, b *server) ratio {
	var rs []float64
	for i := range l.samples {
		if l.samples[i].ok && b.samples[i].ok {
			rs = append(rs, l.samples[i].rps/b.samples[i].rps)
		}
	}
	if len(rs) == 0 {
		return ratio{}
	}
	return ratio{median(rs), slices.Min(rs), slices.Max(rs), len(rs)}
}

// median returns the median of xs (the mean of the middle two for an even
// count), or zero for none.
func median[T float64 | time.Duration](xs []T) T {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	return (s[(len(s)-1)/2] + s[len(s)/2]) / 2
}

// medians returns the medians of s's completed rounds: req/s, p99, CPU per request.
func (s *server) medians() (rps float64, p99, cpu time.Duration, n int) {
	var r []float64
	var p, c []time.Duration
	for _, smp := range s.samples {
		if smp.ok {
			r, p, c = append(r, smp.rps), append(p, smp.p99), append(c, smp.cpu)
		}
	}
	return median(r), median(p), median(c), len(r)
}

// table renders the sets as a Markdown table, and whether the goal was met
// at every GOMAXPROCS.
func table(sets []*set) (string, bool) {
	var b strings.Builder
	b.WriteString("| GOMAXPROCS | server | req/s | lameduck ÷ this | p99 | CPU per request | rounds | failed requests |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|\n")
	met := len(sets) > 0
	for _, st := range sets {
		if len(st.servers) == 0 { // lameduck did not start
			met = false
			continue
		}
		procs := fmt.Sprint(st.procs)
		if st.pinned {
			procs += ", pinned"
		}
		l := st.servers[0]
		for j, s := range st.servers {
			rps, p99, cpu, n := s.medians()
			vs := "—"
			if j > 0 {
				r := compare(l, s)
				vs = fmt.Sprintf("%.3f× (%.2f–%.2f)", r.median, r.lo, r.hi)
				if r.n == 0 {
					vs = "no round completed"
				}
				if j == 1 { // the baseline of the goal
					ok := r.n > 0 && r.median >= goal
					met = met && ok
					vs = fmt.Sprintf("**%s**: goal ≥ %.2f×, %s", vs, goal, verdict(ok))
				}
			}
			fmt.Fprintf(&b, "| %s | %s | %.0f | %s | %s | %s | %d of %d | %d |\n", procs, s.name, rps, vs,
				p99.Round(10*time.Microsecond), cpu.Round(10*time.Nanosecond), n, len(s.samples), s.failed)
		}
	}
	return b.String(), met
}

func verdict(met bool) string {
	if met {
		return "met"
	}
	return "MISSED"
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return s[strings.LastIndexByte(s, '\n')+1:]
}
