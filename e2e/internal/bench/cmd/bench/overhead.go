//go:build linux

package main

import (
	"context"
	"fmt"
	"runtime"
	"slices"
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

// overheadSet is the servers compared at one GOMAXPROCS: lameduck, the
// plain net/http server, and the plain server hardened with lameduck's idle
// and write timeouts.
type overheadSet struct {
	procs                     int
	pinned                    bool // the servers on CPU 0, wrk on CPU 1
	lameduck, plain, hardened *overheadServer
}

// servers are the set's servers in the order a round loads them.
func (st *overheadSet) servers() []*overheadServer {
	return []*overheadServer{st.lameduck, st.plain, st.hardened}
}

// The timeouts lameduck and the hardened plain server both run with in the
// overhead section (lameduck's defaults).
const (
	benchIdleTimeout  = 2 * time.Minute
	benchWriteTimeout = 3 * time.Second
)

// overhead loads GET /hello of lameduck, of the plain server and of the
// hardened plain server with wrk, at each GOMAXPROCS of -procs, every server
// running at once. In each round every set is loaded in turn, and the order
// of everything reverses from one round to the next (lameduck, plain,
// hardened, hardened, plain, lameduck, ... within a set); each set is
// compared round by round, so a drift in the machine's load hits every side
// of a ratio alike. With -pin, the servers of GOMAXPROCS=1 run on CPU 0 and
// wrk on CPU 1: each has a core of its own, so the server's CPU is the limit
// and scheduling noise drops out.
func (b *bench) overhead(ctx context.Context) ([]row, error) {
	w, err := newWrk(b.dir, b.o.threads, b.o.conns)
	if err != nil {
		return nil, err
	}
	timeouts := []string{"-idle-timeout", benchIdleTimeout.String(), "-write-timeout", benchWriteTimeout.String()}
	var sets []*overheadSet
	for _, n := range b.o.procs {
		env := "GOMAXPROCS=" + strconv.Itoa(n)
		st := &overheadSet{procs: n, pinned: b.o.pin && n == 1 && runtime.NumCPU() >= 2}
		for _, spec := range []struct {
			srv       **overheadServer
			name, bin string
			args, env []string
		}{
			{&st.lameduck, "lameduck", b.bins.lameduck, nil, []string{env,
				"LAMEDUCK_LOG_LEVEL=info", "LAMEDUCK_PRESTOP_DELAY=0s",
				"LAMEDUCK_IDLE_TIMEOUT=" + benchIdleTimeout.String(), "LAMEDUCK_WRITE_TIMEOUT=" + benchWriteTimeout.String()}},
			{&st.plain, "net/http", b.bins.plain, nil, []string{env}},
			{&st.hardened, "net/http+timeouts", b.bins.plain, timeouts, []string{env}},
		} {
			p, err := startProc(ctx, spec.name, spec.bin, spec.args, spec.env, nil)
			if err != nil {
				return nil, err
			}
			defer p.Stop()
			if st.pinned {
				if err := pin(p.Pid(), 0); err != nil {
					return nil, err
				}
			}
			*spec.srv = &overheadServer{name: spec.name, p: p}
		}
		sets = append(sets, st)
	}
	for _, st := range sets {
		for _, s := range st.servers() {
			if _, err := w.run(ctx, "http://"+s.p.httpAddr+"/hello", b.o.warmup, st.pinned); err != nil {
				return nil, err
			}
		}
	}
	for i := range b.o.rounds {
		for j := range sets {
			st := sets[j]
			order := st.servers()
			if i%2 == 1 { // AB.. ..BA AB.. ..BA
				st = sets[len(sets)-1-j]
				order = st.servers()
				slices.Reverse(order)
			}
			for _, s := range order {
				if err := b.overheadRound(ctx, w, s, st.pinned, fmt.Sprintf("round %d/%d GOMAXPROCS=%d", i+1, b.o.rounds, st.procs)); err != nil {
					return nil, err
				}
			}
		}
	}
	var rows []row
	for _, st := range sets {
		r, err := b.overheadRows(st)
		if err != nil {
			return nil, err
		}
		rows = append(rows, r...)
	}
	return rows, nil
}

// overheadRound loads s for one round and records what it measured.
func (b *bench) overheadRound(ctx context.Context, w *wrk, s *overheadServer, pinned bool, label string) error {
	u0, s0, err := cpuTicks(s.p.Pid())
	if err != nil {
		return err
	}
	r, err := w.run(ctx, "http://"+s.p.httpAddr+"/hello", b.o.round, pinned)
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

// overheadRows compares a set round by round: the throughput ratio (median
// and range of the per-round ratios), p99 latency and CPU per request, of
// lameduck against the plain server, and of both against the hardened one.
func (b *bench) overheadRows(st *overheadSet) ([]row, error) {
	l, p, h := st.lameduck, st.plain, st.hardened
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
	if l.errs+p.errs+h.errs > 0 {
		errNote = fmt.Sprintf("; failed requests: lameduck %d, net/http %d, net/http+timeouts %d", l.errs, p.errs, h.errs)
	}
	procs := "GOMAXPROCS=" + strconv.Itoa(st.procs)
	if st.pinned {
		procs += ", pinned"
	}
	lp, lh, hp := compare(l, p), compare(l, h), compare(h, p)
	return []row{
		{
			"GET /hello throughput, lameduck ÷ plain net/http, each at " + procs,
			fmt.Sprintf("≥ %.2f×", targetRatio),
			fmt.Sprintf("%.3f× (%s vs %s req/s; median of %d per-round ratios, which ranged %.2f–%.2f×)%s",
				lp.ratio, fmtInt(median(l.rps)), fmtInt(median(p.rps)), lp.n, lp.lo, lp.hi, errNote),
			verdict(lp.ratio >= targetRatio && l.errs+p.errs+h.errs == 0),
		},
		{
			"GET /hello throughput, lameduck ÷ net/http with lameduck's idle and write timeouts, " + procs,
			none,
			fmt.Sprintf("%.3f× (%s req/s; ratios ranged %.2f–%.2f×); those timeouts alone: net/http+timeouts ÷ net/http %.3f× (%.2f–%.2f×)",
				lh.ratio, fmtInt(median(h.rps)), lh.lo, lh.hi, hp.ratio, hp.lo, hp.hi),
			none,
		},
		{
			"GET /hello p99 latency, lameduck vs plain vs net/http+timeouts, " + procs,
			none,
			fmt.Sprintf("%s vs %s vs %s (medians of %d rounds of %s; wrk -t%d -c%d)",
				fmtDur(time.Duration(median(l.p99))), fmtDur(time.Duration(median(p.p99))), fmtDur(time.Duration(median(h.p99))),
				b.o.rounds, fmtDur(b.o.round), b.o.threads, b.o.conns),
			none,
		},
		{
			"server CPU per GET /hello, lameduck vs plain, " + procs,
			none,
			fmt.Sprintf("%.2f µs vs %.2f µs: lameduck %+.1f%% (user time %+.1f%%, system %+.1f%%; medians of per-round ratios, which ranged %+.1f%% to %+.1f%%); vs net/http+timeouts (%.2f µs) %+.1f%%; cores busy: servers %.2f / %.2f, wrk %.2f / %.2f",
				1e6*median(l.cpu), 1e6*median(p.cpu), 100*(lp.cpu-1), 100*(lp.user-1),
				100*(lp.sys-1), 100*(lp.cpuLo-1), 100*(lp.cpuHi-1), 1e6*median(h.cpu), 100*(lh.cpu-1),
				median(l.on), median(p.on), median(l.wrkOn), median(p.wrkOn)),
			none,
		},
	}, nil
}

// comparison is a against b over the rounds: medians of the per-round
// ratios of throughput and of CPU per request (all, user, system), and the
// range of each.
type comparison struct {
	n                 int
	ratio, lo, hi     float64
	cpu, cpuLo, cpuHi float64
	user, sys         float64
}

func compare(a, b *overheadServer) comparison {
	var ratios, cpu, user, sys []float64
	for i := range a.rps {
		ratios = append(ratios, a.rps[i]/b.rps[i])
		cpu = append(cpu, a.cpu[i]/b.cpu[i])
		user = append(user, a.user[i]/b.user[i])
		sys = append(sys, a.sys[i]/b.sys[i])
	}
	return comparison{
		n:     len(ratios),
		ratio: median(ratios), lo: minOf(ratios), hi: maxOf(ratios),
		cpu: median(cpu), cpuLo: minOf(cpu), cpuHi: maxOf(cpu),
		user: median(user), sys: median(sys),
	}
}
