//go:build linux

package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/lameduck/lameduck/e2e/internal/bench/procfs"
)

// overheadServer is one server under load in the overhead section, with
// what each round measured.
type overheadServer struct {
	name           string
	p              *proc
	rps, p99, on   []float64 // per round: req/s, p99 (ns), cores busy
	cpu, user, sys []float64 // per round: CPU seconds per request: all, user, system
	wrkOn          []float64 // per round: cores wrk kept busy
	errs           int64
}

// overheadPair is lameduck and the plain server at one GOMAXPROCS.
type overheadPair struct {
	procs           int
	lameduck, plain *overheadServer
}

// overhead loads GET /hello of lameduck and of the plain server with wrk, at
// each GOMAXPROCS of -procs, every server running at once. In each round
// every pair is loaded in turn, and the order of everything reverses from one
// round to the next (lameduck, plain, plain, lameduck, ... within a pair); each
// pair is compared round by round, so a drift in the machine's load hits
// both sides of a ratio alike.
func (b *bench) overhead(ctx context.Context) ([]row, error) {
	w, err := newWrk(b.dir, b.o.threads, b.o.conns)
	if err != nil {
		return nil, err
	}
	var pairs []*overheadPair
	for _, n := range b.o.procs {
		env := "GOMAXPROCS=" + strconv.Itoa(n)
		ld, err := startProc(ctx, "lameduck", b.bins.lameduck, []string{env,
			"LAMEDUCK_HTTP_ADDR=127.0.0.1:0", "LAMEDUCK_ADMIN_ADDR=127.0.0.1:0",
			"LAMEDUCK_LOG_FORMAT=json", "LAMEDUCK_LOG_LEVEL=info", "LAMEDUCK_PRESTOP_DELAY=0s"}, nil)
		if err != nil {
			return nil, err
		}
		defer ld.Stop()
		pl, err := startProc(ctx, "plain", b.bins.plain, []string{env}, nil)
		if err != nil {
			return nil, err
		}
		defer pl.Stop()
		pairs = append(pairs, &overheadPair{procs: n,
			lameduck: &overheadServer{name: "lameduck", p: ld}, plain: &overheadServer{name: "net/http", p: pl}})
	}
	for _, pr := range pairs {
		for _, s := range []*overheadServer{pr.lameduck, pr.plain} {
			if _, err := w.run(ctx, "http://"+s.p.httpAddr+"/hello", b.o.warmup); err != nil {
				return nil, err
			}
		}
	}
	for i := range b.o.rounds {
		for j := range pairs {
			pr := pairs[j]
			if i%2 == 1 {
				pr = pairs[len(pairs)-1-j]
			}
			order := []*overheadServer{pr.lameduck, pr.plain}
			if i%2 == 1 { // within a pair: AB BA AB BA ...
				order = []*overheadServer{pr.plain, pr.lameduck}
			}
			for _, s := range order {
				if err := b.overheadRound(ctx, w, s, fmt.Sprintf("round %d/%d GOMAXPROCS=%d", i+1, b.o.rounds, pr.procs)); err != nil {
					return nil, err
				}
			}
		}
	}
	var rows []row
	for _, pr := range pairs {
		r, err := b.overheadRows(pr)
		if err != nil {
			return nil, err
		}
		rows = append(rows, r...)
	}
	return rows, nil
}

// overheadRound loads s for one round and records what it measured.
func (b *bench) overheadRound(ctx context.Context, w *wrk, s *overheadServer, label string) error {
	u0, s0, err := cpuTicks(s.p.Pid())
	if err != nil {
		return err
	}
	r, err := w.run(ctx, "http://"+s.p.httpAddr+"/hello", b.o.round)
	if err != nil {
		return err
	}
	u1, s1, err := cpuTicks(s.p.Pid())
	if err != nil {
		return err
	}
	user, sys := float64(u1-u0)/ticksPerSecond, float64(s1-s0)/ticksPerSecond
	cpu := user + sys
	secs := r.DurationUS / 1e6
	s.rps = append(s.rps, r.RPS())
	s.p99 = append(s.p99, float64(r.P99()))
	s.cpu = append(s.cpu, cpu/float64(r.Requests))
	s.user = append(s.user, user/float64(r.Requests))
	s.sys = append(s.sys, sys/float64(r.Requests))
	s.on = append(s.on, cpu/secs)
	s.wrkOn = append(s.wrkOn, r.CPU.Seconds()/secs)
	s.errs += r.Errors()
	b.logf("overhead %s %-8s %7.0f req/s  p99 %-8s  busy: server %3.0f%%, wrk %3.0f%% of a core; server %.2f µs CPU/request; %d errors",
		label, s.name, r.RPS(), fmtDur(r.P99()), 100*cpu/secs, 100*r.CPU.Seconds()/secs, 1e6*cpu/float64(r.Requests), r.Errors())
	return nil
}

// overheadRows compares a pair round by round: the throughput ratio (median
// and range of the per-round ratios), p99 latency and CPU per request.
func (b *bench) overheadRows(pr *overheadPair) ([]row, error) {
	l, p := pr.lameduck, pr.plain
	var ratios, cpuRatios, userRatios, sysRatios []float64
	for i := range l.rps {
		ratios = append(ratios, l.rps[i]/p.rps[i])
		cpuRatios = append(cpuRatios, l.cpu[i]/p.cpu[i])
		userRatios = append(userRatios, l.user[i]/p.user[i])
		sysRatios = append(sysRatios, l.sys[i]/p.sys[i])
	}
	ratio := median(ratios)
	_, lhwm, err := procfs.Mem(l.p.Pid())
	if err != nil {
		return nil, err
	}
	_, phwm, err := procfs.Mem(p.p.Pid())
	if err != nil {
		return nil, err
	}
	b.loadHWM, b.plainHWM = max(b.loadHWM, lhwm), max(b.plainHWM, phwm)
	errNote := ""
	if l.errs+p.errs > 0 {
		errNote = fmt.Sprintf("; failed requests: lameduck %d, net/http %d", l.errs, p.errs)
	}
	procs := "GOMAXPROCS=" + strconv.Itoa(pr.procs)
	return []row{
		{
			"GET /hello throughput, lameduck ÷ plain net/http, " + procs + " each",
			fmt.Sprintf("≥ %.2f×", targetRatio),
			fmt.Sprintf("%.3f× (%s vs %s req/s; median of %d per-round ratios, which ranged %.2f–%.2f×)%s",
				ratio, fmtInt(median(l.rps)), fmtInt(median(p.rps)), len(ratios), minOf(ratios), maxOf(ratios), errNote),
			verdict(ratio >= targetRatio && l.errs+p.errs == 0),
		},
		{
			"GET /hello p99 latency, lameduck vs plain, " + procs,
			none,
			fmt.Sprintf("%s vs %s (medians of %d rounds of %s; wrk -t%d -c%d)",
				fmtDur(time.Duration(median(l.p99))), fmtDur(time.Duration(median(p.p99))), b.o.rounds,
				fmtDur(b.o.round), b.o.threads, b.o.conns),
			none,
		},
		{
			"server CPU per GET /hello, lameduck vs plain, " + procs,
			none,
			fmt.Sprintf("%.2f µs vs %.2f µs: lameduck %+.1f%% (user time %+.1f%%, system %+.1f%%; medians of per-round ratios, which ranged %+.1f%% to %+.1f%%); cores busy: servers %.2f / %.2f, wrk %.2f / %.2f",
				1e6*median(l.cpu), 1e6*median(p.cpu), 100*(median(cpuRatios)-1), 100*(median(userRatios)-1),
				100*(median(sysRatios)-1), 100*(minOf(cpuRatios)-1), 100*(maxOf(cpuRatios)-1),
				median(l.on), median(p.on), median(l.wrkOn), median(p.wrkOn)),
			none,
		},
	}, nil
}
