package manifest_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/diff"
	"sigs.k8s.io/yaml"

	"github.com/lameduck/lameduck/e2e/internal/manifest"
)

// chartDir is lameduck's chart (`helm install lameduck charts/lameduck`).
const chartDir = "../../../charts/lameduck"

// renderChart renders the chart as helm would for release "lameduck", with
// the values files and then values over them.
func renderChart(t *testing.T, files []string, values map[string]any) manifest.Rendered {
	t.Helper()
	r, err := manifest.RenderChart(chartDir, manifest.Release{}, files, values)
	if err != nil {
		t.Fatalf("RenderChart(%v, %v): %v", files, values, err)
	}
	return r
}

func chartManifests(t *testing.T, r manifest.Rendered) manifest.Manifests {
	t.Helper()
	m, err := r.Manifests()
	if err != nil {
		t.Fatalf("decode the rendered chart: %v", err)
	}
	return m
}

// TestK8sIsTheChart: k8s/ is the chart rendered with its default values
// (make k8s), file for file, and holds nothing else.
func TestK8sIsTheChart(t *testing.T) {
	r, err := manifest.RenderChart(chartDir, manifest.K8sRelease, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	want, err := manifest.K8sFiles(r)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(k8sDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if _, ok := want[e.Name()]; !ok {
			t.Errorf("k8s/%s is not rendered from the chart: remove it, or add it to the chart; then run make k8s", e.Name())
		}
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		got, err := os.ReadFile(filepath.Join(k8sDir, name))
		if err != nil {
			t.Errorf("k8s/%s: %v: run make k8s", name, err)
			continue
		}
		if !bytes.Equal(got, want[name]) {
			t.Errorf("k8s/%s differs from the chart rendered with its defaults: edit charts/lameduck, not k8s/, then run make k8s\n%s",
				name, diff.Diff(string(want[name]), string(got)))
		}
	}
}

// TestChartDefaults: what `helm install lameduck charts/lameduck` installs
// passes every check, and is k8s/ but for what only Helm adds: the chart
// label, managed-by Helm, and the configuration's checksum on the pod
// template (which rolls the pods on helm upgrade).
func TestChartDefaults(t *testing.T) {
	got := chartManifests(t, renderChart(t, nil, nil))
	if err := validate(t, got); err != nil {
		t.Errorf("validate(the chart with its defaults):\n%v", err)
	}
	if sum := got.Deployment.Spec.Template.Annotations["checksum/config"]; len(sum) != 64 {
		t.Errorf("pod template annotation checksum/config = %q; want the ConfigMap's sha256, so helm upgrade rolls the pods", sum)
	}
	delete(got.Deployment.Spec.Template.Annotations, "checksum/config")
	for _, meta := range []*metav1.ObjectMeta{&got.Deployment.ObjectMeta, &got.Deployment.Spec.Template.ObjectMeta,
		&got.ConfigMap.ObjectMeta, &got.Service.ObjectMeta, &got.AdminService.ObjectMeta, &got.PDB.ObjectMeta} {
		if meta.Labels["app.kubernetes.io/managed-by"] != "Helm" || !strings.HasPrefix(meta.Labels["helm.sh/chart"], "lameduck-") {
			t.Errorf("%s labels %v: want managed-by Helm and helm.sh/chart", meta.Name, meta.Labels)
		}
		delete(meta.Labels, "helm.sh/chart")
		meta.Labels["app.kubernetes.io/managed-by"] = "kubectl"
	}
	if want := loadK8s(t); !equality.Semantic.DeepEqual(got, want) {
		t.Errorf("the chart with its defaults differs from k8s/ beyond Helm's labels and checksum:\n%s", diff.Diff(want, got))
	}
}

// TestChartValuesFiles renders the chart with each values file the project
// ships (one per optional feature in charts/lameduck/ci/, and the kind e2e's)
// and runs every check on the result, then what each feature promises.
func TestChartValuesFiles(t *testing.T) {
	features := map[string]func(*testing.T, manifest.Manifests){
		"ci/servicemonitor-values.yaml": func(t *testing.T, m manifest.Manifests) {
			sm := m.ServiceMonitor
			if sm == nil || m.AdminService == nil {
				t.Fatal("no ServiceMonitor, or no admin Service for it")
			}
			if !selects(t, &sm.Spec.Selector, m.AdminService.Labels) || selects(t, &sm.Spec.Selector, m.Service.Labels) {
				t.Errorf("ServiceMonitor selector %v: want the admin Service %v and not the app's", sm.Spec.Selector, m.AdminService.Labels)
			}
			checkEndpoint(t, "ServiceMonitor", sm.Spec.Endpoints[0].Port, sm.Spec.Endpoints[0].Path)
			if sm.Labels["release"] != "prometheus" {
				t.Errorf("ServiceMonitor labels %v: want metrics.serviceMonitor.labels", sm.Labels)
			}
			if _, ok := m.Deployment.Spec.Template.Annotations["prometheus.io/scrape"]; ok {
				t.Errorf("prometheus.io/scrape annotation with metrics.podAnnotations false")
			}
		},
		"ci/podmonitor-values.yaml": func(t *testing.T, m manifest.Manifests) {
			pm := m.PodMonitor
			if pm == nil {
				t.Fatal("no PodMonitor")
			}
			if m.AdminService != nil {
				t.Error("an admin Service with adminService.enabled false")
			}
			if !selects(t, &pm.Spec.Selector, m.Deployment.Spec.Template.Labels) {
				t.Errorf("PodMonitor selector %v does not select the pods", pm.Spec.Selector)
			}
			checkEndpoint(t, "PodMonitor", *pm.Spec.PodMetricsEndpoints[0].Port, pm.Spec.PodMetricsEndpoints[0].Path)
		},
		"ci/autoscaling-values.yaml": func(t *testing.T, m manifest.Manifests) {
			if m.HPA == nil || m.Deployment.Spec.Replicas != nil {
				t.Fatalf("HPA %v, replicas %v: want an autoscaler owning the count", m.HPA, m.Deployment.Spec.Replicas)
			}
			if *m.HPA.Spec.MinReplicas != 2 || m.HPA.Spec.MaxReplicas != 10 {
				t.Errorf("HPA scales %d to %d; want 2 to 10", *m.HPA.Spec.MinReplicas, m.HPA.Spec.MaxReplicas)
			}
		},
		"ci/networkpolicy-values.yaml": func(t *testing.T, m manifest.Manifests) {
			np := m.NetworkPolicy
			if np == nil {
				t.Fatal("no NetworkPolicy")
			}
			if !selects(t, &np.Spec.PodSelector, m.Deployment.Spec.Template.Labels) {
				t.Errorf("NetworkPolicy selector %v does not select the pods", np.Spec.PodSelector)
			}
			var ports []string
			for _, rule := range np.Spec.Ingress {
				if len(rule.From) == 0 {
					t.Errorf("an ingress rule from anywhere; want only the values' peers")
				}
				for _, p := range rule.Ports {
					ports = append(ports, p.Port.String())
				}
			}
			if !slices.Equal(ports, []string{manifest.AppPort, manifest.AdminPort}) {
				t.Errorf("NetworkPolicy admits ports %v; want the container ports %q and %q by name", ports, manifest.AppPort, manifest.AdminPort)
			}
			if len(np.Spec.Egress) != 0 || !slices.Contains(np.Spec.PolicyTypes, "Egress") {
				t.Errorf("NetworkPolicy egress %v, types %v: want none allowed", np.Spec.Egress, np.Spec.PolicyTypes)
			}
		},
		"ci/production-values.yaml": func(t *testing.T, m manifest.Manifests) {
			if img := m.Deployment.Spec.Template.Spec.Containers[0].Image; img != "registry.example.com/lameduck:1.4.0" {
				t.Errorf("image %s; want registry.example.com/lameduck:1.4.0", img)
			}
			for _, l := range []map[string]string{m.Deployment.Labels, m.Deployment.Spec.Template.Labels, m.ConfigMap.Labels} {
				if v := l["app.kubernetes.io/version"]; v != "1.4.0" {
					t.Errorf("app.kubernetes.io/version %q; want the image tag 1.4.0", v)
				}
			}
			if g := *m.Deployment.Spec.Template.Spec.TerminationGracePeriodSeconds; g != 35 || m.ConfigMap.Data["LAMEDUCK_GRACE_PERIOD"] != "35s" {
				t.Errorf("grace period %d, LAMEDUCK_GRACE_PERIOD %s; want 35 and 35s", g, m.ConfigMap.Data["LAMEDUCK_GRACE_PERIOD"])
			}
		},
		"ci/nats-values.yaml": func(t *testing.T, m manifest.Manifests) {
			checkNATS(t, m, true)
		},
		"../../e2e/kind/values-jetstream.yaml": func(t *testing.T, m manifest.Manifests) {
			checkNATS(t, m, false)
			if m.Service.Spec.Type != corev1.ServiceTypeNodePort || m.Service.Spec.Ports[0].NodePort != 30080 {
				t.Errorf("Service %s %v; want NodePort 30080", m.Service.Spec.Type, m.Service.Spec.Ports)
			}
		},
		"../../e2e/kind/values.yaml": func(t *testing.T, m manifest.Manifests) {
			if m.Service.Spec.Type != corev1.ServiceTypeNodePort || m.Service.Spec.Ports[0].NodePort != 30080 {
				t.Errorf("Service %s %v; want NodePort 30080", m.Service.Spec.Type, m.Service.Spec.Ports)
			}
		},
	}
	shipped, err := filepath.Glob(filepath.Join(chartDir, "ci", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range shipped {
		if rel, _ := filepath.Rel(chartDir, f); features[rel] == nil {
			t.Errorf("%s has no entry in the table", f)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(features)) {
		t.Run(name, func(t *testing.T) {
			m := chartManifests(t, renderChart(t, []string{filepath.Join(chartDir, name)}, nil))
			if err := validate(t, m); err != nil {
				t.Errorf("validate(the chart with %s):\n%v", name, err)
			}
			features[name](t, m)
		})
	}
}

// checkNATS: nats.enabled runs three NATS servers, on claims or on
// emptyDirs, and points lameduck's queue at their client Service with the
// stream on all three.
func checkNATS(t *testing.T, m manifest.Manifests, persistent bool) {
	t.Helper()
	n := m.NATS
	if n.StatefulSet == nil || n.ConfigMap == nil || n.Service == nil || n.Headless == nil || n.PDB == nil {
		t.Fatalf("NATS objects %+v; want a StatefulSet, its ConfigMap, client and headless Services and a budget", n)
	}
	if r := n.StatefulSet.Spec.Replicas; r == nil || *r != 3 {
		t.Errorf("NATS replicas %v; want 3", r)
	}
	if got, want := m.ConfigMap.Data["LAMEDUCK_QUEUE_URL"], "nats://"+n.Service.Name+":4222"; got != want {
		t.Errorf("LAMEDUCK_QUEUE_URL = %q; want the NATS client Service, %q", got, want)
	}
	if got := m.ConfigMap.Data["LAMEDUCK_QUEUE_REPLICAS"]; got != "3" {
		t.Errorf("LAMEDUCK_QUEUE_REPLICAS = %q; want 3", got)
	}
	if got := len(n.StatefulSet.Spec.VolumeClaimTemplates) > 0; got != persistent {
		t.Errorf("NATS volumeClaimTemplates %v; want claims: %v", n.StatefulSet.Spec.VolumeClaimTemplates, persistent)
	}
	conf := n.ConfigMap.Data["nats.conf"]
	for i := range 3 {
		route := fmt.Sprintf("nats://%s-%d.%s.default.svc.cluster.local:6222", n.StatefulSet.Name, i, n.Headless.Name)
		if !strings.Contains(conf, route) {
			t.Errorf("nats.conf has no route %s:\n%s", route, conf)
		}
	}
}

func selects(t *testing.T, s *metav1.LabelSelector, set map[string]string) bool {
	t.Helper()
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		t.Fatal(err)
	}
	return !sel.Empty() && sel.Matches(labels.Set(set))
}

func checkEndpoint(t *testing.T, kind, port, path string) {
	t.Helper()
	if port != manifest.AdminPort || path != "/metrics" {
		t.Errorf("%s scrapes port %q path %q; want %q /metrics", kind, port, path, manifest.AdminPort)
	}
}

// TestChartGrace: terminationGracePeriodSeconds is derived from the
// shutdown budget when unset, kept when set and large enough, and
// LAMEDUCK_GRACE_PERIOD always says the same.
func TestChartGrace(t *testing.T) {
	tests := []struct {
		name   string
		values string // YAML
		want   int64
	}{
		{"defaults: 8s + 15s + 5s + 1s", ``, 29},
		{"a longer drain", "config: {drainTimeout: 10s}", 34},
		{"fractions round up: 2.5s + 1m + 700ms + 1s", "config: {prestopDelay: 2.5s, shutdownTimeout: 1m, drainTimeout: 700ms}", 65},
		{"compound durations: 1m30s + 15s + 5s + 1s", "config: {prestopDelay: 1m30s}", 111},
		{"zero phases", "config: {prestopDelay: \"0\", shutdownTimeout: 0s, drainTimeout: 0s}", 1},
		{"set, with room to spare", "terminationGracePeriodSeconds: 60", 60},
		{"set, exactly the budget", "terminationGracePeriodSeconds: 29", 29},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := chartManifests(t, renderChart(t, nil, values(t, tt.values)))
			got := m.Deployment.Spec.Template.Spec.TerminationGracePeriodSeconds
			if got == nil {
				t.Fatalf("terminationGracePeriodSeconds unset; want %d", tt.want)
			}
			if *got != tt.want {
				t.Fatalf("terminationGracePeriodSeconds = %d; want %d", *got, tt.want)
			}
			if g, want := m.ConfigMap.Data["LAMEDUCK_GRACE_PERIOD"], fmt.Sprintf("%ds", tt.want); g != want {
				t.Errorf("LAMEDUCK_GRACE_PERIOD = %s; want %s, the pod's", g, want)
			}
		})
	}
}

// TestChartRefuses: values the program or the pod could not live with fail
// the render (helm install and helm template alike), naming the values.
func TestChartRefuses(t *testing.T) {
	tests := []struct {
		name   string
		values string
		want   string
	}{
		{"grace period shorter than the budget", "terminationGracePeriodSeconds: 20",
			"terminationGracePeriodSeconds 20 is too short: config.prestopDelay 8s + config.shutdownTimeout 15s + config.drainTimeout 5s + 1s = 29s do not fit; set it to 29 or more"},
		{"a longer drain without a longer grace period", "{config: {drainTimeout: 10s}, terminationGracePeriodSeconds: 30}",
			"config.drainTimeout 10s + 1s = 34s do not fit"},
		{"a value of the wrong type", "config: {workers: four}", "/config/workers"},
		{"a duration Go cannot parse", "config: {prestopDelay: 8 seconds}", "/config/prestopDelay"},
		{"a setting the program does not read", "config: {port: 8080}", "additional properties 'port' not allowed"},
		{"a value outside the chart", "replica: 3", "additional properties 'replica' not allowed"},
		{"no surge", "maxSurge: 0", "/maxSurge"},
		{"a listener with no fixed port", "config: {httpAddr: \"localhost\"}", "/config/httpAddr"},
		{"a stream on more servers than NATS runs", "{nats: {enabled: true, replicas: 1}, config: {queueReplicas: 3}}",
			"config.queueReplicas 3 is more than nats.replicas 1"},
		{"a NATS grace period shorter than its lame duck mode", "{nats: {enabled: true, terminationGracePeriodSeconds: 30}}",
			"nats.terminationGracePeriodSeconds 30 is too short"},
		{"a ServiceMonitor with no admin Service", "{adminService: {enabled: false}, metrics: {serviceMonitor: {enabled: true}}}",
			"metrics.serviceMonitor.enabled needs adminService.enabled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := manifest.RenderChart(chartDir, manifest.Release{}, nil, values(t, tt.values))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("RenderChart with %s = %v; want an error containing %q", tt.values, err, tt.want)
			}
		})
	}
}

// TestChartValuesAreTheVariables: values.yaml's config has one value per
// variable the program reads (but LAMEDUCK_GRACE_PERIOD, which is
// terminationGracePeriodSeconds), and values.schema.json types each and
// requires each.
func TestChartValuesAreTheVariables(t *testing.T) {
	var vals struct {
		Config map[string]any `json:"config"`
	}
	if err := yaml.Unmarshal(must(os.ReadFile(filepath.Join(chartDir, "values.yaml"))), &vals); err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Properties struct {
			Config struct {
				Properties map[string]any `json:"properties"`
				Required   []string       `json:"required"`
			} `json:"config"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(must(os.ReadFile(filepath.Join(chartDir, "values.schema.json"))), &schema); err != nil {
		t.Fatal(err)
	}
	vars, err := manifest.Variables()
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, v := range vars {
		if v != "LAMEDUCK_GRACE_PERIOD" {
			want = append(want, v)
		}
	}
	slices.Sort(want)
	env := func(keys []string) []string {
		var out []string
		for _, k := range keys {
			var b strings.Builder
			for i, r := range k {
				if i > 0 && r >= 'A' && r <= 'Z' && !(k[i-1] >= 'A' && k[i-1] <= 'Z') {
					b.WriteByte('_')
				}
				b.WriteRune(r)
			}
			out = append(out, "LAMEDUCK_"+strings.ToUpper(b.String()))
		}
		slices.Sort(out)
		return out
	}
	for what, keys := range map[string][]string{
		"values.yaml config":                   slices.Collect(maps.Keys(vals.Config)),
		"values.schema.json config.properties": slices.Collect(maps.Keys(schema.Properties.Config.Properties)),
		"values.schema.json config.required":   schema.Properties.Config.Required,
	} {
		if got := env(keys); !slices.Equal(got, want) {
			t.Errorf("%s names %v; want the variables the program reads but LAMEDUCK_GRACE_PERIOD, %v", what, got, want)
		}
	}
}

// TestChartTestHook: helm test's pod runs the release's own image (nothing
// else to pull) as lameduck -check against the app Service's /hello and the
// admin Service's /ready, restricted like the app's pods, and is selected by
// none of the release's selectors.
func TestChartTestHook(t *testing.T) {
	r := renderChart(t, nil, nil)
	m := chartManifests(t, r)
	if len(r.Hooks) != 1 {
		t.Fatalf("hooks %v; want one, the test pod", slices.Collect(maps.Keys(r.Hooks)))
	}
	var pod corev1.Pod
	for _, y := range r.Hooks {
		if err := yaml.UnmarshalStrict([]byte(y), &pod); err != nil {
			t.Fatal(err)
		}
	}
	if pod.Annotations["helm.sh/hook"] != "test" || pod.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("hook %q, restartPolicy %q; want test and Never", pod.Annotations["helm.sh/hook"], pod.Spec.RestartPolicy)
	}
	app := m.Deployment.Spec.Template.Spec.Containers[0]
	want := [][]string{
		{"-check", "http://lameduck.default.svc:80/hello"},
		{"-check", "http://lameduck-admin.default.svc:8086/ready"},
	}
	var got [][]string
	for _, c := range pod.Spec.Containers {
		got = append(got, c.Args)
		if c.Image != app.Image || c.ImagePullPolicy != app.ImagePullPolicy || len(c.Command) != 0 {
			t.Errorf("container %s: image %s (%s), command %v; want the app's %s (%s) and its entrypoint",
				c.Name, c.Image, c.ImagePullPolicy, c.Command, app.Image, app.ImagePullPolicy)
		}
		if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("container %s: securityContext %v; want the app's restricted one", c.Name, sc)
		}
	}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("test containers run %q; want %q", got, want)
	}
	if pod.Spec.SecurityContext == nil || !equality.Semantic.DeepEqual(pod.Spec.SecurityContext, m.Deployment.Spec.Template.Spec.SecurityContext) {
		t.Errorf("test pod securityContext %v; want the app's", pod.Spec.SecurityContext)
	}
	for what, s := range map[string]*metav1.LabelSelector{"Deployment": m.Deployment.Spec.Selector, "PodDisruptionBudget": m.PDB.Spec.Selector,
		"Service": {MatchLabels: m.Service.Spec.Selector}} {
		if selects(t, s, pod.Labels) {
			t.Errorf("the %s's selector selects the test pod (labels %v)", what, pod.Labels)
		}
	}
}

// values parses YAML into chart values.
func values(t *testing.T, y string) map[string]any {
	t.Helper()
	v := map[string]any{}
	if err := yaml.Unmarshal([]byte(y), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
