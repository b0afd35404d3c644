package manifest_test

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/lameduck/lameduck/e2e/internal/manifest"
	"github.com/lameduck/lameduck/internal/config"
)

// TestMemoryFits: at the ConfigMap's values, whatever clients do (every
// connection open with a full header block, HTTP/1.1 or HTTP/2, every
// request slot taken by a stream with a full header block and body buffer,
// the key store full, the queue full) fits in the Deployment's GOMEMLIMIT and limits.memory. Each mutation
// of the real manifests must fail, for the reason it names.
func TestMemoryFits(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*manifest.Manifests)
		want   string // part of the error; "" for none
	}{
		{"the real manifests", func(*manifest.Manifests) {}, ""},
		{"more connections than memory", func(m *manifest.Manifests) { m.ConfigMap.Data["LAMEDUCK_MAX_CONNS"] = "4000" },
			"exceeds 80% of GOMEMLIMIT"},
		{"more requests than memory", func(m *manifest.Manifests) { m.ConfigMap.Data["LAMEDUCK_MAX_REQUESTS"] = "1024" },
			"exceeds 80% of GOMEMLIMIT"},
		{"larger headers than memory", func(m *manifest.Manifests) { m.ConfigMap.Data["LAMEDUCK_MAX_HEADER_BYTES"] = "1048576" },
			"exceeds 80% of GOMEMLIMIT"},
		{"more keys than memory", func(m *manifest.Manifests) { m.ConfigMap.Data["LAMEDUCK_IDEMPOTENCY_MAX_BYTES"] = "67108864" },
			"exceeds 80% of GOMEMLIMIT"},
		{"GOMEMLIMIT at the limit", func(m *manifest.Manifests) { setEnv(m, "GOMEMLIMIT", "96MiB") },
			"exceeds limits.memory"},
		{"no GOMEMLIMIT", func(m *manifest.Manifests) { setEnv(m, "GOMEMLIMIT", "") }, "no GOMEMLIMIT"},
		{"a smaller limit", func(m *manifest.Manifests) {
			m.Deployment.Spec.Template.Spec.Containers[0].Resources.Limits[corev1.ResourceMemory] = resource.MustParse("80Mi")
		}, "exceeds limits.memory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := manifest.Load(k8sDir)
			if err != nil {
				t.Fatalf("Load(%q): %v", k8sDir, err)
			}
			tt.mutate(&m)
			cfg, err := loadConfig(t, m.ConfigMap)
			if err != nil {
				t.Fatalf("config.Load() with the ConfigMap's values: %v", err)
			}
			err = manifest.CheckMemory(m, cfg)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("CheckMemory = %v; want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("CheckMemory = %v; want an error containing %q", err, tt.want)
			}
			if tt.want == "" {
				for _, p := range cfg.MemoryWorstCase() {
					t.Logf("%-20s %6.1f MiB  %s", p.Name, float64(p.Bytes)/(1<<20), p.Why)
				}
				t.Logf("%-20s %6.1f MiB", "total", float64(config.MemoryTotal(cfg.MemoryWorstCase()))/(1<<20))
			}
		})
	}
}

// setEnv sets (or, with "", removes) the container's variable name.
func setEnv(m *manifest.Manifests, name, value string) {
	ctr := &m.Deployment.Spec.Template.Spec.Containers[0]
	var env []corev1.EnvVar
	for _, e := range ctr.Env {
		if e.Name != name {
			env = append(env, e)
		}
	}
	if value != "" {
		env = append(env, corev1.EnvVar{Name: name, Value: value})
	}
	ctr.Env = env
}
