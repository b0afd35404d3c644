//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

const (
	deployment  = "lameduck"
	podSelector = "app.kubernetes.io/name=lameduck"
	fieldOwner  = "lameduck-e2e"
)

// kube is the e2e's view of the cluster through client-go.
type kube struct {
	cs     kubernetes.Interface
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
	ns     string
}

func newKube(cfg *rest.Config, cs kubernetes.Interface, ns string) (*kube, error) {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("dynamic client: %w", err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(cs.Discovery()))
	return &kube{cs: cs, dyn: dyn, mapper: mapper, ns: ns}, nil
}

// applyYAML applies every document of data, a YAML stream from name, with
// server-side apply (what `kubectl apply --server-side -f` does), overriding
// only the Deployment's image and, when given, the ConfigMap's values.
func (k *kube) applyYAML(ctx context.Context, name string, data []byte, image string, config map[string]string) error {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var obj unstructured.Unstructured
		if err := dec.Decode(&obj.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("decode %s: %w", name, err)
		}
		if len(obj.Object) == 0 {
			continue
		}
		if err := override(&obj, image, config); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if err := k.apply(ctx, &obj); err != nil {
			return fmt.Errorf("apply %s %s from %s: %w", obj.GetKind(), obj.GetName(), name, err)
		}
	}
}

func override(obj *unstructured.Unstructured, image string, config map[string]string) error {
	switch {
	case obj.GetKind() == "Deployment" && obj.GetName() == deployment && image != "":
		containers, _, err := unstructured.NestedSlice(obj.Object, "spec", "template", "spec", "containers")
		if err != nil || len(containers) == 0 {
			return fmt.Errorf("deployment %s has no containers: %v", deployment, err)
		}
		c := containers[0].(map[string]any)
		c["image"] = image
		return unstructured.SetNestedSlice(obj.Object, containers, "spec", "template", "spec", "containers")
	case obj.GetKind() == "ConfigMap": // lameduck's one; kustomize adds a hash to its name
		for key, v := range config {
			if err := unstructured.SetNestedField(obj.Object, v, "data", key); err != nil {
				return err
			}
		}
	}
	return nil
}

func (k *kube) apply(ctx context.Context, obj *unstructured.Unstructured) error {
	gvk := obj.GroupVersionKind()
	mapping, err := k.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return fmt.Errorf("map %s: %w", gvk, err)
	}
	data, err := runtime.Encode(unstructured.UnstructuredJSONScheme, obj)
	if err != nil {
		return err
	}
	ns := obj.GetNamespace()
	if ns == "" {
		ns = k.ns
	}
	force := true
	_, err = k.dyn.Resource(mapping.Resource).Namespace(ns).Patch(ctx, obj.GetName(), types.ApplyPatchType, data,
		metav1.PatchOptions{FieldManager: fieldOwner, Force: &force})
	return err
}

// restart does what `kubectl rollout restart deployment/lameduck` does: it
// changes the pod template's restartedAt annotation.
func (k *kube) restart(ctx context.Context) error {
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":%q}}}}}`,
		time.Now().Format(time.RFC3339Nano))
	_, err := k.cs.AppsV1().Deployments(k.ns).Patch(ctx, deployment, types.StrategicMergePatchType, []byte(patch),
		metav1.PatchOptions{FieldManager: fieldOwner})
	if err != nil {
		return fmt.Errorf("restart deployment: %w", err)
	}
	return nil
}

// rollout is what waitRollout saw.
type rollout struct {
	Duration     time.Duration
	MinAvailable int32 // fewest available replicas observed while rolling
	Desired      int32
}

// waitRollout polls the Deployment until its rollout is complete, like
// `kubectl rollout status`, recording the fewest available replicas seen.
func (k *kube) waitRollout(ctx context.Context) (rollout, error) {
	start := time.Now()
	r := rollout{MinAvailable: -1}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		d, err := k.cs.AppsV1().Deployments(k.ns).Get(ctx, deployment, metav1.GetOptions{})
		if err != nil {
			return r, fmt.Errorf("get deployment: %w", err)
		}
		r.Desired = *d.Spec.Replicas
		if r.MinAvailable < 0 || d.Status.AvailableReplicas < r.MinAvailable {
			r.MinAvailable = d.Status.AvailableReplicas
		}
		if complete(d) {
			r.Duration = time.Since(start)
			return r, nil
		}
		select {
		case <-ctx.Done():
			return r, fmt.Errorf("rollout not complete: %w (status %+v)", ctx.Err(), d.Status)
		case <-tick.C:
		}
	}
}

func complete(d *appsv1.Deployment) bool {
	s, want := d.Status, *d.Spec.Replicas
	return s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == want && s.Replicas == want &&
		s.AvailableReplicas == want && s.UnavailableReplicas == 0
}

// podNames lists the lameduck pods that exist now and are not terminating.
func (k *kube) podNames(ctx context.Context) ([]string, error) {
	pods, err := k.cs.CoreV1().Pods(k.ns).List(ctx, metav1.ListOptions{LabelSelector: podSelector})
	if err != nil {
		return nil, fmt.Errorf("list pods: %w", err)
	}
	var names []string
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			names = append(names, p.Name)
		}
	}
	sort.Strings(names)
	return names, nil
}

// waitDataPath waits until the path the load takes is settled: kube-proxy's
// pods have been ready for a while (a new cluster's kube-proxy resets a few
// connections in its first seconds, seen here), and then a quiet window of
// fresh-connection requests through the NodePort all succeed.
func (k *kube) waitDataPath(ctx context.Context, base string) error {
	const settle, window = 10 * time.Second, 3 * time.Second
	start := time.Now()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var okSince time.Time
	var lastErr error
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("the Service at %s did not settle: %w (last error: %v)", base, ctx.Err(), lastErr)
		case <-tick.C:
		}
		if err := k.kubeProxyReadyFor(ctx, settle); err != nil {
			lastErr, okSince = err, time.Time{}
			continue
		}
		if err := getHello(ctx, client, base); err != nil {
			lastErr, okSince = err, time.Time{}
			continue
		}
		if okSince.IsZero() {
			okSince = time.Now()
		}
		if time.Since(okSince) >= window {
			fmt.Fprintf(os.Stderr, "e2e: Service settled after %s\n", time.Since(start).Round(time.Millisecond))
			return nil
		}
	}
}

// kubeProxyReadyFor reports whether every kube-proxy pod has been ready for
// at least d.
func (k *kube) kubeProxyReadyFor(ctx context.Context, d time.Duration) error {
	pods, err := k.cs.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: "k8s-app=kube-proxy"})
	if err != nil {
		return fmt.Errorf("list kube-proxy pods: %w", err)
	}
	if len(pods.Items) == 0 {
		return errors.New("no kube-proxy pod yet")
	}
	for _, p := range pods.Items {
		ready := false
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue && time.Since(c.LastTransitionTime.Time) >= d {
				ready = true
			}
		}
		if !ready {
			return fmt.Errorf("kube-proxy pod %s not ready for %s yet", p.Name, d)
		}
	}
	return nil
}

// getHello sends GET /hello to base and wants a 200.
func getHello(ctx context.Context, client *http.Client, base string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/hello", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /hello: %s", resp.Status)
	}
	return nil
}

// probeFailures lists the lameduck pods' recent probe failures (events of
// reason Unhealthy), to say why a pod was unavailable.
func (k *kube) probeFailures() []string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	events, err := k.cs.CoreV1().Events(k.ns).List(ctx, metav1.ListOptions{FieldSelector: "reason=Unhealthy"})
	if err != nil {
		return []string{fmt.Sprintf("list events: %v", err)}
	}
	var out []string
	for _, e := range events.Items {
		out = append(out, fmt.Sprintf("%s %s ×%d: %s", e.LastTimestamp.Format("15:04:05"), e.InvolvedObject.Name, e.Count, e.Message))
	}
	if len(out) == 0 {
		return []string{"none recorded"}
	}
	return out
}

// replicas returns the Deployment's desired replicas.
func (k *kube) replicas(ctx context.Context) (int, error) {
	d, err := k.cs.AppsV1().Deployments(k.ns).Get(ctx, deployment, metav1.GetOptions{})
	if err != nil {
		return 0, fmt.Errorf("get deployment: %w", err)
	}
	return int(*d.Spec.Replicas), nil
}
