package deploy

import (
	"strings"
	"testing"
)

func TestParseMultiDocumentAndList(t *testing.T) {
	in := `---
# leading separator and comments
apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
---
# only a comment: an empty document
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata:
    name: one
    namespace: demo
  data:
    replicas: "3"
- apiVersion: apps/v1
  kind: Deployment
  metadata:
    name: two
  spec:
    replicas: 3
--- # a comment after the separator
apiVersion: v1
kind: Service
metadata: {name: svc, labels: {app: web}}
`
	items, err := parseManifest("/m/app.yaml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		kind, name string
		doc, idx   int
	}
	wants := []want{
		{"Namespace", "demo", 1, 0},
		{"ConfigMap", "one", 3, 1},
		{"Deployment", "two", 3, 2},
		{"Service", "svc", 4, 0},
	}
	if len(items) != len(wants) {
		t.Fatalf("got %d items, want %d", len(items), len(wants))
	}
	for i, w := range wants {
		it := items[i]
		if it.obj.GetKind() != w.kind || it.obj.GetName() != w.name || it.doc != w.doc || it.idx != w.idx {
			t.Errorf("item %d = %s %s doc %d idx %d, want %+v", i, it.obj.GetKind(), it.obj.GetName(), it.doc, it.idx, w)
		}
	}
	// Integers stay integers (not float64), as the apiserver expects.
	if r, ok := items[2].obj.Object["spec"].(map[string]any)["replicas"].(int64); !ok || r != 3 {
		t.Errorf("replicas = %#v, want int64 3", items[2].obj.Object["spec"].(map[string]any)["replicas"])
	}
	if items[3].obj.GetLabels()["app"] != "web" {
		t.Errorf("labels = %v", items[3].obj.GetLabels())
	}
}

func TestParseJSON(t *testing.T) {
	in := `{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "x"}, "data": {"a": "b"}}`
	items, err := parseManifest("/m/cm.json", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 || items[0].obj.GetName() != "cm" || items[0].obj.GetNamespace() != "x" {
		t.Fatalf("items = %+v", items)
	}
}

func TestParseEmptyFile(t *testing.T) {
	for _, in := range []string{"", "\n\n", "# nothing\n", "---\n---\n"} {
		items, err := parseManifest("/m/e.yaml", []byte(in))
		if err != nil || len(items) != 0 {
			t.Errorf("parse(%q) = %d items, err %v; want none, no error", in, len(items), err)
		}
	}
}

func TestParseErrorsNameFileAndDocument(t *testing.T) {
	good := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok\n"
	cases := []struct {
		name, doc2 string
		want       []string
	}{
		{"missing kind", "apiVersion: v1\nmetadata:\n  name: x\n", []string{`/m/bad.yaml: document 2: missing "kind"`}},
		{"missing apiVersion", "kind: ConfigMap\nmetadata:\n  name: x\n", []string{`/m/bad.yaml: document 2: missing "apiVersion"`}},
		{"missing name", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  labels: {a: b}\n", []string{`/m/bad.yaml: document 2: missing "metadata.name"`}},
		{"generateName", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  generateName: x-\n", []string{`document 2: missing "metadata.name"`, "generateName"}},
		{"syntax", "apiVersion: v1\nkind: ConfigMap\n  metadata: [\n", []string{"/m/bad.yaml: document 2: invalid YAML", "line"}},
		{"tab indentation", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n\tname: x\n", []string{"/m/bad.yaml: document 2: invalid YAML"}},
		{"scalar", "just a string\n", []string{"/m/bad.yaml: document 2: not a Kubernetes object", "a string"}},
		{"duplicate key", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  a: one\n  a: two\n", []string{"/m/bad.yaml: document 2: invalid YAML", `"a"`}},
		{"numeric label", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  labels:\n    version: 1\n", []string{"/m/bad.yaml: document 2:", `"version"`, "quote it"}},
		{"bad apiVersion", "apiVersion: a/b/c\nkind: ConfigMap\nmetadata:\n  name: x\n", []string{`/m/bad.yaml: document 2: invalid "apiVersion"`}},
		{"list item", "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: x}\n- apiVersion: v1\n  metadata: {name: y}\n", []string{`/m/bad.yaml: document 2, item 2: missing "kind"`}},
		{"bad separator", "--- !!map\n" + good, []string{"/m/bad.yaml: document 1:", "separator"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := good + "---\n" + c.doc2 + "---\n" + strings.Replace(good, "name: ok", "name: ok2", 1)
			if c.name == "bad separator" {
				in = good + c.doc2
			}
			items, err := parseManifest("/m/bad.yaml", []byte(in))
			if err == nil {
				t.Fatalf("no error; items %d", len(items))
			}
			if items != nil {
				t.Errorf("returned %d items along with the error", len(items))
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestParseReportsEveryBadDocument(t *testing.T) {
	in := "apiVersion: v1\n---\nkind: X\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: fine}\n"
	_, err := parseManifest("/m/f.yaml", []byte(in))
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range []string{`document 1: missing "kind"`, `document 2: missing "apiVersion"`} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
	if strings.Contains(err.Error(), "document 3") {
		t.Errorf("error %q blames the good document", err)
	}
}

func TestLabelValue(t *testing.T) {
	cases := map[string]string{
		"coredns.yaml":                    "coredns",
		"my app!.yml":                     "my-app",
		"_x.json":                         "x",
		"a.b.yaml":                        "a.b",
		"@@@.yaml":                        "unnamed",
		strings.Repeat("a", 70) + ".yaml": strings.Repeat("a", 63),
	}
	for in, want := range cases {
		if got := labelValue(in); got != want {
			t.Errorf("labelValue(%q) = %q, want %q", in, got, want)
		}
	}
}
