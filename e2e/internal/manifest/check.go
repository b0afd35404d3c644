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
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/lameduck/lameduck/internal/config"
)

// Names the manifests and the program share.
const (
	AppPort      = "http"  // the container port serving /hello and /jobs
	AdminPort    = "admin" // the container port serving /live, /ready, /metrics, /version
	versionLabel = "app.kubernetes.io/version"
)

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
// It requires a Deployment, a ConfigMap, a Service and a PodDisruptionBudget,
// and allows a HorizontalPodAutoscaler, an admin Service, a NetworkPolicy and
// prometheus-operator's monitors (what they scrape is the chart tests' concern:
// it does not touch a rollout), and the job queue's NATS servers (held to
// rules of their own, see nats). The replica count, the Service type
// and its node ports are the adopter's: Check only requires that the rollout
// strategy and the budget hold at every count the Deployment may run at (its
// replicas, or the autoscaler's minReplicas to maxReplicas).
//
// Check does not run config validation on the ConfigMap's values, because
// config.Load reads the process environment; the tests do that with t.Setenv.
func Check(m Manifests) error {
	c := &checker{m: m}
	c.objects()
	c.configMap()
	c.scale()
	c.deployment()
	c.service()
	c.pdb()
	c.nats()
	return errors.Join(c.errs...)
}

// checker collects problems. Each check skips what an earlier problem (an
// object missing, say) makes meaningless.
type checker struct {
	m    Manifests
	errs []error
	// fewest and most are the replica counts the Deployment may run at; 0
	// when a problem (reported) leaves them unknown. scaler names who sets
	// the count, for messages.
	fewest, most int
	scaler       string
}

func (c *checker) fail(format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf(format, args...))
}

// objects checks that every object lameduck needs is there, all in one
// namespace: envFrom, the Service, the budget and the autoscaler reach only
// their own namespace.
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
	if h := c.m.HPA; h != nil {
		objs = append(objs, object{"HorizontalPodAutoscaler", &h.ObjectMeta})
	}
	if s := c.m.AdminService; s != nil {
		objs = append(objs, object{"Service", &s.ObjectMeta})
	}
	if p := c.m.NetworkPolicy; p != nil {
		objs = append(objs, object{"NetworkPolicy", &p.ObjectMeta})
	}
	for _, o := range objs {
		if o.meta.Namespace != objs[0].meta.Namespace {
			c.fail("%s %s: namespace %q differs from %s's %q", o.kind, o.meta.Name, o.meta.Namespace, objs[0].kind, objs[0].meta.Namespace)
		}
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
	c.rollout(what, d.Spec.Strategy)
	c.selector(what, d.Spec.Selector, d.Spec.Template.Labels)

	spec := &d.Spec.Template.Spec
	if spec.EnableServiceLinks == nil || *spec.EnableServiceLinks {
		c.fail("%s: enableServiceLinks must be false: a Service named %q would inject %s_* variables", what, "lameduck", config.Prefix)
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

// scale finds the replica counts the Deployment may run at: its replicas, or
// the range of the HorizontalPodAutoscaler that scales it, which must then
// own the count alone.
func (c *checker) scale() {
	d, h := c.m.Deployment, c.m.HPA
	if h != nil {
		c.hpa(h)
	}
	if d == nil {
		return
	}
	what := "Deployment " + d.Name
	switch {
	case h != nil && d.Spec.Replicas != nil:
		c.fail("%s: replicas is set while HorizontalPodAutoscaler %s scales it: every apply would reset the count the autoscaler chose; remove replicas", what, h.Name)
	case h != nil:
		// c.hpa set the range, or reported why not.
	case d.Spec.Replicas == nil:
		c.fail("%s: set replicas, or add a HorizontalPodAutoscaler to scale it (unset, the API makes it 1)", what)
	case *d.Spec.Replicas < 1:
		c.fail("%s: replicas is %d; want at least 1, or nothing serves", what, *d.Spec.Replicas)
	default:
		c.fewest, c.most = int(*d.Spec.Replicas), int(*d.Spec.Replicas)
		c.scaler = "replicas"
	}
}

// hpa checks that the autoscaler scales lameduck's Deployment within a range
// that starts at one replica or more, and sets that range.
func (c *checker) hpa(h *autoscalingv2.HorizontalPodAutoscaler) {
	what := "HorizontalPodAutoscaler " + h.Name
	ok := true
	ref := h.Spec.ScaleTargetRef
	if d := c.m.Deployment; d != nil && (ref.Kind != "Deployment" || ref.APIVersion != "apps/v1" || ref.Name != d.Name) {
		c.fail("%s: scaleTargetRef is %s %s %q; want apps/v1 Deployment %q", what, ref.APIVersion, ref.Kind, ref.Name, d.Name)
		ok = false
	}
	fewest := int32(1) // the API's default
	if h.Spec.MinReplicas != nil {
		fewest = *h.Spec.MinReplicas
	}
	if fewest < 1 {
		c.fail("%s: minReplicas is %d; want at least 1, or nothing serves", what, fewest)
		ok = false
	}
	if h.Spec.MaxReplicas < fewest {
		c.fail("%s: maxReplicas %d is below minReplicas %d", what, h.Spec.MaxReplicas, fewest)
		ok = false
	}
	if ok {
		c.fewest, c.most = int(fewest), int(h.Spec.MaxReplicas)
		c.scaler = what
	}
}

// rollout checks that a new pod is ready before an old one stops, at every
// replica count the Deployment may run at.
func (c *checker) rollout(what string, s appsv1.DeploymentStrategy) {
	if s.Type != appsv1.RollingUpdateDeploymentStrategyType {
		c.fail("%s: strategy type is %q; want %s", what, s.Type, appsv1.RollingUpdateDeploymentStrategyType)
	}
	ru := s.RollingUpdate
	if ru == nil || ru.MaxUnavailable == nil || ru.MaxSurge == nil {
		c.fail("%s: set rollingUpdate maxUnavailable (0) and maxSurge (1 or more) explicitly", what)
		return
	}
	if c.most == 0 {
		return // the counts are unknown: reported
	}
	// Rounded as the Deployment controller rounds them: maxUnavailable down,
	// so it is largest at the most replicas; maxSurge up, so it is smallest
	// at the fewest.
	if n, err := intstr.GetScaledValueFromIntOrPercent(ru.MaxUnavailable, c.most, false); err != nil || n != 0 {
		c.fail("%s: rollingUpdate maxUnavailable is %s; want 0, so capacity never drops during a rollout", what, ru.MaxUnavailable)
	}
	if n, err := intstr.GetScaledValueFromIntOrPercent(ru.MaxSurge, c.fewest, true); err != nil || n < 1 {
		c.fail("%s: rollingUpdate maxSurge is %s; want 1 or more, so a new pod starts before an old one stops", what, ru.MaxSurge)
	}
}

// selector checks a workload selector: it must select the pod template, and
// not on the version label, since a selector is immutable and a version in it
// would break the next update.
func (c *checker) selector(what string, s *metav1.LabelSelector, podLabels map[string]string) {
	sel, err := metav1.LabelSelectorAsSelector(s)
	switch {
	case s == nil || err == nil && sel.Empty():
		c.fail("%s: no selector", what)
	case err != nil:
		c.fail("%s: selector: %w", what, err)
	case !sel.Matches(labels.Set(podLabels)):
		c.fail("%s: selector %s does not match the pod template's labels", what, sel)
	}
	if s == nil {
		return
	}
	uses := hasKey(s.MatchLabels, versionLabel)
	for _, e := range s.MatchExpressions {
		uses = uses || e.Key == versionLabel
	}
	if uses {
		c.fail("%s: selector must not use %s: a selector cannot change, and the version changes with every release", what, versionLabel)
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
	if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
		c.fail("%s: securityContext runAsUser must not be 0 (root)", what)
	}
	if sc.RunAsGroup != nil && *sc.RunAsGroup == 0 {
		c.fail("%s: securityContext runAsGroup must not be 0 (root)", what)
	}
	if p := sc.SeccompProfile; p == nil || p.Type != corev1.SeccompProfileTypeRuntimeDefault && p.Type != corev1.SeccompProfileTypeLocalhost {
		c.fail("%s: securityContext seccompProfile must be %s (or %s)", what, corev1.SeccompProfileTypeRuntimeDefault, corev1.SeccompProfileTypeLocalhost)
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
	if s.Spec.Type == corev1.ServiceTypeExternalName {
		c.fail("%s: type %s routes to no pods; want %s, %s or %s", what, s.Spec.Type,
			corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer)
	}
	if len(s.Spec.Selector) == 0 {
		c.fail("%s: no selector", what)
	} else if d := c.m.Deployment; d != nil && !labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
		c.fail("%s: selector %v does not match the Deployment's pod labels", what, s.Spec.Selector)
	}
	if len(s.Spec.Ports) == 0 {
		c.fail("%s: no ports: want the app port %q", what, AppPort)
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
	mu, ma := p.Spec.MaxUnavailable, p.Spec.MinAvailable
	if (mu == nil) == (ma == nil) {
		c.fail("%s: set one of minAvailable and maxUnavailable", what)
		return
	}
	if c.most == 0 {
		return // the counts are unknown: reported
	}
	// How many of n pods the budget lets a drain take at once. Both rules
	// below only get easier with more pods, so they are checked at the fewest
	// replicas each applies to.
	allowed := func(n int) (int, error) {
		if mu != nil {
			return intstr.GetScaledValueFromIntOrPercent(mu, n, true)
		}
		least, err := intstr.GetScaledValueFromIntOrPercent(ma, n, true)
		return n - least, err
	}
	at := func(n int) string {
		if c.scaler == "replicas" {
			return fmt.Sprintf("at replicas %d", n)
		}
		return fmt.Sprintf("at %d replicas (%s scales %d to %d)", n, c.scaler, c.fewest, c.most)
	}
	n := c.fewest
	a, err := allowed(n)
	switch {
	case err != nil:
		c.fail("%s: %w", what, err)
		return
	case a < 1:
		c.fail("%s: %s it allows %d pods disrupted; want at least 1, or node drains block", what, at(n), a)
	}
	// One pod alone cannot be both drained and kept; from two on, a drain
	// must leave one serving.
	if n = max(c.fewest, 2); n <= c.most {
		if a, _ := allowed(n); a >= n {
			c.fail("%s: %s it allows all %d pods disrupted at once; want fewer", what, at(n), a)
		}
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
