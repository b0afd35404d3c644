// Package rehearsal rehearses rolling updates of lameduck without a cluster,
// in seconds: it builds the real binary, runs replicas of it on loopback
// ports behind a Balancer that behaves like kube-proxy (layer 4, learns
// readiness late, never moves a connection), replaces them the way a
// Deployment with maxSurge 1 and maxUnavailable 0 does while loadtest keeps
// mixed traffic on, and checks the books: every request answered, every
// accepted job processed, every replica exited clean. Besides the load, it
// probes every replica it replaces: from its SIGTERM until the balancer
// stops routing to it, requests over HTTP/1.1 and h2c are sent to it on
// connections the balancer routes with affinity to it (Balancer.DialPinned,
// Probe), so that the moment the race lives in is always met, not only when
// the random pick happens to.
//
// It shows the race that breaks rollouts in production: a replica that stops
// listening as soon as it gets SIGTERM still receives new connections until
// the balancer learns it is gone. The kind e2e test has the final word; this
// is its rehearsal.
package rehearsal

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/lameduck/lameduck/e2e/internal/loadtest"
)

// Config describes one rehearsal. Zero fields take the defaults noted,
// except Prestop, for which zero means no preStop delay.
type Config struct {
	Binary   string // the lameduck binary, from Build
	Replicas int    // replicas of each version; default 3
	Rollouts int    // rolling updates, one after the other; default 1
	Balancer BalancerConfig

	Prestop         time.Duration // LAMEDUCK_PRESTOP_DELAY, as given
	ShutdownTimeout time.Duration // LAMEDUCK_SHUTDOWN_TIMEOUT; default 5s
	DrainTimeout    time.Duration // LAMEDUCK_DRAIN_TIMEOUT; default 5s
	Env             []string      // more NAME=value settings for every replica

	Mix      loadtest.Mix  // the load; Run sets Target to the balancer
	Warmup   time.Duration // load before the first rollout; default 1s
	Cooldown time.Duration // load after the last replaced replica exited; default 500ms
	Timeout  time.Duration // longest wait for a replica to be routed or to exit; default 20s plus the shutdown budget

	// Logf, when set, receives a line at every step. Run calls it from its
	// own goroutine only.
	Logf func(format string, args ...any)
}

func (c Config) withDefaults() Config {
	if c.Replicas <= 0 {
		c.Replicas = 3
	}
	if c.Rollouts <= 0 {
		c.Rollouts = 1
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = 5 * time.Second
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 5 * time.Second
	}
	if c.Warmup <= 0 {
		c.Warmup = time.Second
	}
	if c.Cooldown <= 0 {
		c.Cooldown = 500 * time.Millisecond
	}
	if c.Timeout <= 0 {
		c.Timeout = 20*time.Second + c.budget()
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	c.Balancer = c.Balancer.withDefaults()
	return c
}

// budget is the longest a replica's shutdown sequence may take.
func (c Config) budget() time.Duration { return c.Prestop + c.ShutdownTimeout + c.DrainTimeout }

// env is every replica's configuration.
func (c Config) env() []string {
	return append([]string{
		"LAMEDUCK_PRESTOP_DELAY=" + c.Prestop.String(),
		"LAMEDUCK_SHUTDOWN_TIMEOUT=" + c.ShutdownTimeout.String(),
		"LAMEDUCK_DRAIN_TIMEOUT=" + c.DrainTimeout.String(),
		"LAMEDUCK_GRACE_PERIOD=" + (c.budget() + 2*time.Second).String(),
	}, c.Env...)
}

// Result is what a rehearsal saw.
type Result struct {
	Report    loadtest.Report    // the load, with Processed filled from the logs
	Summaries []loadtest.Summary // each replica's "shutdown complete" record
	Replicas  []Exit             // every replica started, in order
	Missing   []string           // accepted job ids never logged as processed
	Dropped   int                // how many of Missing were logged as dropped
	Balancer  BalancerStats
	Rollouts  []time.Duration // how long each rollout took, first new replica to last SIGTERM
	// Probes holds, for every replica replaced by a rollout, in order, its
	// ProbeHTTP1 probe then its ProbeH2C one.
	Probes []Probe
}

// Exit is how one replica ended.
type Exit struct {
	Name     string
	Code     int           // the exit code; -1 when a signal killed it
	Shutdown time.Duration // from SIGTERM to exit
	Log      string        // standard output and error
}

// Problems lists everything that went wrong: failed requests, accepted jobs
// not processed, replicas that did not exit 0 with a clean shutdown summary.
// It is empty after a rehearsal that lost nothing.
func (r *Result) Problems() []string {
	var p []string
	if r.Report.Failures > 0 {
		p = append(p, fmt.Sprintf("%d of %d requests failed", r.Report.Failures, r.Report.Requests))
	}
	if sent, failed := r.probed(); failed > 0 {
		p = append(p, fmt.Sprintf("%d of %d probe requests to terminated replicas still routed failed", failed, sent))
	}
	if len(r.Missing) > 0 {
		p = append(p, fmt.Sprintf("%d of %d accepted jobs never processed (%d logged as dropped), first %s",
			len(r.Missing), len(r.Report.Accepted), r.Dropped, r.Missing[0]))
	}
	summaries := map[string]loadtest.Summary{}
	for _, s := range r.Summaries {
		summaries[s.Source] = s
	}
	for _, x := range r.Replicas {
		if x.Code != 0 {
			p = append(p, fmt.Sprintf("replica %s exited with code %d", x.Name, x.Code))
		}
		s, ok := summaries[x.Name]
		switch {
		case !ok:
			p = append(p, fmt.Sprintf("replica %s logged no \"shutdown complete\"", x.Name))
		case s.JobsDropped > 0 || s.RequestsCut > 0:
			p = append(p, fmt.Sprintf("replica %s dropped %d jobs and cut %d requests", x.Name, s.JobsDropped, s.RequestsCut))
		}
	}
	return p
}

// probed sums the probes' requests and failures.
func (r *Result) probed() (sent, failed int) {
	for _, pr := range r.Probes {
		sent += pr.Sent
		failed += pr.Failures()
	}
	return sent, failed
}

// Err returns the Problems as one error, or nil.
func (r *Result) Err() error {
	if p := r.Problems(); len(p) > 0 {
		return errors.New(strings.Join(p, "; "))
	}
	return nil
}

// String is the rehearsal's short report.
func (r *Result) String() string {
	var b strings.Builder
	b.WriteString(r.Report.String())
	fmt.Fprintf(&b, "balancer: %d connections, %d rejected (no endpoint ready), %d reset (endpoint refused); "+
		"pinned (the probes'): %d, %d refused\n", r.Balancer.Accepted, r.Balancer.Rejected,
		r.Balancer.DialFailures, r.Balancer.Pinned, r.Balancer.PinnedRefused)
	if len(r.Probes) > 0 {
		b.WriteString("probes (requests to each terminated replica while the balancer still routed to it):\n")
		for _, pr := range r.Probes {
			fmt.Fprintf(&b, "  %s\n", pr)
		}
	}
	rollouts := make([]string, len(r.Rollouts))
	for i, d := range r.Rollouts {
		rollouts[i] = d.Round(time.Millisecond).String()
	}
	fmt.Fprintf(&b, "rollouts: %d (%s)\n", len(r.Rollouts), strings.Join(rollouts, ", "))
	b.WriteString("shutdowns:\n")
	b.WriteString(loadtest.SummaryTable(r.Summaries))
	exits := make([]string, len(r.Replicas))
	for i, x := range r.Replicas {
		exits[i] = fmt.Sprintf("%s=%d (%s)", x.Name, x.Code, x.Shutdown.Round(time.Millisecond))
	}
	fmt.Fprintf(&b, "exits: %s\n", strings.Join(exits, " "))
	if p := r.Problems(); len(p) > 0 {
		fmt.Fprintf(&b, "PROBLEMS:\n  %s\n", strings.Join(p, "\n  "))
	}
	return b.String()
}

// Run rehearses cfg.Rollouts rolling updates under load and returns what it
// saw. Its error is about the rehearsal itself (a replica that would not
// start, a wait that timed out); what the rehearsal found is in
// Result.Problems. Every process and goroutine it started has ended when it
// returns.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg = cfg.withDefaults()
	if cfg.Binary == "" {
		return nil, errors.New("rehearsal: Config.Binary is empty (see Build)")
	}
	bal, err := NewBalancer(cfg.Balancer)
	if err != nil {
		return nil, err
	}
	defer bal.Close()
	probeCtx, stopProbes := context.WithCancel(ctx)
	f := &fleet{cfg: cfg, bal: bal, ledger: loadtest.NewLedger(), probeCtx: probeCtx}
	defer f.killAll()
	defer f.stopProbes(stopProbes)

	res := &Result{}
	err = f.rehearse(ctx, res)
	// Whatever happened, end what is still running and keep the books.
	f.stopProbes(stopProbes)
	if f.load != nil {
		res.Report = f.load.Stop()
	}
	f.killAll()
	res.Balancer = bal.Stats()
	f.account(res)
	return res, err
}

// fleet is the replicas of one rehearsal and what watches them.
type fleet struct {
	cfg    Config
	bal    *Balancer
	ledger *loadtest.Ledger
	load   *loadtest.Load
	all    []*Replica // every replica started, in order

	probeCtx context.Context // ends the probes; Run cancels it
	probes   []*prober       // one per replica replaced, in order
	probing  sync.WaitGroup  // the probes running
}

// rehearse starts the first version, puts the load on, rolls out, and shuts
// the last version down once the load has stopped.
func (f *fleet) rehearse(ctx context.Context, res *Result) error {
	cfg := f.cfg
	current := make([]*Replica, cfg.Replicas)
	for i := range current {
		r, err := f.start(ctx, fmt.Sprintf("v0-%d", i))
		if err != nil {
			return err
		}
		current[i] = r
	}

	mix := cfg.Mix
	mix.Target = "http://" + f.bal.Addr()
	f.load = loadtest.Start(mix)
	cfg.Logf("load: %d req/s through %s, warming up for %s", mix.Rate(), f.bal.Addr(), cfg.Warmup)
	if err := wait(ctx, cfg.Warmup); err != nil {
		return err
	}

	var retired []*Replica
	for v := 1; v <= cfg.Rollouts; v++ {
		start := time.Now()
		f.load.Mark(fmt.Sprintf("rollout %d", v))
		for i, old := range current {
			r, err := f.start(ctx, fmt.Sprintf("v%d-%d", v, i))
			if err != nil {
				return err
			}
			current[i] = r
			pr, err := newProber(ctx, f.bal, old.Name)
			if err != nil {
				return err
			}
			f.probes = append(f.probes, pr)
			if err := old.Terminate(); err != nil {
				pr.close()
				return err
			}
			f.probing.Go(func() { pr.run(f.probeCtx, func() bool { return f.bal.Routes(old.Name) }) })
			f.bal.Remove(old.Name)
			retired = append(retired, old)
			cfg.Logf("rollout %d: %s routed, SIGTERM %s", v, r.Name, old.Name)
		}
		res.Rollouts = append(res.Rollouts, time.Since(start))
	}
	if err := f.waitExited(ctx, retired); err != nil {
		return err
	}
	if err := f.waitProbes(ctx); err != nil {
		return err
	}
	f.load.Mark("after rollouts")
	if err := wait(ctx, cfg.Cooldown); err != nil {
		return err
	}

	res.Report = f.load.Stop()
	f.load = nil
	requests, failures := res.Report.Requests, res.Report.Failures
	cfg.Logf("load stopped: %d requests, %d failed; stopping the last version", requests, failures)
	for _, r := range current {
		if err := r.Terminate(); err != nil {
			return err
		}
		f.bal.Remove(r.Name)
	}
	return f.waitExited(ctx, current)
}

// start starts a replica and waits until the balancer routes to it.
func (f *fleet) start(ctx context.Context, name string) (*Replica, error) {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()
	r, err := Start(ctx, f.cfg.Binary, name, f.cfg.env(), f.ledger)
	if err != nil {
		return nil, err
	}
	f.all = append(f.all, r)
	f.bal.Add(r.Name, r.HTTPAddr, r.AdminAddr)
	if err := f.bal.WaitRoutes(ctx, r.Name); err != nil {
		return nil, err
	}
	return r, nil
}

// waitExited waits for every replica in rs to exit.
func (f *fleet) waitExited(ctx context.Context, rs []*Replica) error {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()
	for _, r := range rs {
		select {
		case <-r.Exited():
		case <-ctx.Done():
			return fmt.Errorf("replica %s did not exit: %w", r.Name, context.Cause(ctx))
		}
	}
	return nil
}

// waitProbes waits for every probe to end, which it does once the balancer
// no longer routes to its replica.
func (f *fleet) waitProbes(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()
	for _, pr := range f.probes {
		select {
		case <-pr.done:
		case <-ctx.Done():
			return fmt.Errorf("the balancer still routes to %s: %w", pr.replica, context.Cause(ctx))
		}
	}
	return nil
}

// stopProbes ends the probes still running with stop, which cancels
// probeCtx, and waits for them.
func (f *fleet) stopProbes(stop context.CancelFunc) {
	stop()
	f.probing.Wait()
}

// killAll kills every replica still running and waits for it.
func (f *fleet) killAll() {
	for _, r := range f.all {
		r.Kill()
	}
}

// account fills res from the replicas' exits and logs; every replica must
// have exited.
func (f *fleet) account(res *Result) {
	res.Report.Processed = f.ledger.Processed()
	res.Missing, res.Dropped = f.ledger.Unprocessed(res.Report.Accepted)
	res.Summaries = f.ledger.Summaries()
	for _, pr := range f.probes {
		res.Probes = append(res.Probes, pr.probes[:]...)
	}
	for _, r := range f.all {
		x := Exit{Name: r.Name, Code: r.ExitCode(), Log: r.Log()}
		if t := r.Terminated(); !t.IsZero() {
			x.Shutdown = r.ExitedAt().Sub(t)
		}
		res.Replicas = append(res.Replicas, x)
	}
}

// wait waits for d or until ctx ends, which it reports.
func wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
