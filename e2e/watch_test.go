//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/lameduck/lameduck/e2e/internal/loadtest"
)

// watcher follows the lameduck pods while they live: it streams every pod's
// log into a Ledger (pods are deleted during a rollout, so their logs are
// read as they run), and records when each terminating pod was first seen
// terminating and when it left the Service's ready endpoints.
type watcher struct {
	k      *kube
	ledger *loadtest.Ledger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu          sync.Mutex
	followed    map[string]chan struct{} // closed when the pod's log stream has ended
	ended       map[string]time.Time     // when the pod's log stream ended (its container exited)
	terminating map[string]time.Time     // first seen with a deletion timestamp
	restarts    map[string]int32         // the pod's container restarts, last seen (a SIGKILL restarts it)
	deleted     map[string]bool          // the pod is gone from the API
	leftReady   map[string]time.Time     // first seen out of the ready endpoints after that
	// Serving capacity: the pods that are ready and not terminating, the
	// fewest of them since resetServing, and every time a pod that was not
	// terminating lost its readiness.
	serving    map[string]bool
	minServing int
	unready    []string
}

func startWatcher(parent context.Context, k *kube, ledger *loadtest.Ledger) (*watcher, error) {
	ctx, cancel := context.WithCancel(parent)
	w := &watcher{k: k, ledger: ledger, ctx: ctx, cancel: cancel,
		followed: map[string]chan struct{}{}, serving: map[string]bool{}, ended: map[string]time.Time{}, terminating: map[string]time.Time{}, leftReady: map[string]time.Time{},
		restarts: map[string]int32{}, deleted: map[string]bool{}}

	pods := informers.NewSharedInformerFactoryWithOptions(k.cs, 0, informers.WithNamespace(k.ns),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = podSelector }))
	slices := informers.NewSharedInformerFactoryWithOptions(k.cs, 0, informers.WithNamespace(k.ns),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = discoveryv1.LabelServiceName + "=" + deployment
		}))
	onPod := func(obj any) {
		if p, ok := obj.(*corev1.Pod); ok {
			w.pod(p)
		}
	}
	if _, err := pods.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: onPod, UpdateFunc: func(_, obj any) { onPod(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if p, ok := obj.(*corev1.Pod); ok {
				w.gone(p.Name)
			}
		},
	}); err != nil {
		cancel()
		return nil, fmt.Errorf("watch pods: %w", err)
	}
	onSlice := func(obj any) {
		if s, ok := obj.(*discoveryv1.EndpointSlice); ok {
			w.slice(s)
		}
	}
	if _, err := slices.Discovery().V1().EndpointSlices().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: onSlice, UpdateFunc: func(_, obj any) { onSlice(obj) },
	}); err != nil {
		cancel()
		return nil, fmt.Errorf("watch endpoint slices: %w", err)
	}
	pods.Start(ctx.Done())
	slices.Start(ctx.Done())
	w.wg.Go(func() { // the factories' goroutines end with ctx; Shutdown waits for them
		<-ctx.Done()
		pods.Shutdown()
		slices.Shutdown()
	})
	pods.WaitForCacheSync(ctx.Done())
	slices.WaitForCacheSync(ctx.Done())
	return w, nil
}

// stop ends every stream and informer and waits for them.
func (w *watcher) stop() {
	w.cancel()
	w.wg.Wait()
}

func (w *watcher) pod(p *corev1.Pod) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if p.DeletionTimestamp != nil {
		if _, ok := w.terminating[p.Name]; !ok {
			w.terminating[p.Name] = time.Now()
		}
	}
	switch ready := podReady(p.Status.Conditions); {
	case p.DeletionTimestamp == nil && ready:
		w.serving[p.Name] = true
	case w.serving[p.Name]:
		delete(w.serving, p.Name)
		if p.DeletionTimestamp == nil {
			w.unready = append(w.unready, fmt.Sprintf("%s lost readiness at %s", p.Name, time.Now().Format("15:04:05.000")))
		}
	}
	w.minServing = min(w.minServing, len(w.serving))
	var restarts int32
	for _, c := range p.Status.ContainerStatuses {
		restarts += c.RestartCount
	}
	w.restarts[p.Name] = restarts
	if _, ok := w.followed[p.Name]; ok || !started(p) {
		return
	}
	done := make(chan struct{})
	w.followed[p.Name] = done
	w.wg.Go(func() {
		defer close(done)
		w.follow(p.Name)
		w.mu.Lock()
		w.ended[p.Name] = time.Now()
		w.mu.Unlock()
	})
}

func started(p *corev1.Pod) bool {
	for _, c := range p.Status.ContainerStatuses {
		if c.State.Running != nil || c.State.Terminated != nil {
			return true
		}
	}
	return false
}

// follow streams one pod's log into the ledger until its container exits
// for good: a container killed and restarted in place (the pod stays) is
// followed again, from its new start.
func (w *watcher) follow(pod string) {
	seen := 0 // lines of the current container read into the ledger
	for attempt := 0; w.ctx.Err() == nil; attempt++ {
		restarts := w.restartsOf(pod)
		stream, err := w.k.cs.CoreV1().Pods(w.k.ns).GetLogs(pod, &corev1.PodLogOptions{Follow: true}).Stream(w.ctx)
		if err == nil {
			// A stream opened again shows the container's log from its
			// start: skip what was read before.
			var n int
			n, err = w.read(pod, stream, seen)
			seen = max(seen, n)
			stream.Close()
			if w.ctx.Err() != nil {
				return
			}
			if err == nil {
				if !w.restarted(pod, restarts) {
					return
				}
				// A killed container's stream can end before its last
				// lines: read them from its log, past those read.
				prev, perr := w.k.cs.CoreV1().Pods(w.k.ns).GetLogs(pod, &corev1.PodLogOptions{Previous: true}).Stream(w.ctx)
				if perr == nil {
					_, perr = w.read(pod, prev, seen)
					prev.Close()
				}
				if perr != nil {
					w.ledger.Line(pod, []byte(fmt.Sprintf(`{"msg":"e2e: previous log unreadable","err":%q}`, perr.Error())))
				}
				seen, attempt = 0, 0
				continue
			}
		}
		if attempt >= 20 {
			w.ledger.Line(pod, []byte(fmt.Sprintf(`{"msg":"e2e: log stream failed","err":%q}`, fmt.Sprint(err))))
			return
		}
		select {
		case <-w.ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// read feeds the lines of r after the first skip to the ledger, and
// returns how many lines r had.
func (w *watcher) read(pod string, r io.Reader, skip int) (int, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	n := 0
	for ; sc.Scan(); n++ {
		if n >= skip {
			w.ledger.Line(pod, sc.Bytes())
		}
	}
	if err := sc.Err(); err != nil {
		return n, fmt.Errorf("read log of %s: %w", pod, err)
	}
	return n, nil
}

func (w *watcher) slice(s *discoveryv1.EndpointSlice) {
	now := time.Now()
	ready := map[string]bool{}
	for _, e := range s.Endpoints {
		if e.TargetRef != nil && e.TargetRef.Kind == "Pod" && (e.Conditions.Ready == nil || *e.Conditions.Ready) {
			ready[e.TargetRef.Name] = true
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for pod := range w.terminating {
		if _, ok := w.leftReady[pod]; !ok && !ready[pod] {
			w.leftReady[pod] = now
		}
	}
}

// waitLogsEnded waits until the log streams of the given pods have ended
// (their containers exited), or ctx ends.
func (w *watcher) waitLogsEnded(ctx context.Context, pods []string) error {
	for _, p := range pods {
		w.mu.Lock()
		done, ok := w.followed[p]
		w.mu.Unlock()
		if !ok {
			return fmt.Errorf("pod %s: its log was never followed", p)
		}
		select {
		case <-done:
		case <-ctx.Done():
			return fmt.Errorf("pod %s still logging: %w", p, ctx.Err())
		}
	}
	return nil
}

func (w *watcher) restartsOf(pod string) int32 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.restarts[pod]
}

// restarted waits until pod's container has restarted since it had been
// restarted before times (true), or the pod is terminating or gone
// (false). A container ends its log by exiting: a pod not deleted restarts
// it within moments (the kubelet's back-off is 10 s at first, 5 min at most).
func (w *watcher) restarted(pod string, before int32) bool {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		w.mu.Lock()
		_, terminating := w.terminating[pod]
		done, again := terminating || w.deleted[pod], w.restarts[pod] > before
		w.mu.Unlock()
		switch {
		case again:
			return true
		case done:
			return false
		}
		select {
		case <-w.ctx.Done():
			return false
		case <-tick.C:
		}
	}
}

// gone forgets a deleted pod's serving state.
func (w *watcher) gone(pod string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.deleted[pod] = true
	delete(w.serving, pod)
	w.minServing = min(w.minServing, len(w.serving))
}

// resetServing starts counting the fewest serving pods from now.
func (w *watcher) resetServing() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.minServing = len(w.serving)
}

// fewestServing returns the fewest pods that were ready and not terminating
// at once since resetServing, and every loss of readiness by a pod that was
// not terminating.
func (w *watcher) fewestServing() (int, []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.minServing, slices.Clone(w.unready)
}

// waitLeftReady waits until every given pod has been seen out of the
// Service's ready endpoints after it began terminating, or ctx ends.
func (w *watcher) waitLeftReady(ctx context.Context, pods []string) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		var waiting []string
		w.mu.Lock()
		for _, p := range pods {
			if _, ok := w.leftReady[p]; !ok {
				waiting = append(waiting, p)
			}
		}
		w.mu.Unlock()
		if len(waiting) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pods %v still in the ready endpoints: %w", waiting, ctx.Err())
		case <-tick.C:
		}
	}
}

// stoppingAt returns the pods that were stopping at t: terminating, and not
// yet exited more than a second before t (kube-proxy may route to a pod a
// moment after it exited).
func (w *watcher) stoppingAt(t time.Time) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var pods []string
	for pod, from := range w.terminating {
		end, ok := w.ended[pod]
		if !t.Before(from) && (!ok || t.Before(end.Add(time.Second))) {
			pods = append(pods, pod)
		}
	}
	sort.Strings(pods)
	return pods
}

// endpointRemoval returns, for every pod seen terminating, how long after
// that it left the ready endpoints (negative when it never did).
func (w *watcher) endpointRemoval() map[string]time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]time.Duration{}
	for pod, t := range w.terminating {
		if left, ok := w.leftReady[pod]; ok {
			out[pod] = max(0, left.Sub(t))
		} else {
			out[pod] = -1
		}
	}
	return out
}

// since returns when the first of pods began terminating (now if none did).
func (w *watcher) since(pods []string) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	first := time.Now()
	for _, p := range pods {
		if at, ok := w.terminating[p]; ok && at.Before(first) {
			first = at
		}
	}
	return first
}
