package deploy

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var gvrHelmCharts = schema.GroupVersionResource{Group: "helm.k1s.io", Version: "v1", Resource: "helmcharts"}

func helmHarness(t *testing.T) *harness {
	h := newHarness(t)
	h.disc.Resources = append(h.disc.Resources, &metav1.APIResourceList{
		GroupVersion: "helm.k1s.io/v1", APIResources: []metav1.APIResource{res("helmcharts", "HelmChart", true)},
	})
	return h
}

func helmChartYAML(ref string) string {
	return `apiVersion: helm.k1s.io/v1
kind: HelmChart
metadata: {name: web, namespace: kube-system}
spec:
  chartFile: ` + ref + `
  valuesContent: "replicas: 1"
`
}

func chartContent(t *testing.T, h *harness) (content, file string) {
	t.Helper()
	obj, err := h.get(gvrHelmCharts, "kube-system", "web")
	if err != nil {
		t.Fatal(err)
	}
	content, _, _ = unstructured.NestedString(obj.Object, "spec", "chartContent")
	file, _, _ = unstructured.NestedString(obj.Object, "spec", "chartFile")
	return content, file
}

func TestChartFileIsInlinedAndFollowed(t *testing.T) {
	h := helmHarness(t)
	h.write("web-1.0.0.tgz", "chart v1")
	h.write("web.yaml", helmChartYAML("web-1.0.0.tgz"))
	ctx := context.Background()
	if err := h.a.ApplyAll(ctx); err != nil {
		t.Fatal(err)
	}
	if got := keys(h.take()); !equal(got, []string{"helmcharts:kube-system/web"}) {
		t.Fatalf("applied %v", got)
	}
	content, file := chartContent(t, h)
	if content != base64.StdEncoding.EncodeToString([]byte("chart v1")) || file != "web-1.0.0.tgz" {
		t.Fatalf("chartContent %q chartFile %q", content, file)
	}

	// Nothing changed: nothing applied.
	if err := h.a.ApplyAll(ctx); err != nil {
		t.Fatal(err)
	}
	if got := h.take(); len(got) != 0 {
		t.Fatalf("unchanged manifest and chart re-applied: %v", keys(got))
	}

	// Only the .tgz changed: the manifest is applied again with it.
	h.write("web-1.0.0.tgz", "chart v2")
	if err := h.a.ApplyAll(ctx); err != nil {
		t.Fatal(err)
	}
	if got := keys(h.take()); !equal(got, []string{"helmcharts:kube-system/web"}) {
		t.Fatalf("after the chart changed applied %v", got)
	}
	if content, _ := chartContent(t, h); content != base64.StdEncoding.EncodeToString([]byte("chart v2")) {
		t.Fatalf("chartContent after the change: %q", content)
	}
}

func TestChartFileErrors(t *testing.T) {
	for _, tc := range []struct {
		name, manifest string
		setup          func(dir string)
		want           string
	}{
		{name: "missing", manifest: helmChartYAML("nothere.tgz"), want: `spec.chartFile "nothere.tgz"`},
		{name: "outside", manifest: helmChartYAML("../secret.tgz"), want: "relative to the manifests folder"},
		{name: "absolute", manifest: helmChartYAML("/etc/shadow"), want: "relative to the manifests folder"},
		{name: "directory", manifest: helmChartYAML("charts"),
			setup: func(dir string) { os.Mkdir(filepath.Join(dir, "charts"), 0o700) }, want: "not a regular file"},
		{name: "too big", manifest: helmChartYAML("big.tgz"),
			setup: func(dir string) {
				os.WriteFile(filepath.Join(dir, "big.tgz"), bytes.Repeat([]byte{1}, MaxChartFile+1), 0o600)
			}, want: "serve the chart from a repository"},
		{name: "both sources", manifest: strings.Replace(helmChartYAML("web.tgz"), "  valuesContent", "  chartContent: abc\n  valuesContent", 1),
			setup: func(dir string) { os.WriteFile(filepath.Join(dir, "web.tgz"), []byte("x"), 0o600) }, want: "both set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := helmHarness(t)
			if tc.setup != nil {
				tc.setup(h.dir)
			}
			h.write("web.yaml", tc.manifest+"---\n"+cmYAML("beside"))
			err := h.a.ApplyAll(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "web.yaml: document 1") {
				t.Fatalf("error %v, want one naming web.yaml document 1 and %q", err, tc.want)
			}
			if got := h.take(); len(got) != 0 {
				t.Fatalf("applied %v from a file whose chart could not be read", keys(got))
			}
		})
	}
}
