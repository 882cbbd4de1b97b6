package helmctl

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// chartTgz packs files (path inside the chart folder -> content) as
// `helm package` would: everything under one top folder.
func chartTgz(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for name, content := range files {
		if err := tw.WriteHeader(&tar.Header{Name: "demo/" + name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestLoadContent(t *testing.T) {
	tgz := chartTgz(t, map[string]string{
		"Chart.yaml":        "apiVersion: v2\nname: demo\nversion: 0.1.0\n",
		"values.yaml":       "greeting: hello\n",
		"templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
	})
	b64 := base64.StdEncoding.EncodeToString(tgz)
	// Wrapped like `base64` without -w0 prints it.
	var wrapped strings.Builder
	for i := 0; i < len(b64); i += 76 {
		wrapped.WriteString(b64[i:min(i+76, len(b64))] + "\n")
	}
	for name, in := range map[string]string{"one line": b64, "wrapped": wrapped.String()} {
		ch, err := LoadContent(in)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if ch.Metadata.Name != "demo" || ch.Metadata.Version != "0.1.0" || len(ch.Templates) != 1 || ch.Values["greeting"] != "hello" {
			t.Errorf("%s: chart %+v templates %d values %v", name, ch.Metadata, len(ch.Templates), ch.Values)
		}
	}

	if _, err := LoadContent("not base64!"); err == nil || !strings.Contains(err.Error(), "not base64") {
		t.Errorf("bad base64: %v", err)
	}
	if _, err := LoadContent(base64.StdEncoding.EncodeToString([]byte("plain text"))); err == nil || !strings.Contains(err.Error(), "not a chart archive") {
		t.Errorf("not a tgz: %v", err)
	}
	noChartYAML := chartTgz(t, map[string]string{"values.yaml": "a: 1\n"})
	if _, err := LoadContent(base64.StdEncoding.EncodeToString(noChartYAML)); err == nil || !strings.Contains(err.Error(), "Chart.yaml") {
		t.Errorf("archive without Chart.yaml: %v", err)
	}
}

func TestValues(t *testing.T) {
	s := Spec{
		ValuesContent: "a:\n  b: 1\n  c: [x, y]\nkeep: yes-string\nname: base\n",
		Set: map[string]intstr.IntOrString{
			"a.d":      intstr.FromInt32(7),
			"list":     intstr.FromString("p,q"),
			"flag":     intstr.FromString("true"),
			"nested.x": intstr.FromString(`back\slash`),
		},
	}
	cfg := &ConfigSpec{ValuesContent: "a:\n  c: [z]\n  e: new\nname: override\n"}
	got, err := Values(s, cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"a": map[string]any{
			"b": float64(1), // YAML numbers come back as JSON numbers
			"c": []any{"z"}, // lists are replaced, not merged
			"d": int64(7),   // spec.set ints stay ints
			"e": "new",
		},
		"keep":   "yes-string",
		"name":   "override",
		"list":   "p,q", // one value: the comma does not start a key
		"flag":   true,  // as `helm --set` reads it
		"nested": map[string]any{"x": `back\slash`},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("values:\n%s\nwant:\n%s", ValuesYAML(got), ValuesYAML(want))
	}

	empty, err := Values(Spec{}, nil)
	if err != nil || len(empty) != 0 {
		t.Errorf("empty spec: %v %v", empty, err)
	}
	if _, err := Values(Spec{ValuesContent: "- a list\n"}, nil); err == nil || !strings.Contains(err.Error(), "spec.valuesContent") {
		t.Errorf("list as values: %v", err)
	}
	if _, err := Values(Spec{}, &ConfigSpec{ValuesContent: "a: [\n"}); err == nil || !strings.Contains(err.Error(), "HelmChartConfig") {
		t.Errorf("broken config values: %v", err)
	}
	if _, err := Values(Spec{Set: map[string]intstr.IntOrString{"a[": intstr.FromString("1")}}, nil); err == nil || !strings.Contains(err.Error(), `spec.set["a["]`) {
		t.Errorf("bad set key: %v", err)
	}
}

func TestFromUnstructuredAndValidate(t *testing.T) {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "helm.k1s.io/v1", "kind": "HelmChart",
		"metadata": map[string]any{"name": "web", "namespace": "apps", "generation": int64(3)},
		"spec": map[string]any{
			"chart": "nginx", "repo": "https://charts.example.com", "version": "1.2.3",
			"set": map[string]any{"replicas": int64(2), "image.tag": "v1"},
		},
	}}
	hc, err := FromUnstructured(u)
	if err != nil {
		t.Fatal(err)
	}
	if hc.Generation != 3 || hc.Spec.Chart != "nginx" || hc.Spec.Set["replicas"].IntVal != 2 || hc.Spec.Set["image.tag"].StrVal != "v1" {
		t.Errorf("read %+v", hc)
	}
	if hc.TargetNamespace() != "apps" {
		t.Errorf("target namespace %q, want the HelmChart's own", hc.TargetNamespace())
	}
	hc.Spec.TargetNamespace = "other"
	if hc.TargetNamespace() != "other" {
		t.Errorf("target namespace %q", hc.TargetNamespace())
	}
	if err := hc.Validate(); err != nil {
		t.Errorf("valid spec: %v", err)
	}

	u.Object["spec"] = map[string]any{"set": "not a map"}
	if _, err := FromUnstructured(u); err == nil || !strings.Contains(err.Error(), "HelmChart apps/web: spec") {
		t.Errorf("bad spec: %v", err)
	}

	for _, tc := range []struct {
		spec Spec
		want string
	}{
		{Spec{}, "spec.chart or spec.chartContent"},
		{Spec{ChartContent: "x", Chart: "y"}, "one source"},
		{Spec{Chart: "y", Repo: "ftp://x"}, "http:// or https://"},
		{Spec{ChartFile: "web.tgz"}, "read only by the k1s server"},
	} {
		err := (&Chart{Spec: tc.spec}).Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.spec, err, tc.want)
		}
	}
}

func TestWant(t *testing.T) {
	s := Spec{ChartContent: "abc", ValuesContent: "a: 1"}
	w := Want(s, nil, "ns")
	if w != Want(s, nil, "ns") {
		t.Error("same inputs, different digests")
	}
	s2 := s
	s2.ValuesContent = "a: 2"
	for name, other := range map[string]string{
		"values":    Want(s2, nil, "ns"),
		"config":    Want(s, &ConfigSpec{ValuesContent: "b: 1"}, "ns"),
		"namespace": Want(s, nil, "other"),
	} {
		if other == w {
			t.Errorf("a change of %s keeps the digest", name)
		}
	}
}
