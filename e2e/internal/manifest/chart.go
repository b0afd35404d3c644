package manifest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	"helm.sh/helm/v4/pkg/engine"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// Release names the release a chart is rendered for.
type Release struct {
	Name      string // "lameduck" when empty
	Namespace string // "default" when empty
	// Service is .Release.Service: "Helm" (when empty) as helm renders it, or
	// "kubectl" for the plain manifests of k8s/ (make k8s).
	Service string
}

// Rendered is a chart rendered as `helm template` renders it: the manifests
// of each template that produced any, and apart from them the hooks (helm
// test's pods) and NOTES.txt, which are not installed with the release.
type Rendered struct {
	Files map[string]string // template path in the chart ("lameduck/templates/deployment.yaml") to YAML
	Hooks map[string]string // the same, for templates whose objects are hooks
	Notes string
}

// RenderChart renders the chart in dir with its values.yaml, then each of
// valuesFiles over it, then values over those (as `helm template -f FILE
// --set ...` does), validating them against its values.schema.json. A
// template's fail ends the render with its message.
func RenderChart(dir string, rel Release, valuesFiles []string, values map[string]any) (Rendered, error) {
	var r Rendered
	ch, err := loader.Load(dir)
	if err != nil {
		return r, fmt.Errorf("load chart %s: %w", dir, err)
	}
	vals := map[string]any{}
	for _, f := range valuesFiles {
		v, err := common.ReadValuesFile(f)
		if err != nil {
			return r, fmt.Errorf("values %s: %w", f, err)
		}
		vals = loader.MergeMaps(vals, v)
	}
	vals = loader.MergeMaps(vals, values)
	return render(ch, rel, vals)
}

func render(ch *chartv2.Chart, rel Release, vals map[string]any) (Rendered, error) {
	r := Rendered{Files: map[string]string{}, Hooks: map[string]string{}}
	rel.Name = orDefaultString(rel.Name, "lameduck")
	rel.Namespace = orDefaultString(rel.Namespace, "default")
	caps := common.DefaultCapabilities
	if kv := ch.Metadata.KubeVersion; kv != "" && !chartutil.IsCompatibleRange(kv, caps.KubeVersion.String()) {
		return r, fmt.Errorf("chart %s requires kubeVersion %s; Helm renders for %s", ch.Name(), kv, caps.KubeVersion.Version)
	}
	top, err := util.ToRenderValues(ch, vals, common.ReleaseOptions{
		Name: rel.Name, Namespace: rel.Namespace, Revision: 1, IsInstall: true,
	}, caps)
	if err != nil {
		return r, fmt.Errorf("chart %s: %w", ch.Name(), err)
	}
	if rel.Service != "" {
		top["Release"].(map[string]any)["Service"] = rel.Service
	}
	files, err := engine.Render(ch, top)
	if err != nil {
		return r, fmt.Errorf("render chart %s: %w", ch.Name(), err)
	}
	for name, out := range files {
		switch {
		case path.Base(name) == "NOTES.txt":
			r.Notes = out
		case path.Ext(name) != ".yaml" && path.Ext(name) != ".yml" || strings.TrimSpace(stripComments(out)) == "":
			// helpers (_helpers.tpl render to nothing) and disabled templates
		case isHook(out):
			r.Hooks[name] = out
		default:
			r.Files[name] = out
		}
	}
	return r, nil
}

// Manifests decodes the rendered manifests (not the hooks), as Decode does.
func (r Rendered) Manifests() (Manifests, error) {
	var m Manifests
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(r.Files)) {
		errs = append(errs, m.decode(name, []byte(r.Files[name])))
	}
	return m, errors.Join(errs...)
}

// YAML is every rendered manifest in one multi-document stream, in template
// order, each after a "# Source:" line as helm prints it.
func (r Rendered) YAML() []byte {
	var b bytes.Buffer
	for _, name := range slices.Sorted(maps.Keys(r.Files)) {
		fmt.Fprintf(&b, "---\n# Source: %s\n%s\n", name, strings.TrimSpace(r.Files[name]))
	}
	return b.Bytes()
}

// isHook reports whether any document of a rendered template is a Helm hook
// (annotation helm.sh/hook), as helm test's pods are.
func isHook(out string) bool {
	rd := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(out)))
	for {
		doc, err := rd.Read()
		if err != nil {
			return false // io.EOF, or an error Manifests reports
		}
		var obj struct {
			Metadata struct {
				Annotations map[string]string `json:"annotations"`
			} `json:"metadata"`
		}
		if yaml.Unmarshal(doc, &obj) == nil && obj.Metadata.Annotations["helm.sh/hook"] != "" {
			return true
		}
	}
}

// stripComments drops the YAML comment lines and document separators of s.
func stripComments(s string) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		if t := strings.TrimSpace(line); t != "" && t != "---" && !strings.HasPrefix(t, "#") {
			b.WriteString(line)
		}
	}
	return b.String()
}

func orDefaultString(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Kustomize builds the kustomization in dir as `kubectl kustomize dir` does
// and returns the YAML stream.
func Kustomize(dir string) ([]byte, error) {
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	out, err := res.AsYaml()
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	return out, nil
}

// kustomizationFiles are the names kustomize reads a kustomization from.
var kustomizationFiles = []string{"kustomization.yaml", "kustomization.yml", "Kustomization"}

// Source says what LoadAny read: "chart", "kustomization" or "manifests".
type Source string

// LoadAny loads what path holds, however lameduck is deployed from it: a
// chart (a folder with Chart.yaml), rendered with valuesFiles as
// RenderChart does; a kustomization (a folder with a kustomization file),
// built as `kubectl kustomize`; or manifests as `kubectl apply -f path`
// reads them (Load). valuesFiles are only for a chart.
func LoadAny(p string, valuesFiles []string) (Manifests, Source, error) {
	isFile := func(name string) bool {
		info, err := os.Stat(filepath.Join(p, name))
		return err == nil && !info.IsDir()
	}
	switch {
	case isFile("Chart.yaml"):
		r, err := RenderChart(p, Release{}, valuesFiles, nil)
		if err != nil {
			return Manifests{}, "chart", err
		}
		m, err := r.Manifests()
		return m, "chart", err
	case len(valuesFiles) > 0:
		return Manifests{}, "", fmt.Errorf("%s is not a chart (no Chart.yaml): values files are for a chart", p)
	case slices.ContainsFunc(kustomizationFiles, isFile):
		out, err := Kustomize(p)
		if err != nil {
			return Manifests{}, "kustomization", err
		}
		m, err := Decode("kustomize build "+p, out)
		return m, "kustomization", err
	default:
		m, err := Load(p)
		return m, "manifests", err
	}
}
