// Command rehearse runs the long rollout rehearsal: the real lameduck binary,
// replicas behind a kube-proxy-like balancer, rolled out several times under
// mixed load (see package rehearsal). It prints a short report and exits 1
// if anything was lost: a failed request, an accepted job not processed, a
// replica that did not exit 0 with a clean shutdown summary.
//
//	go run ./internal/rehearsal/cmd/rehearse -rollouts 5 -rate 400
//	go run ./internal/rehearsal/cmd/rehearse -prestop 0   # the race, shown
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/lameduck/lameduck/e2e/internal/loadtest"
	"github.com/lameduck/lameduck/e2e/internal/rehearsal"
)

// Exit codes.
const (
	exitOK    = 0
	exitLost  = 1 // the rehearsal lost something
	exitError = 2 // bad flags, or the rehearsal could not run
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("rehearse", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		replicas = fs.Int("replicas", 3, "replicas of each version")
		rollouts = fs.Int("rollouts", 5, "rolling updates, one after the other")
		rate     = fs.Int("rate", 400, "total requests per second: 30% keep-alive, 25% fresh connections, 10% slow, 15% jobs, 10% jobs on fresh connections, 10% h2c (GETs and jobs)")
		lag      = fs.Duration("lag", time.Second, "how long a readiness change takes to reach the balancer's routing")
		poll     = fs.Duration("poll", 200*time.Millisecond, "how often the balancer probes /ready")
		prestop  = fs.Duration("prestop", 3*time.Second, "LAMEDUCK_PRESTOP_DELAY; keep it above -lag + -poll")
		shutdown = fs.Duration("shutdown-timeout", 10*time.Second, "LAMEDUCK_SHUTDOWN_TIMEOUT")
		drain    = fs.Duration("drain-timeout", 5*time.Second, "LAMEDUCK_DRAIN_TIMEOUT")
		slowMin  = fs.Duration("slow-min", time.Second, "shortest ?delay= of slow requests")
		slowMax  = fs.Duration("slow-max", 3*time.Second, "longest ?delay= of slow requests")
		warmup   = fs.Duration("warmup", 3*time.Second, "load before the first rollout")
		verbose  = fs.Bool("v", false, "log every step")
	)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitError
	}
	if fs.NArg() > 0 || *replicas < 1 || *rollouts < 1 || *rate < 10 {
		fmt.Fprintln(stderr, "rehearse: want no arguments, -replicas and -rollouts of at least 1, -rate of at least 10")
		return exitError
	}

	dir, err := os.MkdirTemp("", "rehearse-")
	if err != nil {
		fmt.Fprintln(stderr, "rehearse:", err)
		return exitError
	}
	defer os.RemoveAll(dir)
	binary, err := rehearsal.Build(ctx, dir)
	if err != nil {
		fmt.Fprintln(stderr, "rehearse:", err)
		return exitError
	}

	cfg := rehearsal.Config{
		Binary: binary, Replicas: *replicas, Rollouts: *rollouts,
		Balancer: rehearsal.BalancerConfig{Lag: *lag, Poll: *poll},
		Prestop:  *prestop, ShutdownTimeout: *shutdown, DrainTimeout: *drain,
		Mix: loadtest.Mix{KeepAlive: 30, Fresh: 25, Slow: 10, Jobs: 15, FreshJobs: 10, H2C: 10,
			SlowMin: *slowMin, SlowMax: *slowMax, Timeout: 30 * time.Second}.Scale(float64(*rate) / 100),
		Warmup: *warmup, Cooldown: time.Second,
	}
	if *verbose {
		cfg.Logf = func(format string, args ...any) {
			fmt.Fprintf(stdout, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
		}
	}
	fmt.Fprintf(stdout, "rehearsal: %d replicas, %d rollouts, %d req/s, lag %s, poll %s, preStop %s, slow %s-%s\n",
		*replicas, *rollouts, cfg.Mix.Rate(), *lag, *poll, *prestop, *slowMin, *slowMax)
	res, err := rehearsal.Run(ctx, cfg)
	if res != nil {
		fmt.Fprint(stdout, res)
	}
	switch {
	case err != nil:
		fmt.Fprintln(stderr, "rehearse:", err)
		return exitError
	case len(res.Problems()) > 0:
		return exitLost
	}
	fmt.Fprintln(stdout, "OK: nothing lost")
	return exitOK
}
