//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
)

// TestDrainUnderLoad drains each worker of a multi-node cluster in turn
// under the same mixed load as the rollout test: evictions through the API,
// paced by the PodDisruptionBudget, no surge (a pod's replacement is created
// only once it is told to stop), clients reaching pods across nodes. It
// asserts what the rollout test asserts, with the PDB's floor for available
// replicas, and reports how long each drain took.
func TestDrainUnderLoad(t *testing.T) {
	p := readParams(t)
	p.skipUnless(t, scenarioDrain)
	ds, maxUnavailable := drains(t)
	m := mix(p.Rate)
	o := runUnderLoad(t, m, ds)
	o.print(t, fmt.Sprintf("%d node drains under load (%d req/s asked)", len(ds), m.Rate()))
	o.checkLostNothing(t, p, 1, maxUnavailable) // a drain stops at least one pod: the replicas are spread
	o.checkNoBackPressure(t)
}

// TestDrainNegativeControl drains the workers with LAMEDUCK_PRESTOP_DELAY=0s:
// the run must record failures, and only the race's.
func TestDrainNegativeControl(t *testing.T) {
	p := readParams(t)
	p.skipUnless(t, scenarioDrain)
	if p.NegativeRollouts == 0 {
		t.Skip("E2E_NEGATIVE_ROLLOUTS=0")
	}
	withPrestop(t, "0s")
	ds, _ := drains(t)
	m := mix(p.Rate)
	o := runUnderLoad(t, m, ds)
	o.print(t, fmt.Sprintf("negative control: LAMEDUCK_PRESTOP_DELAY=0s, %d node drains (%d req/s asked)", len(ds), m.Rate()))
	o.checkFailedForTheRace(t, p)
}

// drains returns a drain of each node that runs lameduck pods, in name
// order, and the PodDisruptionBudget's maxUnavailable.
func drains(t *testing.T) ([]disruption, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pdb, err := env.kube.cs.PolicyV1().PodDisruptionBudgets(env.kube.ns).Get(ctx, deployment, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get the PodDisruptionBudget: %v", err)
	}
	if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() < 1 {
		t.Fatalf("PodDisruptionBudget %s: want maxUnavailable of at least 1, got %v", pdb.Name, pdb.Spec.MaxUnavailable)
	}
	nodes, err := env.kube.workers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) < 2 {
		t.Fatalf("%d schedulable nodes; the drain scenario needs two workers (kind-multinode.yaml)", len(nodes))
	}
	ds := make([]disruption, len(nodes))
	for i, n := range nodes {
		ds[i] = disruption{"drain " + n, func(ctx context.Context) ([]string, error) {
			evicted, err := env.kube.drain(ctx, n)
			if uerr := env.kube.cordon(context.WithoutCancel(ctx), n, false); uerr != nil {
				err = errors.Join(err, uerr)
			}
			if err != nil {
				return evicted, err
			}
			// The replacements are ready before the next node goes, as an
			// operator upgrading nodes one by one waits for them.
			_, err = env.kube.waitRollout(ctx)
			return evicted, err
		}}
	}
	return ds, pdb.Spec.MaxUnavailable.IntValue()
}

// workers lists the nodes pods can be scheduled on, by name.
func (k *kube) workers(ctx context.Context) ([]string, error) {
	nodes, err := k.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	var names []string
	for _, n := range nodes.Items {
		schedulable := !n.Spec.Unschedulable
		for _, taint := range n.Spec.Taints {
			schedulable = schedulable && taint.Effect != corev1.TaintEffectNoSchedule
		}
		if schedulable {
			names = append(names, n.Name)
		}
	}
	return names, nil
}

// cordon marks node unschedulable (on) or schedulable again.
func (k *kube) cordon(ctx context.Context, node string, on bool) error {
	patch := fmt.Sprintf(`{"spec":{"unschedulable":%t}}`, on)
	if _, err := k.cs.CoreV1().Nodes().Patch(ctx, node, types.StrategicMergePatchType, []byte(patch),
		metav1.PatchOptions{FieldManager: fieldOwner}); err != nil {
		return fmt.Errorf("cordon %s (%t): %w", node, on, err)
	}
	return nil
}

// drain does what `kubectl drain --ignore-daemonsets` does: it cordons the
// node, evicts every pod on it that no DaemonSet owns through the eviction
// API, retrying while a PodDisruptionBudget refuses (429), and waits until
// those pods are gone. It returns the lameduck pods it evicted.
func (k *kube) drain(ctx context.Context, node string) ([]string, error) {
	if err := k.cordon(ctx, node, true); err != nil {
		return nil, err
	}
	pods, err := k.cs.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node).String(),
	})
	if err != nil {
		return nil, fmt.Errorf("list pods on %s: %w", node, err)
	}
	var evict []corev1.Pod
	var ours []string
	for _, p := range pods.Items {
		if daemon(p) || p.DeletionTimestamp != nil {
			continue
		}
		evict = append(evict, p)
		if p.Labels["app.kubernetes.io/name"] == deployment {
			ours = append(ours, p.Name)
		}
	}
	// kubectl evicts the pods concurrently, each retrying on its own.
	var wg sync.WaitGroup
	errs := make([]error, len(evict))
	for i, p := range evict {
		wg.Go(func() { errs[i] = k.evict(ctx, p) })
	}
	wg.Wait()
	return ours, errors.Join(errs...)
}

func daemon(p corev1.Pod) bool {
	for _, o := range p.OwnerReferences {
		if o.Kind == "DaemonSet" {
			return true
		}
	}
	return false
}

// evict asks the API to evict p, as often as the PDB refuses, then waits
// until p is gone (or replaced by a pod of the same name).
func (k *kube) evict(ctx context.Context, p corev1.Pod) error {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		err := k.cs.CoreV1().Pods(p.Namespace).EvictV1(ctx, &policyv1.Eviction{
			ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace},
		})
		switch {
		case err == nil, apierrors.IsNotFound(err):
			return k.waitGone(ctx, p, tick)
		case apierrors.IsTooManyRequests(err): // the PDB allows no disruption now
		default:
			return fmt.Errorf("evict %s/%s: %w", p.Namespace, p.Name, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("evict %s/%s: %w (last refusal: %v)", p.Namespace, p.Name, ctx.Err(), err)
		case <-tick.C:
		}
	}
}

func (k *kube) waitGone(ctx context.Context, p corev1.Pod, tick *time.Ticker) error {
	for {
		cur, err := k.cs.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) || (err == nil && cur.UID != p.UID) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pod %s/%s not gone: %w", p.Namespace, p.Name, ctx.Err())
		case <-tick.C:
		}
	}
}
