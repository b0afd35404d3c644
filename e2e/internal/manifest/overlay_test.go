package manifest_test

import (
	"maps"
	"regexp"
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/diff"

	"github.com/lameduck/lameduck/e2e/internal/manifest"
)

// overlayDir is the example overlay of k8s/ (`kubectl apply -k overlays/example`).
const overlayDir = "../../../overlays/example"

// hashed is a name kustomize gave a hash suffix.
var hashed = regexp.MustCompile(`^lameduck-config-[a-z0-9]{10}$`)

// TestKustomizeBase: kustomize renders k8s/ (its Kustomization file) into the
// very objects `kubectl apply -f k8s` applies, but for the ConfigMap's name,
// which carries a hash of its content (configMapGenerator), and the
// Deployment's reference to it.
func TestKustomizeBase(t *testing.T) {
	got := render(t, k8sDir)
	want := loadK8s(t)
	unhash(t, &got, want.ConfigMap.Name)
	if !equality.Semantic.DeepEqual(got, want) {
		t.Errorf("kustomize build %s differs from Load(%s): run make k8s\n%s", k8sDir, k8sDir, diff.Diff(want, got))
	}
}

// TestConfigChangeRolls: with `kubectl apply -k`, a configuration change
// changes the pod template (the ConfigMap's name in envFrom), so the pods
// roll; the same configuration keeps the same name.
func TestConfigChangeRolls(t *testing.T) {
	base := render(t, k8sDir)
	again := render(t, k8sDir)
	overlay := render(t, overlayDir)
	ref := func(m manifest.Manifests) string {
		return m.Deployment.Spec.Template.Spec.Containers[0].EnvFrom[0].ConfigMapRef.Name
	}
	if ref(base) != ref(again) {
		t.Errorf("the same configuration gave two names: %s and %s", ref(base), ref(again))
	}
	if ref(base) == ref(overlay) {
		t.Errorf("the overlay's configuration has the base's ConfigMap name %s: kubectl apply -k would not roll the pods", ref(base))
	}
	for _, name := range []string{ref(base), ref(overlay)} {
		if !hashed.MatchString(name) {
			t.Errorf("ConfigMap name %q carries no content hash", name)
		}
	}
}

// TestOverlay renders the example overlay as `kubectl apply -k` would, runs
// every check on the result, and compares it with k8s/ changed by hand as the
// overlay says: the image (and the version labels with its tag), the replica
// count and four LAMEDUCK_* values (with terminationGracePeriodSeconds, to
// fit the longer drain), and nothing else.
func TestOverlay(t *testing.T) {
	got := render(t, overlayDir)
	if err := validate(t, got); err != nil {
		t.Errorf("validate(kustomize build %s):\n%v", overlayDir, err)
	}

	want := loadK8s(t)
	unhash(t, &got, want.ConfigMap.Name)
	want.Deployment.Spec.Replicas = new(int32(5))
	pod := &want.Deployment.Spec.Template.Spec
	pod.Containers[0].Image = "registry.example.com/lameduck:1.4.0"
	pod.TerminationGracePeriodSeconds = new(int64(35))
	for k, v := range map[string]string{
		"LAMEDUCK_WORKERS":       "8",
		"LAMEDUCK_LOG_LEVEL":     "warn",
		"LAMEDUCK_DRAIN_TIMEOUT": "10s",
		"LAMEDUCK_GRACE_PERIOD":  "35s",
	} {
		if want.ConfigMap.Data[k] == v {
			t.Errorf("k8s/ sets %s=%s already: the overlay would change nothing", k, v)
		}
		want.ConfigMap.Data[k] = v
	}
	for _, labels := range []map[string]string{want.Deployment.Labels, want.Deployment.Spec.Template.Labels,
		want.ConfigMap.Labels, want.Service.Labels, want.AdminService.Labels, want.PDB.Labels} {
		labels["app.kubernetes.io/version"] = "1.4.0"
	}
	if !equality.Semantic.DeepEqual(got, want) {
		t.Errorf("kustomize build %s differs from k8s/ with the overlay's changes:\n%s", overlayDir, diff.Diff(want, got))
	}
}

// unhash checks that kustomize gave m's ConfigMap a hashed name, and the
// Deployment's envFrom the same, and puts back name in both.
func unhash(t *testing.T, m *manifest.Manifests, name string) {
	t.Helper()
	if m.ConfigMap == nil || m.Deployment == nil {
		t.Fatal("no ConfigMap or Deployment")
	}
	if !hashed.MatchString(m.ConfigMap.Name) {
		t.Errorf("ConfigMap name %q: want %s with a content hash (configMapGenerator)", m.ConfigMap.Name, name)
	}
	ref := m.Deployment.Spec.Template.Spec.Containers[0].EnvFrom[0].ConfigMapRef
	if ref.Name != m.ConfigMap.Name {
		t.Errorf("the Deployment reads ConfigMap %q; want the generated %q", ref.Name, m.ConfigMap.Name)
	}
	m.ConfigMap.Name, ref.Name = name, name
	m.ConfigMap.Labels = maps.Clone(m.ConfigMap.Labels)
}

// render builds the kustomization in dir with kustomize's defaults (those of
// `kubectl kustomize`) and decodes the result strictly.
func render(t *testing.T, dir string) manifest.Manifests {
	t.Helper()
	out, err := manifest.Kustomize(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Decode("kustomize build "+dir, out)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	return m
}
