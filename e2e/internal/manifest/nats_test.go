package manifest_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/lameduck/lameduck/e2e/internal/manifest"
)

// TestNATSMutations runs Check on the chart with ci/nats-values.yaml, each
// time with one thing of its NATS servers changed: a change that would stop
// the cluster forming, or let lameduck's selectors take NATS pods, must fail
// for the reason named.
func TestNATSMutations(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*manifest.Manifests)
		want   string // part of the error; "" for none
	}{
		{"as rendered", func(*manifest.Manifests) {}, ""},
		{"five servers", func(m *manifest.Manifests) { m.NATS.StatefulSet.Spec.Replicas = new(int32(5)) }, ""},
		{"headless Service hides unready servers", func(m *manifest.Manifests) { m.NATS.Headless.Spec.PublishNotReadyAddresses = false },
			"publishNotReadyAddresses must be true"},
		{"no headless Service", func(m *manifest.Manifests) { m.NATS.Headless = nil }, "no headless Service"},
		{"no budget", func(m *manifest.Manifests) { m.NATS.PDB = nil }, "no PodDisruptionBudget"},
		{"no readiness probe", func(m *manifest.Manifests) {
			m.NATS.StatefulSet.Spec.Template.Spec.Containers[0].ReadinessProbe = nil
		}, "no readinessProbe"},
		{"running as root", func(m *manifest.Manifests) {
			m.NATS.StatefulSet.Spec.Template.Spec.SecurityContext.RunAsUser = new(int64(0))
		}, "runAsUser must not be 0"},
		{"lameduck's Service selects the NATS pods", func(m *manifest.Manifests) {
			m.NATS.StatefulSet.Spec.Template.Labels["app.kubernetes.io/name"] = "lameduck"
		}, "selects the NATS pods"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := chartManifests(t, renderChart(t, []string{filepath.Join(chartDir, "ci", "nats-values.yaml")}, nil))
			tt.mutate(&m)
			err := manifest.Check(m)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Check = %v; want nil", err)
			case tt.want != "" && err == nil:
				t.Errorf("Check = nil; want an error containing %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Errorf("Check = %v; want an error containing %q", err, tt.want)
			}
		})
	}
}
