package manifest_test

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/lameduck/lameduck/e2e/internal/manifest"
)

// TestMutations runs validate on small changes to the shipped k8s/ objects,
// so that every case is the real manifests with one thing changed and cannot
// drift from them. An adopter's choice (the replica count, an autoscaler, the
// Service type) must pass; a change that would lose requests or jobs during a
// rollout must fail, and for the reason its entry names, so that it cannot
// pass the test by failing on something else.
func TestMutations(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*manifest.Manifests)
		want   string // part of the error; "" for none
	}{
		// Choices an adopter makes.
		{"one replica", func(m *manifest.Manifests) { m.Deployment.Spec.Replicas = new(int32(1)) }, ""},
		{"ten replicas", func(m *manifest.Manifests) { m.Deployment.Spec.Replicas = new(int32(10)) }, ""},
		{"NodePort Service", func(m *manifest.Manifests) {
			m.Service.Spec.Type = corev1.ServiceTypeNodePort
			m.Service.Spec.Ports[0].NodePort = 30080
		}, ""},
		{"Service type unset (ClusterIP)", func(m *manifest.Manifests) { m.Service.Spec.Type = "" }, ""},
		{"LoadBalancer Service", func(m *manifest.Manifests) { m.Service.Spec.Type = corev1.ServiceTypeLoadBalancer }, ""},
		{"no admin Service", func(m *manifest.Manifests) { m.AdminService = nil }, ""},
		{"autoscaler 3 to 10", func(m *manifest.Manifests) { addHPA(m, 3, 10) }, ""},
		{"autoscaler 1 to 10", func(m *manifest.Manifests) { addHPA(m, 1, 10) }, ""},
		{"maxSurge 25%", func(m *manifest.Manifests) { rollingUpdate(m).MaxSurge = new(intstr.FromString("25%")) }, ""},
		{"another non-root user", func(m *manifest.Manifests) {
			sc := m.Deployment.Spec.Template.Spec.SecurityContext
			sc.RunAsUser, sc.RunAsGroup = new(int64(1000700000)), new(int64(1000700000))
		}, ""},
		{"an environment label on every selector", func(m *manifest.Manifests) {
			// What kustomize's labels with includeSelectors does.
			m.Deployment.Spec.Selector.MatchLabels["env"] = "prod"
			m.Deployment.Spec.Template.Labels["env"] = "prod"
			m.Service.Spec.Selector["env"] = "prod"
			m.PDB.Spec.Selector.MatchLabels["env"] = "prod"
		}, ""},
		{"PDB minAvailable 2 of 3", func(m *manifest.Manifests) {
			m.PDB.Spec.MaxUnavailable, m.PDB.Spec.MinAvailable = nil, new(intstr.FromInt32(2))
		}, ""},

		// The grace-period budget and the variables the program reads.
		{"grace period shorter than the budget", func(m *manifest.Manifests) {
			m.ConfigMap.Data["LAMEDUCK_GRACE_PERIOD"] = "20s"
			m.Deployment.Spec.Template.Spec.TerminationGracePeriodSeconds = new(int64(20))
		}, "terminationGracePeriodSeconds 20s is too short"},
		{"grace period the program does not know", func(m *manifest.Manifests) {
			m.Deployment.Spec.Template.Spec.TerminationGracePeriodSeconds = new(int64(60))
		}, "terminationGracePeriodSeconds is 1m0s but LAMEDUCK_GRACE_PERIOD is 29s"},
		{"grace period unset", func(m *manifest.Manifests) { m.Deployment.Spec.Template.Spec.TerminationGracePeriodSeconds = nil },
			"set terminationGracePeriodSeconds explicitly"},
		{"preStop sleep on top of the budget", func(m *manifest.Manifests) {
			container(m).Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 5}}}
		}, "preStop sleep 5s + LAMEDUCK_PRESTOP_DELAY 8s"},
		{"preStop exec in a FROM scratch image", func(m *manifest.Manifests) {
			container(m).Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sleep", "5"}}}}
		}, "preStop exec hook cannot run"},
		{"a variable missing, one the program does not read", func(m *manifest.Manifests) {
			delete(m.ConfigMap.Data, "LAMEDUCK_WORKERS")
			m.ConfigMap.Data["LAMEDUCK_PORT"] = "8080"
		}, "LAMEDUCK_WORKERS missing"},
		{"a variable the program does not read", func(m *manifest.Manifests) { m.ConfigMap.Data["LAMEDUCK_PORT"] = "8080" },
			"sets LAMEDUCK_PORT, which the program does not read"},
		{"a value the program refuses", func(m *manifest.Manifests) { m.ConfigMap.Data["LAMEDUCK_LOG_FORMAT"] = "xml" },
			"LAMEDUCK_LOG_FORMAT: must be json or text"},
		{"a variable set beside the ConfigMap", func(m *manifest.Manifests) {
			container(m).Env = append(container(m).Env, corev1.EnvVar{Name: "LAMEDUCK_WORKERS", Value: "8"})
		}, "env sets LAMEDUCK_WORKERS, overriding the ConfigMap"},
		{"service links", func(m *manifest.Manifests) { m.Deployment.Spec.Template.Spec.EnableServiceLinks = nil },
			"enableServiceLinks must be false"},

		// Probes on the admin port, ports that exist.
		{"readiness probe on a missing port", func(m *manifest.Manifests) {
			container(m).ReadinessProbe.HTTPGet.Port = intstr.FromString("metrics")
		}, `readinessProbe port "metrics" is not a container port`},
		{"liveness probe on a port number", func(m *manifest.Manifests) {
			container(m).LivenessProbe.HTTPGet.Port = intstr.FromInt32(8086)
		}, "livenessProbe port 8086 must name a container port"},
		{"readiness probe on the app port", func(m *manifest.Manifests) {
			container(m).ReadinessProbe.HTTPGet.Port = intstr.FromString(manifest.AppPort)
		}, `readinessProbe port is "http"; want "admin"`},
		{"readiness too slow for the preStop delay", func(m *manifest.Manifests) {
			p := container(m).ReadinessProbe
			p.PeriodSeconds, p.FailureThreshold = 5, 3
		}, "readinessProbe periodSeconds is 5"},
		{"container port apart from the listen address", func(m *manifest.Manifests) {
			container(m).Ports[1].ContainerPort = 9090
		}, `container port "admin" is 9090 but LAMEDUCK_ADMIN_ADDR listens on 8086`},
		{"Service exposes the admin port", func(m *manifest.Manifests) {
			m.Service.Spec.Ports = append(m.Service.Spec.Ports, corev1.ServicePort{
				Name: "admin", Port: 8086, TargetPort: intstr.FromString(manifest.AdminPort), NodePort: 30086,
			})
		}, "port 8086 exposes the admin port"},
		{"Service targets a missing port", func(m *manifest.Manifests) { container(m).Ports[0].Name = "web" },
			`targetPort "http" is not a container port`},
		{"ExternalName Service", func(m *manifest.Manifests) { m.Service.Spec.Type = corev1.ServiceTypeExternalName },
			"type ExternalName routes to no pods"},

		// The rollout, selectors, replicas and the disruption budget.
		{"rollout may stop a pod first", func(m *manifest.Manifests) { rollingUpdate(m).MaxUnavailable = new(intstr.FromInt32(1)) },
			"maxUnavailable is 1; want 0"},
		{"rollout may not surge", func(m *manifest.Manifests) {
			rollingUpdate(m).MaxUnavailable = new(intstr.FromString("25%"))
			rollingUpdate(m).MaxSurge = new(intstr.FromInt32(0))
		}, "maxSurge is 0; want 1 or more"},
		{"maxUnavailable 25% at the autoscaler's most", func(m *manifest.Manifests) {
			// 25% of 3 rounds down to 0, but of 10 to 2.
			addHPA(m, 3, 10)
			rollingUpdate(m).MaxUnavailable = new(intstr.FromString("25%"))
		}, "maxUnavailable is 25%; want 0"},
		{"version in the selector", func(m *manifest.Manifests) {
			m.Deployment.Spec.Selector.MatchLabels["app.kubernetes.io/version"] = "dev"
		}, "selector must not use app.kubernetes.io/version"},
		{"selector apart from the pod labels", func(m *manifest.Manifests) { m.Deployment.Spec.Template.Labels["app.kubernetes.io/name"] = "other" },
			"does not match the pod template's labels"},
		{"PDB selects other pods", func(m *manifest.Manifests) {
			m.PDB.Spec.Selector.MatchLabels["app.kubernetes.io/name"] = "lameduck-old"
		}, "PodDisruptionBudget lameduck: selector"},
		{"no PDB", func(m *manifest.Manifests) { m.PDB = nil }, "no PodDisruptionBudget"},
		{"replicas unset and no autoscaler", func(m *manifest.Manifests) { m.Deployment.Spec.Replicas = nil },
			"set replicas, or add a HorizontalPodAutoscaler"},
		{"replicas 0", func(m *manifest.Manifests) { m.Deployment.Spec.Replicas = new(int32(0)) }, "replicas is 0"},
		{"PDB lets a drain take every pod", func(m *manifest.Manifests) {
			m.Deployment.Spec.Replicas = new(int32(2))
			m.PDB.Spec.MaxUnavailable = new(intstr.FromInt32(2))
		}, "at replicas 2 it allows all 2 pods disrupted at once"},
		{"PDB blocks drains at one replica", func(m *manifest.Manifests) {
			m.Deployment.Spec.Replicas = new(int32(1))
			m.PDB.Spec.MaxUnavailable, m.PDB.Spec.MinAvailable = nil, new(intstr.FromInt32(1))
		}, "at replicas 1 it allows 0 pods disrupted"},

		// The autoscaler.
		{"autoscaler and replicas both", func(m *manifest.Manifests) {
			addHPA(m, 3, 10)
			m.Deployment.Spec.Replicas = new(int32(3))
		}, "replicas is set while HorizontalPodAutoscaler lameduck scales it"},
		{"autoscaler's fewest blocks drains", func(m *manifest.Manifests) {
			addHPA(m, 1, 10)
			m.PDB.Spec.MaxUnavailable, m.PDB.Spec.MinAvailable = nil, new(intstr.FromInt32(1))
		}, "at 1 replicas (HorizontalPodAutoscaler lameduck scales 1 to 10) it allows 0 pods disrupted"},
		{"autoscaler's fewest lets a drain take them all", func(m *manifest.Manifests) {
			addHPA(m, 1, 10)
			m.PDB.Spec.MaxUnavailable = new(intstr.FromString("100%"))
		}, "at 2 replicas (HorizontalPodAutoscaler lameduck scales 1 to 10) it allows all 2 pods disrupted"},
		{"autoscaler scales another Deployment", func(m *manifest.Manifests) {
			addHPA(m, 3, 10)
			m.HPA.Spec.ScaleTargetRef.Name = "other"
		}, `scaleTargetRef is apps/v1 Deployment "other"; want apps/v1 Deployment "lameduck"`},
		{"autoscaler's most below its fewest", func(m *manifest.Manifests) { addHPA(m, 3, 2) },
			"maxReplicas 2 is below minReplicas 3"},
		{"autoscaler to zero", func(m *manifest.Manifests) { addHPA(m, 0, 2) }, "minReplicas is 0"},
		{"autoscaler in another namespace", func(m *manifest.Manifests) {
			addHPA(m, 3, 10)
			m.HPA.Namespace = "other"
		}, `HorizontalPodAutoscaler lameduck: namespace "other" differs`},

		// The restricted security context.
		{"writable root filesystem", func(m *manifest.Manifests) { container(m).SecurityContext.ReadOnlyRootFilesystem = nil },
			"readOnlyRootFilesystem must be true"},
		{"capabilities kept", func(m *manifest.Manifests) { container(m).SecurityContext.Capabilities = nil },
			"capabilities must drop ALL"},
		{"privilege escalation", func(m *manifest.Manifests) { container(m).SecurityContext.AllowPrivilegeEscalation = new(true) },
			"allowPrivilegeEscalation must be false"},
		{"root user", func(m *manifest.Manifests) { m.Deployment.Spec.Template.Spec.SecurityContext.RunAsUser = new(int64(0)) },
			"runAsUser must not be 0"},
		{"no seccomp profile", func(m *manifest.Manifests) { m.Deployment.Spec.Template.Spec.SecurityContext.SeccompProfile = nil },
			"seccompProfile must be RuntimeDefault"},
		{"no memory limit", func(m *manifest.Manifests) { delete(container(m).Resources.Limits, corev1.ResourceMemory) },
			"resources limits memory must be set"},
	}
	names := make(map[string]bool)
	for _, tt := range tests {
		if names[tt.name] {
			t.Fatalf("two cases named %q", tt.name)
		}
		names[tt.name] = true
		t.Run(tt.name, func(t *testing.T) {
			m := loadK8s(t)
			tt.mutate(&m)
			err := validate(t, m)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("validate = %v; want nil", err)
			case tt.want != "" && err == nil:
				t.Errorf("validate = nil; want an error containing %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Errorf("validate = %v; want an error containing %q", err, tt.want)
			}
		})
	}
}

// container is the Deployment's one container.
func container(m *manifest.Manifests) *corev1.Container {
	return &m.Deployment.Spec.Template.Spec.Containers[0]
}

// rollingUpdate is the Deployment's rolling update parameters.
func rollingUpdate(m *manifest.Manifests) *appsv1.RollingUpdateDeployment {
	return m.Deployment.Spec.Strategy.RollingUpdate
}

// addHPA hands the Deployment's replica count to an autoscaler that keeps
// between fewest and most replicas at 70% of the CPU request.
func addHPA(m *manifest.Manifests, fewest, most int32) {
	d := m.Deployment
	d.Spec.Replicas = nil
	m.HPA = &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: "lameduck", Namespace: d.Namespace, Labels: d.Labels},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: d.Name},
			MinReplicas:    &fewest,
			MaxReplicas:    most,
			Metrics: []autoscalingv2.MetricSpec{{
				Type: autoscalingv2.ResourceMetricSourceType,
				Resource: &autoscalingv2.ResourceMetricSource{
					Name:   corev1.ResourceCPU,
					Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: new(int32(70))},
				},
			}},
		},
	}
}
