//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// checkDataPath checks, hop by hop, the path the load takes from the host to
// the pods, and names the hop that broke:
//  1. the host's port mapping (kind's extraPortMappings, Docker's
//     docker-proxy on 127.0.0.1) accepts TCP connections;
//  2. every ready lameduck pod answers GET /hello itself, through the API
//     server's pod proxy, which bypasses the Service;
//  3. GET /hello through the NodePort (kube-proxy) succeeds on 20 fresh
//     connections in a row.
//
// A run whose path broke says so instead of charging the service with the
// failures (or, in the negative control, counting them as the expected ones).
func checkDataPath(ctx context.Context, k *kube, base string) error {
	u, err := url.Parse(base)
	if err != nil {
		return fmt.Errorf("data path: %w", err)
	}
	d := net.Dialer{Timeout: 3 * time.Second}
	c, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return fmt.Errorf("data path, hop 1 (host port mapping %s, Docker's docker-proxy): %w; "+
			"the port forwarder is gone, and only a new cluster brings it back", u.Host, err)
	}
	c.Close()

	pods, err := k.cs.CoreV1().Pods(k.ns).List(ctx, metav1.ListOptions{LabelSelector: podSelector})
	if err != nil {
		return fmt.Errorf("data path, hop 2: list pods: %w", err)
	}
	var broken []string
	ready := 0
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil || !podReady(p.Status.Conditions) {
			continue
		}
		ready++
		port := appPort(p)
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		body, err := k.cs.CoreV1().Pods(k.ns).ProxyGet("http", p.Name, port, "/hello", nil).DoRaw(pctx)
		cancel()
		if err != nil || !strings.HasPrefix(string(body), "hello") {
			broken = append(broken, fmt.Sprintf("%s: %v %q", p.Name, err, body))
		}
	}
	if ready == 0 {
		return errors.New("data path, hop 2: no lameduck pod is ready")
	}
	if len(broken) > 0 {
		return fmt.Errorf("data path, hop 2 (the pods themselves, via the API server): %s", strings.Join(broken, "; "))
	}

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	defer client.CloseIdleConnections()
	for i := range 20 {
		if err := getHello(ctx, client, base); err != nil {
			return fmt.Errorf("data path, hop 3 (NodePort and kube-proxy: the mapping accepts connections and "+
				"the pods answer, but request %d of 20 through %s failed): %w", i+1, base, err)
		}
	}
	return nil
}

func podReady(conds []corev1.PodCondition) bool {
	for _, c := range conds {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// appPort returns the number of the pod's container port named "http"; the
// API server's pod proxy takes numbers only.
func appPort(p corev1.Pod) string {
	for _, c := range p.Spec.Containers {
		for _, port := range c.Ports {
			if port.Name == "http" {
				return strconv.Itoa(int(port.ContainerPort))
			}
		}
	}
	return "8080"
}

// adminPort is the pod's admin port (probes, /metrics), as a number.
func adminPort(p corev1.Pod) string {
	for _, c := range p.Spec.Containers {
		for _, port := range c.Ports {
			if port.Name == "admin" {
				return strconv.Itoa(int(port.ContainerPort))
			}
		}
	}
	return "8086"
}
