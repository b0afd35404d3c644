//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v4/pkg/action"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	helmkube "helm.sh/helm/v4/pkg/kube"
	releasev1 "helm.sh/helm/v4/pkg/release/v1"
	"helm.sh/helm/v4/pkg/storage/driver"
	"k8s.io/cli-runtime/pkg/genericclioptions"
)

// release is the Helm release the e2e installs (E2E_INSTALL=helm): chartDir
// with kindValues and the image IMAGE, as
//
//	helm upgrade --install --wait lameduck charts/lameduck -f e2e/kind/values.yaml \
//	  --set image.repository=lameduck,image.tag=dev
//
// through Helm's Go SDK, which the e2e module pins (no helm binary needed).
type release struct {
	cfg   *action.Configuration
	chart *chartv2.Chart
	ns    string
	base  map[string]any // the values every install and upgrade starts from
}

const releaseName = "lameduck"

// newRelease connects Helm to the cluster of kubeconfig, namespace ns, with
// the values of valuesFile and the image.
func newRelease(kubeconfig, ns, image, valuesFile string) (*release, error) {
	path := filepath.Join(os.TempDir(), "lameduck-e2e-helm-kubeconfig")
	if err := os.WriteFile(path, []byte(kubeconfig), 0o600); err != nil {
		return nil, fmt.Errorf("helm kubeconfig: %w", err)
	}
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig, flags.Namespace = &path, &ns
	cfg := action.NewConfiguration()
	if err := cfg.Init(flags, ns, "secret"); err != nil {
		return nil, fmt.Errorf("helm: %w", err)
	}
	ch, err := loader.Load(chartDir)
	if err != nil {
		return nil, fmt.Errorf("load chart %s: %w", chartDir, err)
	}
	vals, err := loader.LoadValues(bytes.NewReader(must(os.ReadFile(valuesFile))))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", valuesFile, err)
	}
	repo, tag, ok := strings.Cut(image, ":")
	if !ok || strings.Contains(tag, "/") {
		return nil, fmt.Errorf("IMAGE=%q: want REPOSITORY:TAG", image)
	}
	vals["image"] = map[string]any{"repository": repo, "tag": tag, "pullPolicy": "IfNotPresent"}
	return &release{cfg: cfg, chart: ch, ns: ns, base: vals}, nil
}

// upgradeInstall installs the release, or upgrades it when it exists (a
// reused cluster), with the base values and then set over them, and waits
// until every object is ready (the Deployment's rollout complete).
func (r *release) upgradeInstall(ctx context.Context, set map[string]any) error {
	vals := loader.MergeMaps(loader.MergeMaps(map[string]any{}, r.base), set)
	start := time.Now()
	_, err := action.NewHistory(r.cfg).Run(releaseName)
	switch {
	case errors.Is(err, driver.ErrReleaseNotFound):
		in := action.NewInstall(r.cfg)
		in.ReleaseName, in.Namespace = releaseName, r.ns
		in.WaitStrategy, in.Timeout = helmkube.StatusWatcherStrategy, 3*time.Minute
		_, err = in.RunWithContext(ctx, r.chart, vals)
	case err == nil:
		up := action.NewUpgrade(r.cfg)
		up.Namespace, up.ForceConflicts = r.ns, true
		up.WaitStrategy, up.Timeout = helmkube.StatusWatcherStrategy, 3*time.Minute
		_, err = up.RunWithContext(ctx, releaseName, r.chart, vals)
	}
	if err != nil {
		return fmt.Errorf("helm upgrade --install %s %s: %w", releaseName, chartDir, err)
	}
	fmt.Fprintf(os.Stderr, "e2e: helm upgrade --install %s (%v) done in %s\n", releaseName, set, time.Since(start).Round(time.Millisecond))
	return nil
}

// test runs `helm test`, and returns the test pods' logs.
func (r *release) test() (string, error) {
	rt := action.NewReleaseTesting(r.cfg)
	rt.Namespace, rt.Timeout = r.ns, 2*time.Minute
	rel, shutdown, err := rt.Run(releaseName)
	defer func() { _ = shutdown() }()
	var logs bytes.Buffer
	if v1, ok := rel.(*releasev1.Release); ok {
		if lerr := rt.GetPodLogs(&logs, v1); lerr != nil {
			err = errors.Join(err, lerr)
		}
		for _, h := range v1.Hooks {
			fmt.Fprintf(&logs, "hook %s: %s\n", h.Name, h.LastRun.Phase)
		}
	}
	return logs.String(), err
}

// TestHelmTest runs `helm test` on the release the e2e installed: the
// chart's test pod runs lameduck -check against the app and admin Services
// from the lameduck image itself, so nothing is pulled.
func TestHelmTest(t *testing.T) {
	if env.install != installHelm {
		t.Skipf("E2E_INSTALL=%s: no Helm release", env.install)
	}
	logs, err := env.release.test()
	t.Logf("helm test %s:\n%s", releaseName, logs)
	if err != nil {
		t.Fatalf("helm test %s: %v", releaseName, err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
