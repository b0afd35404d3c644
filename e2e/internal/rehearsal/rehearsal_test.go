package rehearsal_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lameduck/lameduck/e2e/internal/loadtest"
	"github.com/lameduck/lameduck/e2e/internal/rehearsal"
)

// build is the lameduck binary, built once for every test that needs it.
var build struct {
	once        sync.Once
	dir, binary string
	err         error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if build.dir != "" {
		_ = os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

// lameduck returns the path of the real binary, building it on first use.
func lameduck(t *testing.T) string {
	t.Helper()
	build.once.Do(func() {
		if build.dir, build.err = os.MkdirTemp("", "rehearsal-"); build.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		build.binary, build.err = rehearsal.Build(ctx, build.dir)
	})
	if build.err != nil {
		t.Fatalf("build lameduck: %v", build.err)
	}
	return build.binary
}

// quick is the rehearsal `make test` runs: 3 replicas rolled out 3 times
// behind a balancer that learns readiness 300ms late (plus up to one 100ms
// poll), under ~210 req/s of mixed load (h2c included), in about 15s.
func quick(t *testing.T, prestop time.Duration) rehearsal.Config {
	t.Helper()
	return rehearsal.Config{
		Binary:          lameduck(t),
		Replicas:        3,
		Rollouts:        3,
		Balancer:        rehearsal.BalancerConfig{Poll: 100 * time.Millisecond, Lag: 300 * time.Millisecond},
		Prestop:         prestop,
		ShutdownTimeout: 5 * time.Second,
		DrainTimeout:    5 * time.Second,
		Mix: loadtest.Mix{
			KeepAlive: 80, Fresh: 40, Slow: 10, Jobs: 30, FreshJobs: 10, H2C: 40,
			SlowMin: 200 * time.Millisecond, SlowMax: 800 * time.Millisecond, Timeout: 10 * time.Second,
		},
		Warmup:   time.Second,
		Cooldown: 500 * time.Millisecond,
		Logf:     t.Logf,
	}
}

// rehearse runs cfg and logs its report.
func rehearse(t *testing.T, cfg rehearsal.Config) *rehearsal.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	res, err := rehearsal.Run(ctx, cfg)
	if res != nil {
		t.Logf("report:\n%s", res)
	}
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	// A rehearsal that sent little or replaced nothing proves nothing.
	if want := uint64(cfg.Mix.Rate()) * 3; res.Report.Requests < want {
		t.Errorf("Report.Requests = %d; want at least %d", res.Report.Requests, want)
	}
	if len(res.Report.Accepted) == 0 {
		t.Error("no job was accepted")
	}
	if got, want := len(res.Replicas), cfg.Replicas*(cfg.Rollouts+1); got != want {
		t.Errorf("%d replicas ran; want %d", got, want)
	}
	// Every replaced replica is probed over both protocols while the
	// balancer still routes to it: at least Lag, a dozen probe periods.
	if got, want := len(res.Probes), 2*cfg.Replicas*cfg.Rollouts; got != want {
		t.Errorf("%d probes; want %d (two per replaced replica)", got, want)
	}
	for _, pr := range res.Probes {
		if pr.Sent == 0 {
			t.Errorf("probe %s %s sent nothing while the balancer routed to it", pr.Replica, pr.Proto)
		}
	}
	return res
}

// TestRollingUpdateLosesNothing rolls lameduck out three times under load
// with a preStop delay longer than the balancer takes to stop routing to a
// terminating replica: nothing may be lost.
func TestRollingUpdateLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real replicas under load for ~15s")
	}
	t.Cleanup(func() { goleak.VerifyNone(t) })
	// Lag + Poll is 400ms; a second on top covers a busy machine's probes
	// (with 1s, a machine busy compiling on both cores saw 3 EOFs in 2,000).
	cfg := quick(t, 1500*time.Millisecond)

	res := rehearse(t, cfg)
	checkLostNothing(t, res)
	if res.Report.BackPressure > 0 {
		t.Errorf("%d jobs refused with 503 at a rate within capacity; want none", res.Report.BackPressure)
	}
}

// TestRollingUpdateAdaptivePrestop (#25) rehearses the adaptive preStop
// delay against the balancer's lag: no minimum (LAMEDUCK_PRESTOP_MIN=0s), a
// quiet period of 300ms, a maximum of 5s. A terminated replica is still
// sent new connections until the balancer learns it is unready (Lag plus up
// to one Poll after its SIGTERM), by the load and, every 20ms, by its probes;
// each of those arrivals restarts its quiet period. So each replica must
// keep serving exactly while it is routed, and end its delay one quiet
// period after the last arrival: nothing lost, no probe failed, nothing
// answered late (a 503 after the delay would fail a probe), every delay
// ended by the quiet period, each well under the 1.5s fixed delay the same
// lag needs on a busy machine (TestRollingUpdateLosesNothing).
func TestRollingUpdateAdaptivePrestop(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real replicas under load for ~15s")
	}
	t.Cleanup(func() { goleak.VerifyNone(t) })
	const (
		quiet = 300 * time.Millisecond
		late  = 250 * time.Millisecond // how much later than due a busy machine may end a delay
	)
	cfg := quick(t, 5*time.Second)
	cfg.Env = []string{"LAMEDUCK_PRESTOP_MIN=0s", "LAMEDUCK_PRESTOP_QUIET=" + quiet.String()}

	res := rehearse(t, cfg)
	checkLostNothing(t, res)
	probed := map[string]bool{} // the replicas replaced under load
	for _, pr := range res.Probes {
		probed[pr.Replica] = true
	}
	var delays []string
	for _, s := range res.Summaries {
		if !probed[s.Source] {
			continue // the last version, stopped once the load had
		}
		took := time.Duration(s.PrestopSeconds * float64(time.Second))
		last := time.Duration(s.PrestopLastArrival * float64(time.Second))
		delays = append(delays, fmt.Sprintf("%s %s (last arrival %s)", s.Source, took, last))
		if s.PrestopEnd != "quiet" {
			t.Errorf("replica %s: prestop_end = %q; want quiet", s.Source, s.PrestopEnd)
		}
		if s.RequestsLate != 0 {
			t.Errorf("replica %s: %v requests late; want none: the delay ended while the balancer still routed to it", s.Source, s.RequestsLate)
		}
		// Routed for at least Lag after the SIGTERM, probed all along.
		if min := cfg.Balancer.Lag - 100*time.Millisecond; last < min {
			t.Errorf("replica %s: the last arrival came %s after the SIGTERM; want at least %s: the balancer routed to it for Lag (%s)",
				s.Source, last, min, cfg.Balancer.Lag)
		}
		if took-last < quiet || took-last > quiet+late {
			t.Errorf("replica %s: the delay ended %s after the last arrival; want the quiet period %s, at most %s more",
				s.Source, took-last, quiet, late)
		}
	}
	if want := cfg.Replicas * cfg.Rollouts; len(delays) != want {
		t.Errorf("%d replaced replicas logged their delay; want %d", len(delays), want)
	}
	t.Logf("adaptive delays (maximum %s, quiet %s): %s", cfg.Prestop, quiet, strings.Join(delays, ", "))
}

// TestOverloadLosesNothing rolls lameduck out under a job load above what
// the replicas can process: default 50ms jobs, one worker each (20 jobs a
// second) and a 2s drain timeout, so that the backlog reaches the budget
// within a second. The service refuses what its drain budget cannot finish
// with 503 and Retry-After (back-pressure, counted apart), and loses nothing
// it accepted.
func TestOverloadLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real replicas under load for ~15s")
	}
	t.Cleanup(func() { goleak.VerifyNone(t) })
	cfg := quick(t, 1500*time.Millisecond)
	cfg.Rollouts = 2
	cfg.DrainTimeout = 2 * time.Second
	cfg.Env = []string{"LAMEDUCK_WORKERS=1"}
	// 150 jobs a second, 2.5× what 3 replicas process.
	cfg.Mix = loadtest.Mix{KeepAlive: 40, Fresh: 20, Jobs: 120, FreshJobs: 30, Timeout: 10 * time.Second}

	res := rehearse(t, cfg)
	checkLostNothing(t, res)
	if res.Report.BackPressure == 0 {
		t.Errorf("no job was refused with 503 and Retry-After at 2.5× capacity: the load did not overload")
	}
}

// checkLostNothing asserts what every positive rehearsal must show: no
// failed request, none either of the probes sent to each replica during the
// lag after its SIGTERM, every accepted job processed, every replica's clean
// exit.
func checkLostNothing(t *testing.T, res *rehearsal.Result) {
	t.Helper()
	if res.Report.Failures > 0 {
		t.Errorf("%d of %d requests failed; want none. First failures:\n  %s",
			res.Report.Failures, res.Report.Requests, strings.Join(res.Report.Samples, "\n  "))
	}
	for _, pr := range res.Probes {
		if n := pr.Failures(); n > 0 {
			t.Errorf("probe %s: %d of %d requests to the terminating replica, still routed, failed; want none. First of each kind: %q",
				pr, n, pr.Sent, pr.Samples)
		}
	}
	if len(res.Missing) > 0 {
		t.Errorf("%d of %d accepted jobs never logged as processed (%d dropped); want none, first %s",
			len(res.Missing), len(res.Report.Accepted), res.Dropped, res.Missing[0])
	}
	summaries := map[string]loadtest.Summary{}
	for _, s := range res.Summaries {
		summaries[s.Source] = s
	}
	for _, x := range res.Replicas {
		s, ok := summaries[x.Name]
		switch {
		case x.Code != 0:
			t.Errorf("replica %s exited with code %d; want 0. Its log ends:\n%s", x.Name, x.Code, tail(x.Log, 20))
		case !ok:
			t.Errorf("replica %s logged no \"shutdown complete\". Its log ends:\n%s", x.Name, tail(x.Log, 20))
		case s.JobsDropped != 0 || s.RequestsCut != 0:
			t.Errorf("replica %s: jobs_dropped = %d, requests_cut = %d; want 0, 0", x.Name, s.JobsDropped, s.RequestsCut)
		}
	}
}

// TestRollingUpdateWithoutPrestopFails is the negative control: the same
// rehearsal with LAMEDUCK_PRESTOP_DELAY=0s. Each terminated replica stops
// serving at once while the balancer keeps routing new connections to it
// for at least Lag (300ms) more, so requests routed there must fail, or the
// rehearsal cannot see the race it exists for. Since #25 a replica answers
// what arrives after its delay 503 late (Retry-After, Connection: close) for
// as long as it still finishes its work, and refuses connections only once
// it has exited: the race shows as late answers, then refused connections.
// A late answer counts as the race's: for a probe, an "http 503"; for the
// load, which counts a 503 with Retry-After as back-pressure, not failure,
// the replicas' requests_late.
//
// For both HTTP/1.1 and h2c it forces the race rather than waiting for it.
// The load alone did not always meet it over h2c (1 warm run in 6 saw no h2c
// failure): its h2c stream opens a new connection only after a GOAWAY, a few
// times a run, each routed to the stopped replica with probability 1/4 or
// so; and when one was, the balancer, which must accept a connection before
// it dials the endpoint, reset it, and Go's HTTP/2 client, when the reset
// comes before it wrote its request, takes the connection for one never
// usable and retries the request after a backoff (at once, then 1s later),
// by when the balancer routes elsewhere: no failure. So the rehearsal probes
// each of the nine replaced replicas (rehearsal.Probe): every 20ms while the
// balancer routes to it, an HTTP/1.1 request on a new connection and an h2c
// request on the connection opened before the SIGTERM, which the replica's
// GOAWAY ends and which the client replaces, each new connection routed with
// affinity to the replica and dialled as kube-proxy's DNAT does
// (Balancer.DialPinned), so that a closed port refuses it, which no client
// retries. Every probe of both protocols must fail: late, or at the
// connection level. That is deterministic: the balancer routes to the
// replica for at least Lag after the SIGTERM (Lag counts from a probe of
// /ready made after it), the replica stops serving within a millisecond or
// so of it, and each
// probe request goes on its own goroutine, so a probe would have to start
// none for 300ms to see nothing fail (in 20 runs with a core kept busy, on a
// machine at a load average of 15, the fewest requests a probe started was
// 13, and the fewest that failed 10).
//
// The load's own failures are asserted too, but they come by chance, and
// the bound is this: the nine windows of at least 300ms are disjoint (each
// SIGTERM waits for the next replica to be routed, Lag after it is ready),
// and the fresh and jobs-fresh streams open 50 connections a second, so at
// least 135 in them, each routed to the stopped replica with probability at
// least 1/5 (at most five endpoints routed) and then failing or answered
// late (HTTP/1.1 never retries a request on a new connection): all miss with
// probability at most (4/5)^135 < 1e-13, and still below 1e-6 at half that
// rate, which the test checks they kept. The load's h2c stream is not held to failing, for the
// reasons above; the h2c probes show the race for HTTP/2.
func TestRollingUpdateWithoutPrestopFails(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real replicas under load for ~15s")
	}
	t.Cleanup(func() { goleak.VerifyNone(t) })
	cfg := quick(t, 0)

	res := rehearse(t, cfg)

	// Forced: every replaced replica, both protocols.
	for _, pr := range res.Probes {
		if pr.Failures() == 0 {
			t.Errorf("probe %s: no request to the stopped replica failed while the balancer routed to it; "+
				"want them answered late (503), or their new connections refused", pr)
		}
		for kind, n := range pr.Failed {
			if !loadtest.ConnectionLevel(kind) && kind != lateAnswer {
				t.Errorf("probe %s: %d failures of kind %q (first: %s); want only %s (late), refused, reset or eof",
					pr, n, kind, pr.Samples[kind], lateAnswer)
			}
		}
	}
	if res.Balancer.PinnedRefused == 0 {
		t.Errorf("no connection pinned to a terminated replica was refused; want those routed there after it stopped listening refused")
	}

	// By chance, below one in a million (see above).
	var asked int
	var achieved float64
	for _, st := range res.Report.Streams {
		t.Logf("stream %s: %d of %d requests failed", st.Name, st.Failures, st.Requests)
		if st.Name == "fresh" || st.Name == "jobs-fresh" {
			asked += st.Asked
			achieved += st.Achieved
		}
	}
	if achieved < float64(asked)/2 {
		t.Errorf("the fresh-connection streams achieved %.0f of %d req/s asked: below half, the chance that the load "+
			"misses the race is no longer below one in a million", achieved, asked)
	}
	var late float64
	for _, s := range res.Summaries {
		late += s.RequestsLate
	}
	t.Logf("the load: %d requests failed, %.0f answered late", res.Report.Failures, late)
	if res.Report.Failures == 0 && late == 0 {
		t.Errorf("no request of the load failed or was answered late without a preStop delay; the rehearsal's load does not see the race")
	}
	// The failures must be the race's: connections to a replica that stopped
	// listening, refused at the balancer, which then drops the client's.
	for k, n := range res.Report.Failed {
		t.Logf("expected failure: %s, %s, %s: %d", k.Phase, k.Stream, k.Kind, n)
		if !loadtest.ConnectionLevel(k.Kind) {
			t.Errorf("%d failures of kind %q in stream %s; want only refused, reset or eof (a stopped listener)",
				n, k.Kind, k.Stream)
		}
	}
}

// lateAnswer is how a probe classifies the answer to a request that came
// after the preStop delay: 503, with Retry-After and Connection: close.
const lateAnswer = "http 503"

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
