//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestPrestopComparison (#25) runs the scenario's disruptions (rolling
// restarts, or a drain of each worker) under the same load, in the same
// run, first with the fixed preStop delay the chart ships (8s) and then with
// the adaptive one (at most 8s, at least E2E_PRESTOP_MIN, ending once nothing
// has arrived for E2E_PRESTOP_QUIET), and prints side by side how long each
// pod's delay lasted, how it ended, when traffic really stopped coming, and
// how long the disruptions took. Each half must lose nothing, as the
// positive tests require; requests answered late (503 after the delay) are
// reported apart. E2E_PRESTOP_COMPARE is the number of rounds per
// configuration (each: one rollout, or one drain of every worker); 0, the
// default, skips the test. E2E_PRESTOP_BUSY says on what machine: "quiet"
// (as it is), "busy" (one core kept busy by a spinning shell, as another
// tenant would), or "both" (the default: quiet, then busy).
func TestPrestopComparison(t *testing.T) {
	p := readParams(t)
	rounds, err := strconv.Atoi(getenv("E2E_PRESTOP_COMPARE", "0"))
	if err != nil || rounds < 0 {
		t.Fatalf("E2E_PRESTOP_COMPARE=%q: want a non-negative integer", os.Getenv("E2E_PRESTOP_COMPARE"))
	}
	if rounds == 0 {
		t.Skip("E2E_PRESTOP_COMPARE=0")
	}
	const most = "8s"
	configs := []struct {
		name   string
		values map[string]string
	}{
		{"fixed " + most, map[string]string{"LAMEDUCK_PRESTOP_DELAY": most, "LAMEDUCK_PRESTOP_MIN": most}},
		{fmt.Sprintf("adaptive %s-%s, quiet %s", getenv("E2E_PRESTOP_MIN", "1s"), most, getenv("E2E_PRESTOP_QUIET", "1s")),
			map[string]string{"LAMEDUCK_PRESTOP_DELAY": most, "LAMEDUCK_PRESTOP_MIN": getenv("E2E_PRESTOP_MIN", "1s"),
				"LAMEDUCK_PRESTOP_QUIET": getenv("E2E_PRESTOP_QUIET", "1s")}},
	}
	var conditions []string
	switch b := getenv("E2E_PRESTOP_BUSY", "both"); b {
	case "quiet", "busy":
		conditions = []string{b}
	case "both":
		conditions = []string{"quiet", "busy"}
	default:
		t.Fatalf("E2E_PRESTOP_BUSY=%q: want quiet, busy or both", b)
	}
	m := mix(p.Rate)
	var table strings.Builder
	t.Cleanup(func() { // the cluster as installed
		if err := applyValues(nil); err != nil {
			t.Error(err)
		}
	})
	for _, cond := range conditions {
		if cond == "busy" {
			defer burnCore(t)()
		}
		for _, c := range configs {
			name := c.name + ", " + cond
			if err := applyValues(c.values); err != nil {
				t.Fatal(err)
			}
			var ds []disruption
			wantStopped, maxUnavailable := 3, 0 // a rollout replaces every replica, one surge at a time
			for i := range rounds {
				var round []disruption
				if p.Scenario == scenarioDrain {
					round, maxUnavailable = drains(t)
					wantStopped = 1
				} else {
					round = rollouts(1)
				}
				for _, d := range round {
					ds = append(ds, disruption{fmt.Sprintf("%s: %s %d", name, d.name, i+1), d.do})
				}
			}
			o := runUnderLoad(t, m, ds)
			o.print(t, fmt.Sprintf("preStop comparison, %s: %d disruptions under load (%d req/s asked)", name, len(ds), m.Rate()))
			o.checkLostNothing(t, p, wantStopped, maxUnavailable)
			o.checkNoBackPressure(t)
			row := compareRow(name, o)
			t.Logf("preStop comparison so far:\n%s", row)
			table.WriteString(row)
		}
	}
	report := "\n== preStop delay, fixed against adaptive, in one run\n" + table.String()
	t.Log(report)
	if f := os.Getenv("E2E_REPORT"); f != "" {
		if fh, err := os.OpenFile(f, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err == nil {
			fmt.Fprintf(fh, "%s(%s)\n", report, time.Now().UTC().Format(time.RFC3339))
			fh.Close()
		}
	}
}

// compareRow writes one configuration's lines of the comparison: each
// disruption's duration (until do returned, and until the pods it stopped
// had exited), then the stopped pods' delays, how they ended and when their
// last request came, and what the load saw.
func compareRow(name string, o outcome) string {
	b := &strings.Builder{}
	var took, done time.Duration
	for _, d := range o.disruptions {
		fmt.Fprintf(b, "  %-32s %-44s done in %7s, its pods exited after %7s\n", name, d.Name,
			d.Duration.Round(100*time.Millisecond), d.Done.Round(100*time.Millisecond))
		took += d.Duration
		done += d.Done
	}
	var delays, arrivals []float64
	ends := map[string]int{}
	late := 0.0
	for _, s := range o.summaries {
		if !slices.Contains(o.removed, s.Source) {
			continue
		}
		delays = append(delays, s.PrestopSeconds)
		arrivals = append(arrivals, s.PrestopLastArrival)
		ends[s.PrestopEnd]++
		late += s.RequestsLate
	}
	n := time.Duration(max(len(o.disruptions), 1))
	fmt.Fprintf(b, "  %-32s mean disruption %s, pods exited after %s on average\n", name,
		(took / n).Round(100*time.Millisecond), (done / n).Round(100*time.Millisecond))
	fmt.Fprintf(b, "  %-32s per-pod delay %s (mean %.2fs, max %.2fs; ended %v); last arrival %s (max %.2fs)\n", name,
		seconds(delays), mean(delays), slices.Max(append(delays, 0)), ends, seconds(arrivals), slices.Max(append(arrivals, 0)))
	fmt.Fprintf(b, "  %-32s load: %d requests, %d failed, %d back-pressure of which %.0f late (503 after the delay)\n", name,
		o.report.Requests, o.report.Failures, o.report.BackPressure, late)
	return b.String()
}

func seconds(v []float64) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = strconv.FormatFloat(x, 'f', 2, 64)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func mean(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	var sum float64
	for _, x := range v {
		sum += x
	}
	return sum / float64(len(v))
}

// burnCore keeps one core busy with a spinning shell until the function it
// returns is called.
func burnCore(t *testing.T) func() {
	t.Helper()
	cmd := exec.Command("sh", "-c", "while :; do :; done")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start a busy loop: %v", err)
	}
	t.Logf("one core kept busy (pid %d) from %s", cmd.Process.Pid, time.Now().Format("15:04:05"))
	return func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
}

// applyValues installs lameduck with the LAMEDUCK_* values given over the
// installed ones and waits until the pods run with them.
func applyValues(values map[string]string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if err := deploy(ctx, values); err != nil {
		return err
	}
	if env.install != installHelm { // helm upgrade rolled the pods itself
		if err := env.kube.restart(ctx); err != nil {
			return err
		}
	}
	_, err := env.kube.waitRollout(ctx)
	return err
}
