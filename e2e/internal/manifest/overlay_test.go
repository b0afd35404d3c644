package manifest_test

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/diff"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/lameduck/lameduck/e2e/internal/manifest"
)

// overlayDir is the example overlay of k8s/ (`kubectl apply -k overlays/example`).
const overlayDir = "../../../overlays/example"

// TestKustomizeBase: kustomize renders k8s/ (its Kustomization file) into the
// very objects `kubectl apply -f k8s` applies, so the base lists every file.
func TestKustomizeBase(t *testing.T) {
	got := render(t, k8sDir)
	if want := loadK8s(t); !equality.Semantic.DeepEqual(got, want) {
		t.Errorf("kustomize build %s differs from Load(%s): list every manifest in k8s/Kustomization\n%s",
			k8sDir, k8sDir, diff.Diff(want, got))
	}
}

// TestOverlay renders the example overlay as `kubectl apply -k` would, runs
// every check on the result, and compares it with k8s/ changed by hand as the
// overlay says: the image, the replica count and four LAMEDUCK_* values (with
// terminationGracePeriodSeconds, to fit the longer drain), and nothing else.
func TestOverlay(t *testing.T) {
	got := render(t, overlayDir)
	if err := validate(t, got); err != nil {
		t.Errorf("validate(kustomize build %s):\n%v", overlayDir, err)
	}

	want := loadK8s(t)
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
	if !equality.Semantic.DeepEqual(got, want) {
		t.Errorf("kustomize build %s differs from k8s/ with the overlay's changes:\n%s", overlayDir, diff.Diff(want, got))
	}
}

// render builds the kustomization in dir with kustomize's defaults (those of
// `kubectl kustomize`) and decodes the result strictly.
func render(t *testing.T, dir string) manifest.Manifests {
	t.Helper()
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out, err := res.AsYaml()
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	m, err := manifest.Decode("kustomize build "+dir, out)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	return m
}
