// Package manifest loads lameduck's Kubernetes manifests (the k8s/ folder that
// `kubectl apply -f k8s` applies, or what kustomize renders from an overlay of
// it) into typed API objects, and checks them against what the program needs
// to lose nothing during a rolling update: the shutdown budget fits in the
// grace period, the ConfigMap sets exactly the variables the program reads,
// probes hit the admin port of the container, the Service exposes the app
// port and not the admin port, the pod runs restricted, and so on.
//
// What an adopter chooses is left free: the replica count (or none, when a
// HorizontalPodAutoscaler owns it), an autoscaler, the Service type. Check
// only holds such a choice to what keeps a rollout safe, as an autoscaler
// whose fewest replicas still let the PodDisruptionBudget allow a drain.
//
// Load and Decode are strict: an unknown field, a duplicate field or a kind
// lameduck does not deploy is an error, so a typo cannot silently drop a
// setting. LoadAny also renders a chart or builds a kustomization first.
package manifest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Manifests holds lameduck's objects, at most one of each kind it deploys. A
// kind that Load did not find is nil; Check reports the missing ones it
// needs. The rest are optional.
type Manifests struct {
	Deployment *appsv1.Deployment
	ConfigMap  *corev1.ConfigMap
	// Service is the app's Service; AdminService, a Service whose every port
	// targets the admin port (what a ServiceMonitor scrapes).
	Service       *corev1.Service
	AdminService  *corev1.Service
	PDB           *policyv1.PodDisruptionBudget
	HPA           *autoscalingv2.HorizontalPodAutoscaler
	NetworkPolicy *networkingv1.NetworkPolicy
	// prometheus-operator's, when the cluster runs it.
	ServiceMonitor *monitoringv1.ServiceMonitor
	PodMonitor     *monitoringv1.PodMonitor
	// NATS holds the job queue's NATS servers, when the chart runs them
	// (nats.enabled): objects labelled app.kubernetes.io/name "nats".
	NATS NATS
}

// NATS holds the objects of the chart's NATS JetStream: a StatefulSet of
// nats-server, its configuration, its client and headless Services and its
// disruption budget. They are not lameduck's own: Check holds lameduck's
// Deployment to its rules and these to CheckNATS's.
type NATS struct {
	StatefulSet *appsv1.StatefulSet
	ConfigMap   *corev1.ConfigMap
	Service     *corev1.Service // the clients' (lameduck's LAMEDUCK_QUEUE_URL)
	Headless    *corev1.Service // clusterIP None: the servers' own names, for the routes
	PDB         *policyv1.PodDisruptionBudget
}

// NATSName is the app.kubernetes.io/name label of the NATS objects.
const NATSName = "nats"

// extensions are the file extensions `kubectl apply -f DIR` reads.
var extensions = []string{".yaml", ".yml", ".json"}

// decoder decodes the registered API groups strictly and without defaulting,
// so the objects hold exactly what the files say.
var decoder = func() runtime.Decoder {
	scheme := runtime.NewScheme()
	utilruntime.Must(corev1.AddToScheme(scheme))
	utilruntime.Must(appsv1.AddToScheme(scheme))
	utilruntime.Must(policyv1.AddToScheme(scheme))
	utilruntime.Must(autoscalingv2.AddToScheme(scheme))
	utilruntime.Must(networkingv1.AddToScheme(scheme))
	utilruntime.Must(monitoringv1.AddToScheme(scheme))
	return serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
}()

// Load decodes every document of the files `kubectl apply -f path` would
// apply: path itself if it is a file, else the *.yaml, *.yml and *.json files
// directly in the folder path. It reports every problem at once: unreadable
// files, unknown fields, kinds lameduck does not deploy, and a second object
// of a kind.
func Load(path string) (Manifests, error) {
	var m Manifests
	info, err := os.Stat(path)
	if err != nil {
		return m, fmt.Errorf("load manifests: %w", err)
	}
	files := []string{path}
	if info.IsDir() {
		entries, err := os.ReadDir(path)
		if err != nil {
			return m, fmt.Errorf("load manifests: %w", err)
		}
		files = files[:0]
		for _, e := range entries {
			if !e.IsDir() && slices.Contains(extensions, filepath.Ext(e.Name())) {
				files = append(files, filepath.Join(path, e.Name()))
			}
		}
		if len(files) == 0 {
			return m, fmt.Errorf("load manifests: no %v files in %s", extensions, path)
		}
	}
	var errs []error
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, fmt.Errorf("load manifests: %w", err))
			continue
		}
		errs = append(errs, m.decode(f, data))
	}
	return m, errors.Join(errs...)
}

// Decode decodes every document of data, a multi-document YAML or JSON
// stream such as `kubectl kustomize` prints, as Load decodes a file; name
// says where data came from in errors.
func Decode(name string, data []byte) (Manifests, error) {
	var m Manifests
	err := m.decode(name, data)
	return m, err
}

// decode adds the objects of every document in data, read from file, to m.
func (m *Manifests) decode(file string, data []byte) error {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var errs []error
	for doc := 1; ; doc++ {
		raw, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: document %d: %w", file, doc, err))
			break
		}
		if err := m.add(raw); err != nil {
			errs = append(errs, fmt.Errorf("%s: document %d: %w", file, doc, err))
		}
	}
	return errors.Join(errs...)
}

// add decodes one document into m. A document with nothing but comments is
// skipped, as kubectl skips it.
func (m *Manifests) add(raw []byte) error {
	if j, err := yaml.YAMLToJSON(raw); err == nil && bytes.Equal(bytes.TrimSpace(j), []byte("null")) {
		return nil
	}
	obj, gvk, err := decoder.Decode(raw, nil, nil)
	if err != nil {
		return err
	}
	second := func(kind, name string) error {
		return fmt.Errorf("a second %s (%q): lameduck deploys one", kind, name)
	}
	if o, err := meta.Accessor(obj); err == nil && o.GetLabels()["app.kubernetes.io/name"] == NATSName {
		return m.NATS.add(obj, gvk.Kind)
	}
	switch o := obj.(type) {
	case *appsv1.Deployment:
		if m.Deployment != nil {
			return second(gvk.Kind, o.Name)
		}
		m.Deployment = o
	case *corev1.ConfigMap:
		if m.ConfigMap != nil {
			return second(gvk.Kind, o.Name)
		}
		m.ConfigMap = o
	case *corev1.Service:
		s := &m.Service
		if isAdmin(o) {
			s = &m.AdminService
		}
		if *s != nil {
			return second(gvk.Kind, o.Name)
		}
		*s = o
	case *policyv1.PodDisruptionBudget:
		if m.PDB != nil {
			return second(gvk.Kind, o.Name)
		}
		m.PDB = o
	case *autoscalingv2.HorizontalPodAutoscaler:
		if m.HPA != nil {
			return second(gvk.Kind, o.Name)
		}
		m.HPA = o
	case *networkingv1.NetworkPolicy:
		if m.NetworkPolicy != nil {
			return second(gvk.Kind, o.Name)
		}
		m.NetworkPolicy = o
	case *monitoringv1.ServiceMonitor:
		if m.ServiceMonitor != nil {
			return second(gvk.Kind, o.Name)
		}
		m.ServiceMonitor = o
	case *monitoringv1.PodMonitor:
		if m.PodMonitor != nil {
			return second(gvk.Kind, o.Name)
		}
		m.PodMonitor = o
	default:
		return fmt.Errorf("kind %s is not one lameduck deploys (Deployment, ConfigMap, Service, PodDisruptionBudget, "+
			"HorizontalPodAutoscaler, NetworkPolicy, ServiceMonitor, PodMonitor)", gvk.GroupKind())
	}
	return nil
}

// add puts one NATS object in n.
func (n *NATS) add(obj runtime.Object, kind string) error {
	second := func(name string) error {
		return fmt.Errorf("a second NATS %s (%q)", kind, name)
	}
	switch o := obj.(type) {
	case *appsv1.StatefulSet:
		if n.StatefulSet != nil {
			return second(o.Name)
		}
		n.StatefulSet = o
	case *corev1.ConfigMap:
		if n.ConfigMap != nil {
			return second(o.Name)
		}
		n.ConfigMap = o
	case *corev1.Service:
		s := &n.Service
		if o.Spec.ClusterIP == corev1.ClusterIPNone {
			s = &n.Headless
		}
		if *s != nil {
			return second(o.Name)
		}
		*s = o
	case *policyv1.PodDisruptionBudget:
		if n.PDB != nil {
			return second(o.Name)
		}
		n.PDB = o
	default:
		return fmt.Errorf("kind %s is not one of the NATS servers' (StatefulSet, ConfigMap, Service, PodDisruptionBudget)", kind)
	}
	return nil
}

// isAdmin reports whether every port of s targets the admin port, by name:
// the Service for scraping, apart from the app's.
func isAdmin(s *corev1.Service) bool {
	for _, p := range s.Spec.Ports {
		if p.TargetPort.StrVal != AdminPort {
			return false
		}
	}
	return len(s.Spec.Ports) > 0
}
