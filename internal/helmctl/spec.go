// Package helmctl is k1s's HelmChart controller: it reconciles the
// namespaced custom resources HelmChart and HelmChartConfig
// (helm.k1s.io/v1, CRDs in manifests/helm-controller.yaml) into Helm
// releases with the Helm SDK (helm.sh/helm/v3): install when there is no
// deployed release, upgrade when the wanted chart or values change,
// uninstall when the HelmChart is deleted (finalizer helm.k1s.io/uninstall).
// The release is named after the HelmChart and stored as Helm's usual
// Secrets in the target namespace, so the helm CLI sees it too.
//
// It runs in its own program, cmd/k1s-helm-controller, as a Deployment in
// kube-system, never in the k1s binary: Helm renders with text/template,
// whose reflection-based method calls switch the linker's dead-code
// elimination off for a whole binary.
//
// This file is the pure part (the spec, the values, the chart); controller.go
// runs it against the API and Helm.
package helmctl

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/strvals"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

const (
	// Group is the API group of both kinds.
	Group = "helm.k1s.io"
	// Finalizer holds a HelmChart until its release is uninstalled.
	Finalizer = "helm.k1s.io/uninstall"
)

var (
	// ChartResource is the HelmChart resource.
	ChartResource = schema.GroupVersionResource{Group: Group, Version: "v1", Resource: "helmcharts"}
	// ConfigResource is the HelmChartConfig resource.
	ConfigResource = schema.GroupVersionResource{Group: Group, Version: "v1", Resource: "helmchartconfigs"}
)

// Spec is a HelmChart's spec. The chart comes from chartContent, or else
// from chart (a name in repo, or a full URL or oci:// reference) at version.
// chartFile names a .tgz in the server's manifests folder; the server fills
// chartContent from it when it applies the manifest (package deploy).
type Spec struct {
	Chart           string                        `json:"chart,omitempty"`
	Repo            string                        `json:"repo,omitempty"`
	Version         string                        `json:"version,omitempty"`
	ChartContent    string                        `json:"chartContent,omitempty"`
	ChartFile       string                        `json:"chartFile,omitempty"`
	TargetNamespace string                        `json:"targetNamespace,omitempty"`
	ValuesContent   string                        `json:"valuesContent,omitempty"`
	Set             map[string]intstr.IntOrString `json:"set,omitempty"`
}

// ConfigSpec is a HelmChartConfig's spec: values laid over those of the
// HelmChart with the same name and namespace.
type ConfigSpec struct {
	ValuesContent string `json:"valuesContent,omitempty"`
}

// Chart is one HelmChart as the controller needs it.
type Chart struct {
	Namespace, Name string
	Generation      int64
	Spec            Spec
}

// FromUnstructured reads a HelmChart.
func FromUnstructured(u *unstructured.Unstructured) (*Chart, error) {
	c := &Chart{Namespace: u.GetNamespace(), Name: u.GetName(), Generation: u.GetGeneration()}
	if spec, ok := u.Object["spec"].(map[string]any); ok {
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(spec, &c.Spec); err != nil {
			return nil, fmt.Errorf("HelmChart %s/%s: spec: %w", c.Namespace, c.Name, err)
		}
	}
	return c, nil
}

// ConfigFromUnstructured reads a HelmChartConfig's spec.
func ConfigFromUnstructured(u *unstructured.Unstructured) (ConfigSpec, error) {
	var cs ConfigSpec
	if spec, ok := u.Object["spec"].(map[string]any); ok {
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(spec, &cs); err != nil {
			return cs, fmt.Errorf("HelmChartConfig %s/%s: spec: %w", u.GetNamespace(), u.GetName(), err)
		}
	}
	return cs, nil
}

// TargetNamespace is where the release and its objects go: the spec's
// targetNamespace, or the HelmChart's own namespace.
func (c *Chart) TargetNamespace() string {
	if c.Spec.TargetNamespace != "" {
		return c.Spec.TargetNamespace
	}
	return c.Namespace
}

// Validate reports what is wrong with the spec, in words a user can act on.
func (c *Chart) Validate() error {
	s := c.Spec
	switch {
	case s.ChartFile != "" && s.ChartContent == "":
		return fmt.Errorf("spec.chartFile %q is read only by the k1s server, for a HelmChart in its manifests folder (<data-dir>/server/manifests) with the .tgz next to it: put both there, or embed the chart with spec.chartContent", s.ChartFile)
	case s.ChartContent == "" && s.Chart == "":
		return fmt.Errorf("spec.chart or spec.chartContent must be set: name a chart (with spec.repo) or embed a base64 .tgz")
	case s.ChartContent != "" && (s.Chart != "" || s.Repo != ""):
		return fmt.Errorf("spec.chartContent is set together with spec.chart/spec.repo: use one source of the chart")
	case s.Repo != "" && !strings.HasPrefix(s.Repo, "http://") && !strings.HasPrefix(s.Repo, "https://"):
		return fmt.Errorf("spec.repo %q: want an http:// or https:// chart repository URL", s.Repo)
	}
	return nil
}

// LoadContent decodes spec.chartContent (a base64 .tgz) into a chart.
func LoadContent(b64 string) (*chart.Chart, error) {
	// Whitespace is allowed, as `base64` wraps its output at 76 columns.
	raw, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(b64), ""))
	if err != nil {
		return nil, fmt.Errorf("spec.chartContent is not base64 (make it with `base64 -w0 chart.tgz`): %w", err)
	}
	ch, err := loader.LoadArchive(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("spec.chartContent is not a chart archive (a .tgz from `helm package`): %w", err)
	}
	return ch, nil
}

// Values are the release's values: the chart's valuesContent, the
// HelmChartConfig's valuesContent merged over it (maps key by key, the
// rest replaced), then each spec.set entry as with `helm --set`.
func Values(s Spec, config *ConfigSpec) (map[string]any, error) {
	vals, err := parseValues("spec.valuesContent", s.ValuesContent)
	if err != nil {
		return nil, err
	}
	if config != nil {
		over, err := parseValues("HelmChartConfig spec.valuesContent", config.ValuesContent)
		if err != nil {
			return nil, err
		}
		vals = mergeMaps(vals, over)
	}
	// Sorted, so that a key set twice (a.b and a) always ends the same way.
	keys := make([]string, 0, len(s.Set))
	for k := range s.Set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := s.Set[k]
		if v.Type == intstr.Int {
			if err := strvals.ParseInto(k+"="+strconv.Itoa(v.IntValue()), vals); err != nil {
				return nil, fmt.Errorf("spec.set[%q]: %w", k, err)
			}
			continue
		}
		// A comma would start a new key in Helm's syntax: the value is one value.
		esc := strings.NewReplacer(`\`, `\\`, ",", `\,`).Replace(v.StrVal)
		if err := strvals.ParseInto(k+"="+esc, vals); err != nil {
			return nil, fmt.Errorf("spec.set[%q]: %w", k, err)
		}
	}
	return vals, nil
}

func parseValues(what, content string) (map[string]any, error) {
	if strings.TrimSpace(content) == "" {
		return map[string]any{}, nil
	}
	vals, err := chartutil.ReadValues([]byte(content))
	if err != nil {
		return nil, fmt.Errorf("%s is not a YAML map: %w", what, err)
	}
	return vals.AsMap(), nil
}

// mergeMaps lays over onto base: nested maps merge, anything else in over
// replaces base's value. base is changed and returned.
func mergeMaps(base, over map[string]any) map[string]any {
	for k, v := range over {
		if vm, ok := v.(map[string]any); ok {
			if bm, ok := base[k].(map[string]any); ok {
				base[k] = mergeMaps(bm, vm)
				continue
			}
		}
		base[k] = v
	}
	return base
}

// Want is a digest of everything a release is made from: a HelmChart whose
// Want differs from the one recorded in its status needs an upgrade. It
// covers the HelmChartConfig, which does not change the HelmChart's
// generation.
func Want(s Spec, config *ConfigSpec, targetNamespace string) string {
	h := sha256.New()
	// json.Marshal sorts map keys: the same inputs give the same digest.
	b, _ := json.Marshal(struct {
		Spec      Spec
		Config    *ConfigSpec
		Namespace string
	}{s, config, targetNamespace})
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// ValuesYAML is vals as YAML, for messages and tests.
func ValuesYAML(vals map[string]any) string {
	b, err := yaml.Marshal(vals)
	if err != nil {
		return fmt.Sprint(vals)
	}
	return string(b)
}
