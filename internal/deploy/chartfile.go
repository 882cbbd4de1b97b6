package deploy

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// helmChartKind is the kind whose spec.chartFile the Applier resolves.
var helmChartKind = schema.GroupKind{Group: "helm.k1s.io", Kind: "HelmChart"}

// MaxChartFile bounds a chart file: its base64 form travels in one object
// through the apiserver, whose datastore takes objects of about 1.5 MiB.
const MaxChartFile = 1 << 20

// chartFileOf returns spec.chartFile of a HelmChart item, or "".
func chartFileOf(it *item) string {
	if it.obj.GroupVersionKind().GroupKind() != helmChartKind {
		return ""
	}
	ref, _, _ := unstructured.NestedString(it.obj.Object, "spec", "chartFile")
	return ref
}

// readChartFile reads a chart file named by a HelmChart in dir. The name
// must stay inside the folder: a manifest cannot publish other host files
// to everyone who may read HelmCharts.
func readChartFile(dir, ref string) ([]byte, error) {
	if !filepath.IsLocal(ref) {
		return nil, fmt.Errorf("spec.chartFile %q must be a path relative to the manifests folder %s, without ..", ref, dir)
	}
	path := filepath.Join(dir, ref)
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("spec.chartFile %q: %w (put the chart .tgz from `helm package` next to the manifest)", ref, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("spec.chartFile %q: %s is not a regular file", ref, path)
	}
	if fi.Size() > MaxChartFile {
		return nil, fmt.Errorf("spec.chartFile %q is %d bytes, more than a HelmChart can carry (%d): serve the chart from a repository (spec.chart and spec.repo)", ref, fi.Size(), MaxChartFile)
	}
	return os.ReadFile(path)
}

// inlineChartFiles puts the content of each HelmChart's spec.chartFile into
// its spec.chartContent: the helm-controller runs in a Pod and cannot read
// the server's folder. chartFile stays, so the object shows where the chart
// came from.
func inlineChartFiles(dir string, items []*item) error {
	for _, it := range items {
		ref := chartFileOf(it)
		if ref == "" {
			continue
		}
		if content, _, _ := unstructured.NestedString(it.obj.Object, "spec", "chartContent"); content != "" {
			return it.errorf("%s: spec.chartFile and spec.chartContent are both set: use one", it.describe())
		}
		data, err := readChartFile(dir, ref)
		if err != nil {
			return it.errorf("%s: %w", it.describe(), err)
		}
		if err := unstructured.SetNestedField(it.obj.Object, base64.StdEncoding.EncodeToString(data), "spec", "chartContent"); err != nil {
			return it.errorf("%s: %w", it.describe(), err)
		}
	}
	return nil
}

// inputHash is the digest of what applying a file depends on: its bytes and
// the chart files its HelmCharts name, so that a new .tgz re-applies the
// manifest that points at it.
func inputHash(dir, path string, data []byte) [sha256.Size]byte {
	if !bytes.Contains(data, []byte("chartFile")) {
		return sha256.Sum256(data)
	}
	h := sha256.New()
	h.Write(data)
	items, err := parseManifest(path, data)
	if err != nil {
		return sha256.Sum256(data) // applyFile reports the parse error
	}
	for _, it := range items {
		ref := chartFileOf(it)
		if ref == "" {
			continue
		}
		fmt.Fprintf(h, "\x00%s\x00", ref)
		if chart, err := readChartFile(dir, ref); err == nil {
			h.Write(chart)
		} else {
			h.Write([]byte(err.Error()))
		}
	}
	var sum [sha256.Size]byte
	copy(sum[:], h.Sum(nil))
	return sum
}
