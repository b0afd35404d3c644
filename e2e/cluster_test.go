//go:build e2e

// Package e2e rolls lameduck's Deployment on a real kind cluster under load
// and fails if a single request fails or an accepted job is lost. Run it with
// `make e2e`; see TestMain for the environment it reads.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/kind/pkg/cluster"
	"sigs.k8s.io/kind/pkg/cluster/nodeutils"
	kindcmd "sigs.k8s.io/kind/pkg/cmd"

	"github.com/lameduck/lameduck/e2e/internal/manifest"
)

// env is what the whole e2e run shares.
var env struct {
	kube      *kube
	image     string
	nodePort  string // base URL of the Service's NodePort on the host
	created   bool
	cluster   string
	provider  *cluster.Provider
	keepAfter bool
	scenario  string // E2E_SCENARIO: rollout (one node), drain (a control plane and two workers) or jetstream (one node)
	values    string // the chart's values file for the kind cluster (E2E_INSTALL=helm)
	// install is how lameduck is installed (E2E_INSTALL): "helm", the chart
	// through Helm's SDK (release is the release), the rollout scenario's
	// default; or "kustomize", the kind/ overlay of k8s/ as kubectl apply -k
	// would apply it, the drain scenario's default.
	install string
	release *release
}

// TestMain creates the kind cluster (or reuses KIND_CLUSTER), loads the image
// IMAGE (built by `make image`), installs lameduck with only the image
// overridden (E2E_INSTALL: "helm", charts/lameduck with kind/values.yaml, or
// "kustomize", the kind/ overlay of k8s/), waits for the rollout, runs the tests, and deletes what it created unless
// KEEP_CLUSTER=1. KIND_NODE_IMAGE picks the node image (kind's default when
// unset). E2E_SCENARIO picks the cluster and the tests: "rollout" (the
// default) is one node, kind-config.yaml, cluster lameduck-e2e; "drain" is a
// control plane and two workers, kind-multinode.yaml, cluster
// lameduck-e2e-drain.
func TestMain(m *testing.M) {
	code := 1
	if err := setUp(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
	} else {
		code = m.Run()
	}
	if env.created && !env.keepAfter {
		fmt.Fprintf(os.Stderr, "e2e: deleting kind cluster %s\n", env.cluster)
		if err := env.provider.Delete(env.cluster, ""); err != nil {
			fmt.Fprintln(os.Stderr, "e2e teardown:", err)
		}
	}
	os.Exit(code)
}

func setUp() error {
	env.image = getenv("IMAGE", "lameduck:dev")
	env.keepAfter = os.Getenv("KEEP_CLUSTER") == "1"
	name := os.Getenv("KIND_CLUSTER")
	env.scenario = getenv("E2E_SCENARIO", scenarioRollout)
	configFile, defaultName := "kind-config.yaml", "lameduck-e2e"
	env.values = kindValues
	images := []string{env.image}
	switch env.scenario {
	case scenarioRollout:
	case scenarioDrain:
		configFile, defaultName = "kind-multinode.yaml", "lameduck-e2e-drain"
	case scenarioJetStream:
		defaultName, env.values = "lameduck-e2e-jetstream", kindJetStreamValues
		images = append(images, getenv("NATS_IMAGE", "lameduck-nats:dev"))
	default:
		return fmt.Errorf("E2E_SCENARIO=%q: want %s, %s or %s", env.scenario, scenarioRollout, scenarioDrain, scenarioJetStream)
	}
	env.install = installHelm
	if env.scenario == scenarioDrain {
		env.install = installKustomize
	}
	env.install = getenv("E2E_INSTALL", env.install)
	if env.scenario == scenarioJetStream && env.install != installHelm {
		return fmt.Errorf("E2E_SCENARIO=%s installs NATS with the chart: E2E_INSTALL=%s is not supported", scenarioJetStream, env.install)
	}
	// Before any cluster: the Service must be reachable through this one.
	var err error
	if env.nodePort, err = nodePortURL(env.install, configFile); err != nil {
		return err
	}
	env.provider = cluster.NewProvider(cluster.ProviderWithDocker(), cluster.ProviderWithLogger(kindcmd.NewLogger()))

	existing, err := env.provider.List()
	if err != nil {
		return fmt.Errorf("list kind clusters (is Docker running?): %w", err)
	}
	reuse := false
	for _, c := range existing {
		reuse = reuse || (name != "" && c == name)
	}
	if name == "" {
		name = defaultName
		for _, c := range existing {
			if c == name {
				return fmt.Errorf("a kind cluster named %s exists already: reuse it with KIND_CLUSTER=%s, "+
					"or delete it (kind delete cluster --name %s)", name, name, name)
			}
		}
	}
	env.cluster = name
	if !reuse {
		opts := []cluster.CreateOption{
			cluster.CreateWithConfigFile(configFile),
			cluster.CreateWithWaitForReady(3 * time.Minute),
			cluster.CreateWithKubeconfigPath(filepath.Join(os.TempDir(), "lameduck-e2e-kubeconfig")),
			cluster.CreateWithDisplayUsage(false), cluster.CreateWithDisplaySalutation(false),
		}
		if img := os.Getenv("KIND_NODE_IMAGE"); img != "" {
			opts = append(opts, cluster.CreateWithNodeImage(img))
		}
		fmt.Fprintf(os.Stderr, "e2e: creating kind cluster %s from %s\n", name, configFile)
		start := time.Now()
		if err := env.provider.Create(name, opts...); err != nil {
			return fmt.Errorf("create kind cluster %s: %w", name, err)
		}
		env.created = true
		fmt.Fprintf(os.Stderr, "e2e: cluster created in %s\n", time.Since(start).Round(time.Second))
	} else {
		fmt.Fprintf(os.Stderr, "e2e: reusing kind cluster %s\n", name)
	}

	for _, image := range images {
		if err := loadImage(name, image); err != nil {
			return err
		}
	}
	kubeconfig, err := env.provider.KubeConfig(name, false)
	if err != nil {
		return fmt.Errorf("kubeconfig of %s: %w", name, err)
	}
	restConfig, err := clientcmd.RESTConfigFromKubeConfig([]byte(kubeconfig))
	if err != nil {
		return fmt.Errorf("parse kubeconfig: %w", err)
	}
	restConfig.QPS, restConfig.Burst = 50, 100
	cs, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	env.kube, err = newKube(restConfig, cs, "default")
	if err != nil {
		return err
	}
	if env.install == installHelm {
		if env.release, err = newRelease(kubeconfig, "default", env.image, env.values); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := deploy(ctx, nil); err != nil {
		return err
	}
	if _, err := env.kube.waitRollout(ctx); err != nil {
		return fmt.Errorf("initial rollout: %w", err)
	}
	if err := env.kube.waitDataPath(ctx, env.nodePort); err != nil {
		return err
	}
	return nil
}

// deploy installs lameduck the E2E_INSTALL way, with the LAMEDUCK_* values
// of config (by variable name) over the defaults, and waits for what it
// changed: Helm rolls the pods when the configuration changes (the pod
// template's checksum) and waits for the rollout; with kustomize the caller
// restarts the Deployment (the ConfigMap keeps its name here, as the e2e
// overrides its data after the build).
func deploy(ctx context.Context, config map[string]string) error {
	if env.install == installHelm {
		set := map[string]any{}
		for k, v := range config {
			set[helmKey(k)] = v
		}
		if len(set) > 0 {
			return env.release.upgradeInstall(ctx, map[string]any{"config": set})
		}
		return env.release.upgradeInstall(ctx, nil)
	}
	out, err := manifest.Kustomize(kindOverlay)
	if err != nil {
		return err
	}
	return env.kube.applyYAML(ctx, "kustomize build "+kindOverlay, out, env.image, config)
}

// helmKey is the chart's config value for a LAMEDUCK_* variable:
// LAMEDUCK_PRESTOP_DELAY is prestopDelay.
func helmKey(variable string) string {
	words := strings.Split(strings.ToLower(strings.TrimPrefix(variable, "LAMEDUCK_")), "_")
	for i := 1; i < len(words); i++ {
		words[i] = strings.ToUpper(words[i][:1]) + words[i][1:]
	}
	return strings.Join(words, "")
}

// loadImage puts the local Docker image into every node of the cluster, as
// `kind load docker-image` does. kind's library has no call that exports an
// image from Docker, so this shells out to `docker save`, as kind itself does.
func loadImage(clusterName, image string) error {
	nodes, err := env.provider.ListInternalNodes(clusterName)
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	var archive bytes.Buffer
	var stderr bytes.Buffer
	save := exec.Command("docker", "save", image)
	save.Stdout, save.Stderr = &archive, &stderr
	if err := save.Run(); err != nil {
		return fmt.Errorf("docker save %s (build it with `make image`): %w: %s", image, err, stderr.String())
	}
	for _, n := range nodes {
		if err := nodeutils.LoadImageArchive(n, io.NopCloser(bytes.NewReader(archive.Bytes()))); err != nil {
			return fmt.Errorf("load %s into node %s: %w", image, n.String(), err)
		}
	}
	fmt.Fprintf(os.Stderr, "e2e: loaded %s (%d KiB) into %d node(s)\n", image, archive.Len()/1024, len(nodes))
	return nil
}

func getenv(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
