package e2e

// This file has no build tag: `make test` checks, without a cluster, that the
// kind clusters the e2e creates can reach the Service the e2e installs, both
// ways (the chart with kind/values.yaml, the kind/ overlay of k8s/). The node
// port is the e2e's need, not a rule for every deployment, so it lives in the
// e2e's own values file and overlay, not in k8s/ or the chart's defaults.

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	kindv1alpha4 "sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/yaml"

	"github.com/lameduck/lameduck/e2e/internal/manifest"
)

// What the e2e installs, and how (E2E_INSTALL).
const (
	installHelm      = "helm"      // chartDir with kindValues, through Helm's SDK
	installKustomize = "kustomize" // the kindOverlay of k8s/, as kubectl apply -k
	chartDir         = "../charts/lameduck"
	kindValues       = "kind/values.yaml"
	kindOverlay      = "kind"
)

// e2eManifests is what the e2e installs the given way, rendered (the image
// is IMAGE's, set at install).
func e2eManifests(install string) (manifest.Manifests, error) {
	switch install {
	case installHelm:
		r, err := manifest.RenderChart(chartDir, manifest.Release{}, []string{kindValues}, nil)
		if err != nil {
			return manifest.Manifests{}, err
		}
		return r.Manifests()
	case installKustomize:
		out, err := manifest.Kustomize(kindOverlay)
		if err != nil {
			return manifest.Manifests{}, err
		}
		return manifest.Decode("kustomize build "+kindOverlay, out)
	}
	return manifest.Manifests{}, fmt.Errorf("E2E_INSTALL=%q: want %s or %s", install, installHelm, installKustomize)
}

// nodePortURL is the base URL on the host that reaches the Service the e2e
// installs the given way through the kind cluster of kindConfig, or why
// there is none.
func nodePortURL(install, kindConfig string) (string, error) {
	m, err := e2eManifests(install)
	if err != nil {
		return "", err
	}
	data, err := os.ReadFile(kindConfig)
	if err != nil {
		return "", fmt.Errorf("kind config: %w", err)
	}
	var c kindv1alpha4.Cluster
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return "", fmt.Errorf("kind config %s: %w", kindConfig, err)
	}
	return hostURL(m.Service, &c, kindConfig)
}

// hostURL checks that s is a NodePort Service whose app port has a fixed node
// port, that the control-plane node of c maps to a host port, and returns
// http://LISTEN:HOSTPORT for it. configName names c in errors.
func hostURL(s *corev1.Service, c *kindv1alpha4.Cluster, configName string) (string, error) {
	if s == nil {
		return "", errors.New("no Service")
	}
	what := "Service " + s.Name
	if s.Spec.Type != corev1.ServiceTypeNodePort {
		return "", fmt.Errorf("%s: type is %q; the e2e reaches it through a node port that %s maps to the host: want %s",
			what, s.Spec.Type, configName, corev1.ServiceTypeNodePort)
	}
	var nodePort int32
	for _, p := range s.Spec.Ports {
		if p.TargetPort == intstr.FromString(manifest.AppPort) {
			nodePort = p.NodePort
		}
	}
	if nodePort == 0 {
		return "", fmt.Errorf("%s: no fixed nodePort on the port targeting %q: the API would pick one that %s cannot map", what, manifest.AppPort, configName)
	}
	var mapped []string
	for _, n := range c.Nodes {
		if n.Role != kindv1alpha4.ControlPlaneRole {
			continue
		}
		for _, pm := range n.ExtraPortMappings {
			if pm.ContainerPort != nodePort || pm.HostPort <= 0 || pm.Protocol != "" && pm.Protocol != kindv1alpha4.PortMappingProtocolTCP {
				mapped = append(mapped, strconv.Itoa(int(pm.ContainerPort)))
				continue
			}
			host := pm.ListenAddress
			if host == "" || host == "0.0.0.0" {
				host = "127.0.0.1"
			}
			return "http://" + net.JoinHostPort(host, strconv.Itoa(int(pm.HostPort))), nil
		}
	}
	return "", fmt.Errorf("%s: nodePort %d is not among the TCP ports %s maps from its control-plane node to the host (%s)",
		what, nodePort, configName, strings.Join(mapped, ", "))
}

// TestNodePort: both kind clusters of the e2e map the node port of the
// Service the e2e installs, either way, to the host; a Service they cannot
// reach fails. What the e2e installs passes every manifest check but keeps
// the base's Service type (ClusterIP) out of k8s/ and the chart's defaults.
func TestNodePort(t *testing.T) {
	for _, install := range []string{installHelm, installKustomize} {
		for _, config := range []string{"kind-config.yaml", "kind-multinode.yaml"} {
			url, err := nodePortURL(install, config)
			if err != nil {
				t.Errorf("nodePortURL(%s, %s): %v", install, config, err)
				continue
			}
			t.Logf("%s, %s: the Service is at %s", install, config, url)
		}
		m, err := e2eManifests(install)
		if err != nil {
			t.Fatal(err)
		}
		if err := manifest.Check(m); err != nil {
			t.Errorf("manifest.Check(what the e2e installs with %s):\n%v", install, err)
		}
	}
	base, err := manifest.Load("../k8s")
	if err != nil {
		t.Fatal(err)
	}
	if base.Service.Spec.Type != corev1.ServiceTypeClusterIP {
		t.Errorf("k8s/ Service type %q; want %s: the node port is the e2e's, in %s and %s", base.Service.Spec.Type,
			corev1.ServiceTypeClusterIP, kindValues, kindOverlay)
	}

	m, err := e2eManifests(installKustomize)
	if err != nil {
		t.Fatal(err)
	}
	var c kindv1alpha4.Cluster
	data, err := os.ReadFile("kind-config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		mutate func(*corev1.Service)
		want   string
	}{
		{"ClusterIP", func(s *corev1.Service) { s.Spec.Type, s.Spec.Ports[0].NodePort = corev1.ServiceTypeClusterIP, 0 }, `type is "ClusterIP"`},
		{"node port unset", func(s *corev1.Service) { s.Spec.Ports[0].NodePort = 0 }, "no fixed nodePort"},
		{"node port not mapped", func(s *corev1.Service) { s.Spec.Ports[0].NodePort = 31000 }, "nodePort 31000 is not among the TCP ports"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := m.Service.DeepCopy()
			tt.mutate(s)
			if _, err := hostURL(s, &c, "kind-config.yaml"); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("hostURL = %v; want an error containing %q", err, tt.want)
			}
		})
	}
}
