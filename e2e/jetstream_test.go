//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/lameduck/lameduck/e2e/internal/loadtest"
)

// The JetStream scenario (E2E_SCENARIO=jetstream, make e2e-jetstream): one
// node, the chart with kind/values-jetstream.yaml: two lameduck replicas
// whose jobs live in an R3 stream on the chart's three NATS servers.
const (
	scenarioJetStream   = "jetstream"
	kindJetStreamValues = "kind/values-jetstream.yaml"
	natsSelector        = "app.kubernetes.io/name=nats"
	// jetStreamKills is how many lameduck containers the scenario SIGKILLs.
	jetStreamKills = 2
	// jobWorkers is LAMEDUCK_WORKERS in the scenario (the chart's default):
	// what one replica holds at most, so what one SIGKILL can make
	// redelivered, and processed twice.
	jobWorkers = 4
)

// jobMix is a load of mostly jobs of the given work, with GETs beside
// them. At 150 req/s and 100 ms, some 6 jobs are in progress over the two
// replicas at any moment, so a replica killed holds some.
func jobMix(rate int, work time.Duration) loadtest.Mix {
	m := loadtest.Mix{
		Target:    env.nodePort,
		KeepAlive: 35, Jobs: 45, FreshJobs: 10, H2C: 10,
		JobWork: work,
		Timeout: 10 * time.Second,
	}
	return m.Scale(float64(rate) / 100)
}

// jetStreamRate is the scenario's default E2E_RATE: three NATS servers
// share the node with lameduck and the load.
const jetStreamRate = 150

// TestJetStreamLosesNothing: under a load of jobs, (a) a rolling restart
// fails no request; (b) two lameduck containers are SIGKILLed (kill -9 of
// the process, inside the node: no shutdown runs); (c) a NATS pod is
// deleted. Every job answered 202 must be processed at least once; the
// jobs processed twice are counted and must be no more than the killed
// replicas held; the time from each kill to the first redelivery after it
// is reported.
func TestJetStreamLosesNothing(t *testing.T) {
	p := readParams(t)
	p.skipUnless(t, scenarioJetStream)
	var kills []kill
	ds := rollouts(1)
	for i := range jetStreamKills {
		ds = append(ds, disruption{fmt.Sprintf("SIGKILL %d", i+1), func(ctx context.Context) ([]string, error) {
			k, err := env.kube.killOne(ctx, i)
			if err != nil {
				return nil, err
			}
			kills = append(kills, k)
			t.Logf("SIGKILL %d: %s (pid %d on %s) at %s, holding %d jobs", i+1, k.pod, k.pid, k.node,
				k.at.Format("15:04:05.000"), k.held)
			return nil, env.kube.waitRestarted(ctx, k)
		}})
	}
	ds = append(ds, disruption{"delete a NATS pod", func(ctx context.Context) ([]string, error) {
		return nil, env.kube.deleteNATSPod(ctx, t)
	}})
	out := runUnderLoad(t, jobMix(p.Rate, 100*time.Millisecond), ds)
	out.print(t, "JetStream: a rolling restart, 2 SIGKILLs, a NATS pod deleted, under load")
	out.checkHarness(t, p)

	// (a) and (c): no request fails; (b): the killed processes' requests
	// may (a connection to a process that is gone is reset), and are
	// reported.
	for key, n := range out.report.Failed {
		if !strings.HasPrefix(key.Phase, "SIGKILL") && !strings.HasPrefix(key.Phase, "after SIGKILL") {
			t.Errorf("SERVICE: %d %s requests failed (%s) during %q; want none outside the SIGKILLs", n, key.Stream,
				key.Kind, key.Phase)
		} else {
			t.Logf("during %q: %d %s requests failed (%s): the killed process's", key.Phase, n, key.Stream, key.Kind)
		}
	}
	if len(out.report.Accepted) == 0 {
		t.Fatal("HARNESS: no job was accepted: the load sent no jobs")
	}
	if len(out.missing) > 0 {
		t.Errorf("SERVICE: %d of %d jobs answered 202 were never processed, e.g. %v", len(out.missing),
			len(out.report.Accepted), out.missing[:min(5, len(out.missing))])
	}
	t.Logf("%d jobs answered 202, every one processed: %d processed more than once (%d extra processings); %d redeliveries",
		len(out.report.Accepted)-len(out.missing), out.duplicates, out.extra, len(out.redeliveries))
	if most := jobWorkers * len(kills); out.extra > most {
		t.Errorf("SERVICE: %d extra processings; want at most %d, what %d killed replicas of %d workers held",
			out.extra, most, len(kills), jobWorkers)
	}
	if out.extra > len(out.redeliveries) {
		t.Errorf("SERVICE: %d extra processings but %d redeliveries logged: a job ran twice without being redelivered",
			out.extra, len(out.redeliveries))
	}
	redelivered := 0
	for i, k := range kills {
		var first time.Time
		for _, r := range out.redeliveries {
			if r.After(k.at) && (first.IsZero() || r.Before(first)) {
				first = r
			}
		}
		if first.IsZero() {
			t.Logf("SIGKILL %d: no redelivery after it (it held %d jobs)", i+1, k.held)
			continue
		}
		redelivered++
		t.Logf("SIGKILL %d: the first redelivery came %s after the kill (ack wait 1s; it held %d jobs)",
			i+1, first.Sub(k.at).Round(time.Millisecond), k.held)
	}
	if redelivered == 0 {
		t.Errorf("SERVICE: no job was redelivered after any of %d SIGKILLs of replicas holding jobs", len(kills))
	}
}

// TestJetStreamNegativeControl: the same SIGKILL with the in-memory queue
// (nats.enabled false) loses the jobs the killed replica had accepted. It
// waits until the replica holds a backlog before killing it, so the loss
// is certain, not a chance.
func TestJetStreamNegativeControl(t *testing.T) {
	p := readParams(t)
	p.skipUnless(t, scenarioJetStream)
	if p.NegativeRollouts == 0 {
		t.Skip("E2E_NEGATIVE_ROLLOUTS=0")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := env.release.upgradeInstall(ctx, map[string]any{"nats": map[string]any{"enabled": false},
		"config": map[string]any{"queueURL": ""}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if err := env.release.upgradeInstall(ctx, nil); err != nil {
			t.Errorf("restore the JetStream release: %v", err)
		}
	})
	if err := env.kube.waitDataPath(ctx, env.nodePort); err != nil {
		t.Fatal(err)
	}
	var killed kill
	ds := []disruption{{"SIGKILL (in-memory queue)", func(ctx context.Context) ([]string, error) {
		var err error
		if killed, err = env.kube.killOne(ctx, 0); err != nil {
			return nil, err
		}
		t.Logf("SIGKILL: %s (pid %d) at %s, holding %d jobs", killed.pod, killed.pid, killed.at.Format("15:04:05.000"),
			killed.held)
		return nil, env.kube.waitRestarted(ctx, killed)
	}}}
	// 1 s jobs (LAMEDUCK_MAX_WORK): arriving faster than 4 workers process
	// them, they queue up to what admission takes, so the killed replica
	// holds a backlog.
	out := runUnderLoad(t, jobMix(p.Rate, time.Second), ds)
	out.print(t, "negative control: SIGKILL with the in-memory queue")
	out.checkHarness(t, p)
	if len(out.missing) == 0 {
		t.Fatalf("NEGATIVE CONTROL proved nothing: the SIGKILL of a replica holding %d jobs lost none of %d", killed.held,
			len(out.report.Accepted))
	}
	t.Logf("as expected: the SIGKILL lost %d of %d jobs answered 202 (the replica held %d); nothing logged them dropped (%d)",
		len(out.missing), len(out.report.Accepted), killed.held, out.dropped)
}

// kill is one SIGKILL of a lameduck container's process.
type kill struct {
	pod, node, container string
	pid                  int
	at                   time.Time
	held                 int // jobs the replica held just before (in progress, or queued in memory)
	restarts             int32
}

// killOne SIGKILLs the lameduck process of the i-th running pod (by name,
// modulo their number) once it holds at least one job: kill -9 of its PID
// inside the kind node, found through containerd (the node has ctr, not
// crictl). Nothing of lameduck runs after it; the kubelet restarts the
// container in the same pod.
func (k *kube) killOne(ctx context.Context, i int) (kill, error) {
	names, err := k.podNames(ctx)
	if err != nil || len(names) == 0 {
		return kill{}, fmt.Errorf("no pod to kill: %v", err)
	}
	pod, err := k.cs.CoreV1().Pods(k.ns).Get(ctx, names[i%len(names)], metav1.GetOptions{})
	if err != nil {
		return kill{}, err
	}
	kl := kill{pod: pod.Name, node: pod.Spec.NodeName}
	for _, c := range pod.Status.ContainerStatuses {
		kl.restarts += c.RestartCount
		if c.Name == deployment {
			_, kl.container, _ = strings.Cut(c.ContainerID, "://")
		}
	}
	if kl.container == "" {
		return kill{}, fmt.Errorf("pod %s: no running %s container", pod.Name, deployment)
	}
	if kl.pid, err = taskPID(ctx, kl.node, kl.container); err != nil {
		return kill{}, err
	}
	// Kill it while it holds jobs, so the kill tests something.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for kl.held == 0 {
		if kl.held, err = k.jobsHeld(ctx, pod.Name); err != nil {
			return kill{}, err
		}
		select {
		case <-ctx.Done():
			return kill{}, fmt.Errorf("HARNESS: pod %s never held a job: %w", pod.Name, ctx.Err())
		case <-tick.C:
		}
	}
	kl.at = time.Now()
	if out, err := exec.CommandContext(ctx, "docker", "exec", kl.node, "kill", "-9", strconv.Itoa(kl.pid)).CombinedOutput(); err != nil {
		return kill{}, fmt.Errorf("kill -9 %d in %s: %w: %s", kl.pid, kl.node, err, out)
	}
	return kl, nil
}

// taskPID is the PID, in the node's PID namespace, of a container's process.
func taskPID(ctx context.Context, node, container string) (int, error) {
	out, err := exec.CommandContext(ctx, "docker", "exec", node, "ctr", "-n", "k8s.io", "task", "ls").Output()
	if err != nil {
		return 0, fmt.Errorf("ctr task ls in %s: %w", node, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 3 && f[0] == container && f[2] == "RUNNING" {
			return strconv.Atoi(f[1])
		}
	}
	return 0, fmt.Errorf("container %s has no running task in %s:\n%s", container, node, out)
}

// jobsHeld reads the jobs a replica holds from its metrics, through the API
// server's proxy to its admin port: in progress from the stream
// (JetStream), or waiting and running in memory.
func (k *kube) jobsHeld(ctx context.Context, pod string) (int, error) {
	body, err := k.cs.CoreV1().Pods(k.ns).ProxyGet("http", pod, "8086", "/metrics", nil).DoRaw(ctx)
	if err != nil {
		return 0, fmt.Errorf("metrics of %s: %w", pod, err)
	}
	held := 0.0
	for line := range strings.SplitSeq(string(body), "\n") {
		for _, name := range []string{"lameduck_jobs_in_progress ", "lameduck_queue_depth "} {
			if v, ok := strings.CutPrefix(line, name); ok {
				n, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
				held += n
			}
		}
	}
	return int(held), nil
}

// waitRestarted waits until the killed container has been restarted and
// its pod is ready again.
func (k *kube) waitRestarted(ctx context.Context, kl kill) error {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		pod, err := k.cs.CoreV1().Pods(k.ns).Get(ctx, kl.pod, metav1.GetOptions{})
		if err == nil {
			var restarts int32
			for _, c := range pod.Status.ContainerStatuses {
				restarts += c.RestartCount
			}
			if restarts > kl.restarts && podReady(pod.Status.Conditions) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pod %s not restarted and ready after its SIGKILL: %w", kl.pod, ctx.Err())
		case <-tick.C:
		}
	}
}

// deleteNATSPod deletes one NATS server's pod (gracefully, as a node drain
// or a rollout of the StatefulSet would) and waits until its replacement is
// ready: the R3 stream keeps taking and serving jobs from the other two.
func (k *kube) deleteNATSPod(ctx context.Context, t *testing.T) error {
	pods, err := k.cs.CoreV1().Pods(k.ns).List(ctx, metav1.ListOptions{LabelSelector: natsSelector})
	if err != nil || len(pods.Items) == 0 {
		return fmt.Errorf("no NATS pod: %v", err)
	}
	victim := pods.Items[len(pods.Items)-1]
	start := time.Now()
	if err := k.cs.CoreV1().Pods(k.ns).Delete(ctx, victim.Name, metav1.DeleteOptions{}); err != nil {
		return fmt.Errorf("delete %s: %w", victim.Name, err)
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		p, err := k.cs.CoreV1().Pods(k.ns).Get(ctx, victim.Name, metav1.GetOptions{})
		if err == nil && p.UID != victim.UID && podReady(p.Status.Conditions) {
			t.Logf("NATS pod %s deleted at %s; its replacement ready %s later", victim.Name,
				start.Format("15:04:05.000"), time.Since(start).Round(time.Millisecond))
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("NATS pod %s not back and ready: %w", victim.Name, ctx.Err())
		case <-tick.C:
		}
	}
}
