package manifest

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// nats checks the job queue's NATS servers, when there are any: a
// StatefulSet whose pods run restricted with resources and probes, a
// headless Service that publishes the servers' names before they are ready
// (their routes need them to become ready), a client Service and a budget
// that selects them and lets a drain take one, never all. None of
// lameduck's selectors may pick the NATS pods: its Service would send
// requests to them, its budget would count them. The rules written for
// lameduck's Deployment (the rollout, the shutdown budget, the admin port)
// are not NATS's.
func (c *checker) nats() {
	n := c.m.NATS
	s := n.StatefulSet
	if s == nil {
		if n.ConfigMap != nil || n.Service != nil || n.Headless != nil || n.PDB != nil {
			c.fail("NATS objects without the NATS StatefulSet")
		}
		return
	}
	what := "StatefulSet " + s.Name
	if d := c.m.Deployment; d != nil && s.Namespace != d.Namespace {
		c.fail("%s: namespace %q differs from Deployment %s's %q", what, s.Namespace, d.Name, d.Namespace)
	}
	pods := labels.Set(s.Spec.Template.Labels)
	c.selector(what, s.Spec.Selector, pods)
	replicas := 1 // the API's default
	if s.Spec.Replicas != nil {
		replicas = int(*s.Spec.Replicas)
	}

	spec := &s.Spec.Template.Spec
	c.podSecurity(what, spec.SecurityContext)
	for i := range spec.Containers {
		ctr := &spec.Containers[i]
		w := what + ": container " + ctr.Name
		if ctr.ReadinessProbe == nil {
			c.fail("%s: no readinessProbe: the client Service would send clients to a server whose JetStream is not running", w)
		}
		if ctr.LivenessProbe == nil {
			c.fail("%s: no livenessProbe", w)
		}
		c.resources(w, ctr.Resources)
		c.containerSecurity(w, ctr.SecurityContext)
	}

	switch h := n.Headless; {
	case h == nil:
		c.fail("%s: no headless Service (clusterIP None) for the servers' routes", what)
	case s.Spec.ServiceName != h.Name:
		c.fail("%s: serviceName is %q; want the headless Service %q, which names the pods", what, s.Spec.ServiceName, h.Name)
	case !h.Spec.PublishNotReadyAddresses:
		c.fail("Service %s: publishNotReadyAddresses must be true: a server becomes ready only once its routes to the others resolve", h.Name)
	}
	for _, svc := range []*corev1.Service{n.Headless, n.Service} {
		if svc != nil && (len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(pods)) {
			c.fail("Service %s: selector %v does not select the NATS pods", svc.Name, svc.Spec.Selector)
		}
	}
	if n.Service == nil {
		c.fail("%s: no client Service", what)
	}

	if p := n.PDB; p == nil {
		c.fail("%s: no PodDisruptionBudget: a drain could stop every server at once", what)
	} else {
		w := "PodDisruptionBudget " + p.Name
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		switch {
		case err != nil:
			c.fail("%s: selector: %w", w, err)
		case sel.Empty() || !sel.Matches(pods):
			c.fail("%s: selector %s does not select the NATS pods", w, sel)
		}
		if mu := p.Spec.MaxUnavailable; mu == nil {
			c.fail("%s: set maxUnavailable", w)
		} else if a, err := intstr.GetScaledValueFromIntOrPercent(mu, replicas, true); err != nil || a < 1 || replicas > 1 && a >= replicas {
			c.fail("%s: maxUnavailable %s at %d servers; want at least 1 and fewer than all", w, mu, replicas)
		}
	}

	// lameduck's selectors must leave the NATS pods alone.
	if d := c.m.Deployment; d != nil {
		if sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector); err == nil && !sel.Empty() && sel.Matches(pods) {
			c.fail("Deployment %s: selector %s selects the NATS pods", d.Name, sel)
		}
	}
	if svc := c.m.Service; svc != nil && len(svc.Spec.Selector) > 0 && labels.SelectorFromSet(svc.Spec.Selector).Matches(pods) {
		c.fail("Service %s: selector %v selects the NATS pods", svc.Name, svc.Spec.Selector)
	}
	if p := c.m.PDB; p != nil {
		if sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector); err == nil && !sel.Empty() && sel.Matches(pods) {
			c.fail("PodDisruptionBudget %s: selector %s selects the NATS pods", p.Name, sel)
		}
	}
}
