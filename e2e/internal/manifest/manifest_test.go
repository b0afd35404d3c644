package manifest_test

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/lameduck/lameduck/e2e/internal/manifest"
	"github.com/lameduck/lameduck/internal/config"
)

// k8sDir is the folder `kubectl apply -f k8s` applies.
const k8sDir = "../../../k8s"

func TestRealManifests(t *testing.T) {
	m := loadK8s(t)
	if m.Deployment == nil || m.ConfigMap == nil || m.Service == nil || m.PDB == nil {
		t.Fatalf("Load(%q) = %+v; want a Deployment, a ConfigMap, a Service and a PodDisruptionBudget", k8sDir, m)
	}
	if err := validate(t, m); err != nil {
		t.Errorf("validate(%s):\n%v", k8sDir, err)
	}
}

// TestDecodeFixtures: what must fail before any check can run stays YAML, in
// testdata/invalid-*.yaml, each with the error it must cause.
func TestDecodeFixtures(t *testing.T) {
	tests := map[string]string{ // fixture: part of the error it must cause
		"invalid-unknown-field.yaml": `unknown field "spec.template.spec.containers[0].readinesProbe"`,
		"invalid-unknown-kind.yaml":  `kind Ingress.networking.k8s.io is not one lameduck deploys`,
		"invalid-hpa-v1.yaml":        `no kind "HorizontalPodAutoscaler" is registered for version "autoscaling/v1"`,
	}
	files, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if _, ok := tests[filepath.Base(f)]; !ok {
			t.Errorf("fixture %s has no entry in the table", f)
		}
	}
	for name, want := range tests {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join("testdata", name)
			_, err := manifest.Load(path)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("Load(%s) = %v; want an error containing %q", path, err, want)
			}
		})
	}
}

// TestGracePeriod checks the headline property through the program's own
// configuration code rather than Check's: what config.Load makes of the
// ConfigMap fits in the pod's grace period, and knows its length.
func TestGracePeriod(t *testing.T) {
	m := loadK8s(t)
	cfg, err := loadConfig(t, m.ConfigMap)
	if err != nil {
		t.Fatalf("config.Load() with the ConfigMap's values: %v", err)
	}
	seconds := m.Deployment.Spec.Template.Spec.TerminationGracePeriodSeconds
	if seconds == nil {
		t.Fatal("terminationGracePeriodSeconds is not set")
	}
	grace := time.Duration(*seconds) * time.Second
	if cfg.GracePeriod != grace {
		t.Errorf("LAMEDUCK_GRACE_PERIOD = %s; want terminationGracePeriodSeconds, %s", cfg.GracePeriod, grace)
	}
	if need := cfg.PrestopDelay + cfg.ShutdownTimeout + cfg.DrainTimeout + config.GraceSpare; need > grace {
		t.Errorf("prestop %s + shutdown %s + drain %s + %s = %s; want at most terminationGracePeriodSeconds, %s",
			cfg.PrestopDelay, cfg.ShutdownTimeout, cfg.DrainTimeout, config.GraceSpare, need, grace)
	}
}

// variableName is a whole variable name, not a mention of the prefix in prose.
var variableName = regexp.MustCompile(`^` + config.Prefix + `_[A-Z][A-Z0-9_]*$`)

// TestVariables checks that Variables lists what `lameduck -h` prints.
func TestVariables(t *testing.T) {
	vars, err := manifest.Variables()
	if err != nil {
		t.Fatalf("Variables(): %v", err)
	}
	var usage strings.Builder
	if err := config.Usage(&usage); err != nil {
		t.Fatalf("config.Usage: %v", err)
	}
	var printed []string
	for _, line := range strings.Split(usage.String(), "\n") {
		if f := strings.Fields(line); len(f) > 0 && variableName.MatchString(f[0]) && !slices.Contains(printed, f[0]) {
			printed = append(printed, f[0])
		}
	}
	if !slices.Equal(vars, printed) {
		t.Errorf("Variables() = %q; want what config.Usage prints, %q", vars, printed)
	}
	for _, want := range []string{"LAMEDUCK_HTTP_ADDR", "LAMEDUCK_GRACE_PERIOD", "LAMEDUCK_IDEMPOTENCY_MAX_KEYS"} {
		if !slices.Contains(vars, want) {
			t.Errorf("Variables() = %q; want it to contain %s", vars, want)
		}
	}
}

// TestLoad covers what Load accepts and rejects beyond the fixtures.
func TestLoad(t *testing.T) {
	const configMap = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  K: v\n"
	tests := []struct {
		name  string
		files map[string]string
		want  string // part of the error; "" for none
	}{
		{"yaml, yml and json; others ignored", map[string]string{
			"a.yml":     "# comments only\n---\n" + configMap,
			"b.json":    `{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}}`,
			"README.md": "not a manifest",
		}, ""},
		{"duplicate field", map[string]string{"a.yaml": configMap + "data:\n  K: w\n"}, `key "data" already set`},
		{"case-mismatched field", map[string]string{"a.yaml": configMap + "Metadata:\n  name: c\n"}, `unknown field "Metadata"`},
		{"second of a kind", map[string]string{"a.yaml": configMap + "---\n" + configMap}, "a second ConfigMap"},
		{"kind registered but not deployed", map[string]string{"a.yaml": "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n"}, "kind Secret is not one lameduck deploys"},
		{"no manifests", map[string]string{"README.md": "x"}, "no [.yaml .yml .json] files"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, data := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			m, err := manifest.Load(dir)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Load: %v; want nil", err)
			case tt.want == "":
				if m.ConfigMap == nil || m.ConfigMap.Data["K"] != "v" || m.Service == nil {
					t.Errorf("Load = %+v; want the ConfigMap and the Service", m)
				}
			case err == nil || !strings.Contains(err.Error(), tt.want):
				t.Errorf("Load: %v; want an error containing %q", err, tt.want)
			}
		})
	}
}

// validate is every check a manifest set must pass: Check, config.Load on
// the ConfigMap's values (the program's own validation), and CheckMemory at
// what config.Load makes of them.
func validate(t *testing.T, m manifest.Manifests) error {
	t.Helper()
	errs := []error{manifest.Check(m)}
	if m.ConfigMap != nil {
		cfg, err := loadConfig(t, m.ConfigMap)
		errs = append(errs, err)
		if err == nil {
			errs = append(errs, manifest.CheckMemory(m, cfg))
		}
	}
	return errors.Join(errs...)
}

// loadK8s loads the shipped manifests, a fresh copy for each caller to change.
func loadK8s(t *testing.T) manifest.Manifests {
	t.Helper()
	m, err := manifest.Load(k8sDir)
	if err != nil {
		t.Fatalf("Load(%q): %v", k8sDir, err)
	}
	return m
}

// loadConfig runs config.Load with exactly the ConfigMap's variables set, as
// in the pod, and restores the environment when t ends.
func loadConfig(t *testing.T, cm *corev1.ConfigMap) (config.Config, error) {
	t.Helper()
	vars, err := manifest.Variables()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vars {
		t.Setenv(v, "") // registers the restore
		os.Unsetenv(v)
	}
	for k, v := range cm.Data {
		t.Setenv(k, v)
	}
	return config.Load()
}
