package manifest

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/lameduck/lameduck/internal/config"
)

// What the manifests must say. The e2e tests depend on Replicas and NodePort.
const (
	Replicas      = 3
	NodePort      = 30080
	AppPort       = "http"  // the container port serving /hello and /jobs
	AdminPort     = "admin" // the container port serving /live, /ready, /metrics, /version
	NonRootID     = 65532   // the image's numeric USER and group
	appName       = "lameduck"
	nameLabel     = "app.kubernetes.io/name"
	instanceLabel = "app.kubernetes.io/instance"
)

// recommendedLabels are Kubernetes' recommended labels; every object and the
// pod template carries all of them.
var recommendedLabels = []string{
	nameLabel, instanceLabel, "app.kubernetes.io/version",
	"app.kubernetes.io/component", "app.kubernetes.io/part-of", "app.kubernetes.io/managed-by",
}

// Variables lists the environment variables lameduck reads, in the order
// config.Config declares them: the same list `lameduck -h` prints.
func Variables() ([]string, error) {
	var b strings.Builder
	if err := envconfig.Usagef(config.Prefix, &config.Config{}, &b, "{{range .}}{{.Key}}\n{{end}}"); err != nil {
		return nil, fmt.Errorf("list variables: %w", err)
	}
	return strings.Fields(b.String()), nil
}

// Check reports every way m falls short of a deployment that loses nothing
// during a rolling update, joined into one error; nil means none. It checks
// what each object says, not what a cluster would default: a setting that
// matters must be spelled out.
//
// Check does not run config validation on the ConfigMap's values, because
// config.Load reads the process environment; the tests do that with t.Setenv.
func Check(m Manifests) error {
	c := &checker{m: m}
	c.objects()
	c.configMap()
	c.deployment()
	c.service()
	c.pdb()
	return errors.Join(c.errs...)
}

// checker collects problems. Each check skips what an earlier problem (an
// object missing, say) makes meaningless.
type checker struct {
	m    Manifests
	errs []error
}

func (c *checker) fail(format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf(format, args...))
}

// objects checks that every object is there, in one namespace, labelled.
func (c *checker) objects() {
	type object struct {
		kind string
		meta *metav1.ObjectMeta
	}
	var objs []object
	if d := c.m.Deployment; d != nil {
		objs = append(objs, object{"Deployment", &d.ObjectMeta})
	} else {
		c.fail("no Deployment")
	}
	if cm := c.m.ConfigMap; cm != nil {
		objs = append(objs, object{"ConfigMap", &cm.ObjectMeta})
	} else {
		c.fail("no ConfigMap")
	}
	if s := c.m.Service; s != nil {
		objs = append(objs, object{"Service", &s.ObjectMeta})
	} else {
		c.fail("no Service")
	}
	if p := c.m.PDB; p != nil {
		objs = append(objs, object{"PodDisruptionBudget", &p.ObjectMeta})
	} else {
		c.fail("no PodDisruptionBudget")
	}
	for _, o := range objs {
		c.labels(o.kind+" "+o.meta.Name, o.meta.Labels)
		if o.meta.Namespace != objs[0].meta.Namespace {
			c.fail("%s %s: namespace %q differs from %s's %q", o.kind, o.meta.Name, o.meta.Namespace, objs[0].kind, objs[0].meta.Namespace)
		}
	}
}

func (c *checker) labels(what string, l map[string]string) {
	for _, k := range recommendedLabels {
		if l[k] == "" {
			c.fail("%s: label %s missing", what, k)
		}
	}
	if v, ok := l[nameLabel]; ok && v != appName {
		c.fail("%s: label %s is %q; want %q", what, nameLabel, v, appName)
	}
}

// configMap checks that the ConfigMap sets exactly the variables the program
// reads, and that the shutdown budget fits in the grace period it declares.
func (c *checker) configMap() {
	cm := c.m.ConfigMap
	if cm == nil {
		return
	}
	what := "ConfigMap " + cm.Name
	vars, err := Variables()
	if err != nil {
		c.fail("%s: %w", what, err)
		return
	}
	for _, v := range vars {
		if _, ok := cm.Data[v]; !ok {
			c.fail("%s: %s missing: the program reads it, so set it here rather than rely on the default", what, v)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(cm.Data)) {
		if !slices.Contains(vars, k) {
			c.fail("%s: sets %s, which the program does not read", what, k)
		}
	}
	if len(cm.BinaryData) > 0 {
		c.fail("%s: binaryData is not for environment variables", what)
	}
}

// duration parses the ConfigMap's value of LAMEDUCK_name.
func (c *checker) duration(name string) (time.Duration, bool) {
	key := config.Prefix + "_" + name
	v, ok := c.m.ConfigMap.Data[key]
	if !ok {
		return 0, false // reported by configMap
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		c.fail("ConfigMap %s: %s: %w", c.m.ConfigMap.Name, key, err)
		return 0, false
	}
	return d, true
}

// port parses the port of the ConfigMap's address LAMEDUCK_name.
func (c *checker) port(name string) (int32, bool) {
	key := config.Prefix + "_" + name
	v, ok := c.m.ConfigMap.Data[key]
	if !ok {
		return 0, false
	}
	_, p, err := net.SplitHostPort(v)
	if err != nil {
		c.fail("ConfigMap %s: %s: %w", c.m.ConfigMap.Name, key, err)
		return 0, false
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		c.fail("ConfigMap %s: %s: %q needs a fixed port for the container to declare", c.m.ConfigMap.Name, key, v)
		return 0, false
	}
	return int32(n), true
}

func (c *checker) deployment() {
	d := c.m.Deployment
	if d == nil {
		return
	}
	what := "Deployment " + d.Name
	if d.Spec.Replicas == nil || *d.Spec.Replicas != Replicas {
		c.fail("%s: replicas must be %d", what, Replicas)
	}
	c.rollout(what, d.Spec.Strategy)
	c.selector(what, d.Spec.Selector)

	pod := &d.Spec.Template
	c.labels(what+": pod template", pod.Labels)
	if sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector); err == nil && !sel.Matches(labels.Set(pod.Labels)) {
		c.fail("%s: selector %s does not match the pod template's labels", what, sel)
	}
	spec := &pod.Spec
	if spec.EnableServiceLinks == nil || *spec.EnableServiceLinks {
		c.fail("%s: enableServiceLinks must be false: the Service %q would inject %s_* variables", what, appName, config.Prefix)
	}
	c.podSecurity(what, spec.SecurityContext)
	if len(spec.Containers) != 1 {
		c.fail("%s: want one container, got %d", what, len(spec.Containers))
		return
	}
	ctr := &spec.Containers[0]
	what += ": container " + ctr.Name
	c.grace(what, spec.TerminationGracePeriodSeconds, ctr.Lifecycle)
	c.env(what, ctr)
	ports := c.containerPorts(what, ctr.Ports)
	c.probe(what, "readinessProbe", ctr.ReadinessProbe, "/ready", ports, func(p *corev1.Probe) {
		if period := orDefault(p.PeriodSeconds, 10); period > 2 {
			c.fail("%s: readinessProbe periodSeconds is %d; want at most 2, so a stopping pod leaves the endpoints within its preStop delay", what, period)
		}
		if f := orDefault(p.FailureThreshold, 3); f != 1 {
			c.fail("%s: readinessProbe failureThreshold is %d; want 1", what, f)
		}
	})
	c.probe(what, "livenessProbe", ctr.LivenessProbe, "/live", ports, func(p *corev1.Probe) {
		if w := window(p); w < 30*time.Second {
			c.fail("%s: livenessProbe gives up after %s; want at least 30s, as a restart would cut a drain short", what, w)
		}
	})
	c.probe(what, "startupProbe", ctr.StartupProbe, "/live", ports, func(p *corev1.Probe) {
		if w := window(p); w < 10*time.Second {
			c.fail("%s: startupProbe gives up after %s; want at least 10s", what, w)
		}
	})
	c.resources(what, ctr.Resources)
	c.containerSecurity(what, ctr.SecurityContext)
	if ctr.Image == "" {
		c.fail("%s: no image", what)
	}
}

// rollout checks that a new pod is ready before an old one stops.
func (c *checker) rollout(what string, s appsv1.DeploymentStrategy) {
	if s.Type != appsv1.RollingUpdateDeploymentStrategyType {
		c.fail("%s: strategy type is %q; want %s", what, s.Type, appsv1.RollingUpdateDeploymentStrategyType)
	}
	ru := s.RollingUpdate
	if ru == nil || ru.MaxUnavailable == nil || ru.MaxSurge == nil {
		c.fail("%s: set rollingUpdate maxUnavailable 0 and maxSurge 1 explicitly", what)
		return
	}
	// Rounded as the Deployment controller rounds them.
	if n, err := intstr.GetScaledValueFromIntOrPercent(ru.MaxUnavailable, Replicas, false); err != nil || n != 0 {
		c.fail("%s: rollingUpdate maxUnavailable is %s; want 0, so capacity never drops during a rollout", what, ru.MaxUnavailable)
	}
	if n, err := intstr.GetScaledValueFromIntOrPercent(ru.MaxSurge, Replicas, true); err != nil || n != 1 {
		c.fail("%s: rollingUpdate maxSurge is %s; want 1", what, ru.MaxSurge)
	}
}

// selector checks a workload selector: it must use the name and instance
// labels only, since a selector is immutable and a version in it would break
// the next update.
func (c *checker) selector(what string, s *metav1.LabelSelector) {
	want := []string{instanceLabel, nameLabel}
	if s == nil || len(s.MatchExpressions) > 0 || !slices.Equal(slices.Sorted(maps.Keys(s.MatchLabels)), want) {
		c.fail("%s: selector must be matchLabels on %s and %s only", what, nameLabel, instanceLabel)
	}
}

// grace checks that the shutdown budget the ConfigMap sets fits in the pod's
// terminationGracePeriodSeconds, and that LAMEDUCK_GRACE_PERIOD tells the
// program the truth about it.
func (c *checker) grace(what string, seconds *int64, hooks *corev1.Lifecycle) {
	if seconds == nil {
		c.fail("%s: set terminationGracePeriodSeconds explicitly, equal to %s_GRACE_PERIOD", what, config.Prefix)
		return
	}
	grace := time.Duration(*seconds) * time.Second
	var hookSleep time.Duration
	if hooks != nil && hooks.PreStop != nil {
		pre := hooks.PreStop
		if pre.Exec != nil {
			c.fail("%s: preStop exec hook cannot run: the image is FROM scratch, with no shell or sleep; the program waits %s_PRESTOP_DELAY itself", what, config.Prefix)
		}
		if pre.Sleep != nil {
			hookSleep = time.Duration(pre.Sleep.Seconds) * time.Second // SIGTERM comes after it
		}
	}
	if c.m.ConfigMap == nil {
		return
	}
	declared, ok := c.duration("GRACE_PERIOD")
	if ok && declared != grace {
		c.fail("%s: terminationGracePeriodSeconds is %s but %s_GRACE_PERIOD is %s; they must be equal", what, grace, config.Prefix, declared)
	}
	prestop, ok1 := c.duration("PRESTOP_DELAY")
	shutdown, ok2 := c.duration("SHUTDOWN_TIMEOUT")
	drain, ok3 := c.duration("DRAIN_TIMEOUT")
	if !ok1 || !ok2 || !ok3 {
		return
	}
	if need := hookSleep + prestop + shutdown + drain + config.GraceSpare; need > grace {
		c.fail("%s: terminationGracePeriodSeconds %s is too short: preStop sleep %s + %s_PRESTOP_DELAY %s + SHUTDOWN_TIMEOUT %s + DRAIN_TIMEOUT %s + %s spare = %s do not fit",
			what, grace, hookSleep, config.Prefix, prestop, shutdown, drain, config.GraceSpare, need)
	}
}

// env checks that the configuration comes from the ConfigMap alone.
func (c *checker) env(what string, ctr *corev1.Container) {
	if c.m.ConfigMap != nil {
		found := false
		for _, src := range ctr.EnvFrom {
			if ref := src.ConfigMapRef; ref != nil && ref.Name == c.m.ConfigMap.Name && src.Prefix == "" {
				found = true
				if ref.Optional != nil && *ref.Optional {
					c.fail("%s: envFrom ConfigMap %s must not be optional", what, ref.Name)
				}
			}
		}
		if !found {
			c.fail("%s: envFrom must reference ConfigMap %s", what, c.m.ConfigMap.Name)
		}
	}
	for _, e := range ctr.Env {
		if strings.HasPrefix(e.Name, config.Prefix+"_") {
			c.fail("%s: env sets %s, overriding the ConfigMap; set it there", what, e.Name)
		}
	}
}

// containerPorts checks the named ports against the addresses the program
// listens on, and returns the container's ports by name.
func (c *checker) containerPorts(what string, ports []corev1.ContainerPort) map[string]int32 {
	byName := make(map[string]int32)
	for _, p := range ports {
		if p.Name != "" {
			byName[p.Name] = p.ContainerPort
		}
	}
	for _, want := range []struct{ name, addr string }{{AppPort, "HTTP_ADDR"}, {AdminPort, "ADMIN_ADDR"}} {
		got, ok := byName[want.name]
		if !ok {
			c.fail("%s: no container port named %q", what, want.name)
			continue
		}
		if c.m.ConfigMap == nil {
			continue
		}
		if listen, ok := c.port(want.addr); ok && listen != got {
			c.fail("%s: container port %q is %d but %s_%s listens on %d", what, want.name, got, config.Prefix, want.addr, listen)
		}
	}
	return byName
}

// probe checks that a probe is an HTTP GET of path on the named admin port,
// then runs more checks on it.
func (c *checker) probe(what, kind string, p *corev1.Probe, path string, ports map[string]int32, more func(*corev1.Probe)) {
	if p == nil {
		c.fail("%s: no %s", what, kind)
		return
	}
	g := p.HTTPGet
	if g == nil {
		c.fail("%s: %s must be an httpGet of %s", what, kind, path)
		return
	}
	if g.Path != path {
		c.fail("%s: %s path is %q; want %q", what, kind, g.Path, path)
	}
	switch {
	case g.Port.Type != intstr.String:
		c.fail("%s: %s port %s must name a container port (%q)", what, kind, g.Port.String(), AdminPort)
	case !hasKey(ports, g.Port.StrVal):
		c.fail("%s: %s port %q is not a container port", what, kind, g.Port.StrVal)
	case g.Port.StrVal != AdminPort:
		c.fail("%s: %s port is %q; want %q", what, kind, g.Port.StrVal, AdminPort)
	}
	more(p)
}

func (c *checker) resources(what string, r corev1.ResourceRequirements) {
	for _, want := range []struct {
		list  corev1.ResourceList
		field string
		name  corev1.ResourceName
	}{
		{r.Requests, "requests", corev1.ResourceCPU},
		{r.Requests, "requests", corev1.ResourceMemory},
		{r.Limits, "limits", corev1.ResourceCPU},
		{r.Limits, "limits", corev1.ResourceMemory},
	} {
		if q, ok := want.list[want.name]; !ok || q.Sign() <= 0 {
			c.fail("%s: resources %s %s must be set", what, want.field, want.name)
		}
	}
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, ok1 := r.Requests[name]
		lim, ok2 := r.Limits[name]
		if ok1 && ok2 && lim.Cmp(req) < 0 {
			c.fail("%s: resources limits %s %s is below requests %s", what, name, lim.String(), req.String())
		}
	}
}

func (c *checker) podSecurity(what string, sc *corev1.PodSecurityContext) {
	if sc == nil {
		c.fail("%s: no pod securityContext", what)
		return
	}
	if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		c.fail("%s: securityContext runAsNonRoot must be true", what)
	}
	if sc.RunAsUser == nil || *sc.RunAsUser != NonRootID {
		c.fail("%s: securityContext runAsUser must be %d", what, NonRootID)
	}
	if sc.RunAsGroup == nil || *sc.RunAsGroup != NonRootID {
		c.fail("%s: securityContext runAsGroup must be %d", what, NonRootID)
	}
	if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		c.fail("%s: securityContext seccompProfile must be %s", what, corev1.SeccompProfileTypeRuntimeDefault)
	}
}

func (c *checker) containerSecurity(what string, sc *corev1.SecurityContext) {
	if sc == nil {
		c.fail("%s: no securityContext", what)
		return
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		c.fail("%s: securityContext readOnlyRootFilesystem must be true", what)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		c.fail("%s: securityContext allowPrivilegeEscalation must be false", what)
	}
	if sc.Privileged != nil && *sc.Privileged {
		c.fail("%s: securityContext privileged must not be true", what)
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		c.fail("%s: securityContext capabilities must drop ALL", what)
	} else if len(sc.Capabilities.Add) > 0 {
		c.fail("%s: securityContext capabilities add %v; lameduck needs none", what, sc.Capabilities.Add)
	}
}

// service checks that the Service routes to the app port of lameduck's pods,
// and to nothing else.
func (c *checker) service() {
	s := c.m.Service
	if s == nil {
		return
	}
	what := "Service " + s.Name
	if s.Spec.Type != corev1.ServiceTypeNodePort {
		c.fail("%s: type is %q; want %s (the kind e2e reaches it on node port %d)", what, s.Spec.Type, corev1.ServiceTypeNodePort, NodePort)
	}
	if len(s.Spec.Selector) == 0 {
		c.fail("%s: no selector", what)
	} else if d := c.m.Deployment; d != nil && !labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
		c.fail("%s: selector %v does not match the Deployment's pod labels", what, s.Spec.Selector)
	}
	if len(s.Spec.Ports) != 1 {
		c.fail("%s: want one port (the app port), got %d", what, len(s.Spec.Ports))
	}
	var ports map[string]int32
	if d := c.m.Deployment; d != nil && len(d.Spec.Template.Spec.Containers) == 1 {
		ports = make(map[string]int32)
		for _, p := range d.Spec.Template.Spec.Containers[0].Ports {
			ports[p.Name] = p.ContainerPort
		}
	}
	for _, p := range s.Spec.Ports {
		t := p.TargetPort
		switch {
		case t.Type != intstr.String:
			c.fail("%s: port %d: targetPort %s must name the container port %q", what, p.Port, t.String(), AppPort)
			if ports != nil && t.IntVal == ports[AdminPort] {
				c.fail("%s: port %d exposes the admin port", what, p.Port)
			}
		case t.StrVal == AdminPort:
			c.fail("%s: port %d exposes the admin port", what, p.Port)
		case t.StrVal != AppPort:
			c.fail("%s: port %d: targetPort is %q; want %q", what, p.Port, t.StrVal, AppPort)
		case ports != nil && !hasKey(ports, t.StrVal):
			c.fail("%s: port %d: targetPort %q is not a container port", what, p.Port, t.StrVal)
		default:
			if p.NodePort != NodePort {
				c.fail("%s: port %d: nodePort is %d; want %d (the kind e2e maps the host to it)", what, p.Port, p.NodePort, NodePort)
			}
		}
	}
}

// pdb checks that the budget selects lameduck's pods and lets a drain take
// one of them, never all.
func (c *checker) pdb() {
	p := c.m.PDB
	if p == nil {
		return
	}
	what := "PodDisruptionBudget " + p.Name
	sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
	switch {
	case err != nil:
		c.fail("%s: selector: %w", what, err)
	case sel.Empty():
		c.fail("%s: empty selector: it would select every pod in the namespace", what)
	case c.m.Deployment != nil && !sel.Matches(labels.Set(c.m.Deployment.Spec.Template.Labels)):
		c.fail("%s: selector %s does not match the Deployment's pod labels", what, sel)
	}
	var allowed int
	switch mu, ma := p.Spec.MaxUnavailable, p.Spec.MinAvailable; {
	case (mu == nil) == (ma == nil):
		c.fail("%s: set one of minAvailable and maxUnavailable", what)
		return
	case mu != nil:
		allowed, err = intstr.GetScaledValueFromIntOrPercent(mu, Replicas, true)
	default:
		var least int
		least, err = intstr.GetScaledValueFromIntOrPercent(ma, Replicas, true)
		allowed = Replicas - least
	}
	if err != nil {
		c.fail("%s: %w", what, err)
	} else if allowed < 1 || allowed >= Replicas {
		c.fail("%s: allows %d of %d pods disrupted at once; want at least 1 (or drains block) and fewer than %d", what, allowed, Replicas, Replicas)
	}
}

// orDefault returns v, or the API default d when v is unset.
func orDefault(v, d int32) int32 {
	if v == 0 {
		return d
	}
	return v
}

// window is how long a failing probe takes to give up.
func window(p *corev1.Probe) time.Duration {
	return time.Duration(orDefault(p.PeriodSeconds, 10)*orDefault(p.FailureThreshold, 3)) * time.Second
}

func hasKey[V any](m map[string]V, k string) bool {
	_, ok := m[k]
	return ok
}
