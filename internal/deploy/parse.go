package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// item is one object of a manifest file, with where it came from.
type item struct {
	file string // path, as shown in errors
	doc  int    // 1-based document number in the file
	idx  int    // 1-based index in a List document, 0 if not from a List
	obj  *unstructured.Unstructured
}

func (it *item) where() string {
	if it.idx > 0 {
		return fmt.Sprintf("%s: document %d, item %d", it.file, it.doc, it.idx)
	}
	return fmt.Sprintf("%s: document %d", it.file, it.doc)
}

// describe names the object: "Deployment kube-system/coredns".
func (it *item) describe() string {
	name := it.obj.GetName()
	if ns := it.obj.GetNamespace(); ns != "" {
		name = ns + "/" + name
	}
	return it.obj.GetKind() + " " + name
}

// errorf prefixes the message with where the object is; %w wraps as usual.
func (it *item) errorf(format string, args ...any) error {
	return fmt.Errorf("%s: "+format, append([]any{it.where()}, args...)...)
}

// parseManifest splits a YAML (multi-document, "---") or JSON file into
// objects, expanding List documents and skipping empty ones. It checks every
// document and returns all problems it found, each naming file and document;
// when it returns an error, the objects are not to be used.
func parseManifest(file string, data []byte) ([]*item, error) {
	var items []*item
	var errs []error
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for doc := 1; ; doc++ {
		chunk, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			// The reader cannot go past a bad separator: stop here.
			errs = append(errs, fmt.Errorf("%s: document %d: %v", file, doc, err))
			break
		}
		it := &item{file: file, doc: doc}
		v, err := decodeDocument(chunk)
		if err != nil {
			errs = append(errs, it.errorf("%v", err))
			continue
		}
		if v == nil {
			continue // empty document, or only comments
		}
		m, ok := v.(map[string]any)
		if !ok {
			errs = append(errs, it.errorf("not a Kubernetes object (want a mapping with apiVersion, kind and metadata, got %s)", jsonType(v)))
			continue
		}
		obj := &unstructured.Unstructured{Object: m}
		if err := checkObject(obj); err != nil {
			errs = append(errs, it.errorf("%v", err))
			continue
		}
		if !isList(obj) {
			it.obj = obj
			items = append(items, it)
			continue
		}
		list, isArr := m["items"].([]any)
		if !isArr && m["items"] != nil {
			errs = append(errs, it.errorf(`"items" of a %s must be a list, got %s`, obj.GetKind(), jsonType(m["items"])))
			continue
		}
		for i, e := range list {
			sub := &item{file: file, doc: doc, idx: i + 1}
			em, ok := e.(map[string]any)
			if !ok {
				errs = append(errs, sub.errorf("not a Kubernetes object (got %s)", jsonType(e)))
				continue
			}
			o := &unstructured.Unstructured{Object: em}
			if err := checkObject(o); err != nil {
				errs = append(errs, sub.errorf("%v", err))
				continue
			}
			if isList(o) {
				errs = append(errs, sub.errorf("a %s inside a List is not supported", o.GetKind()))
				continue
			}
			sub.obj = o
			items = append(items, sub)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return items, nil
}

// decodeDocument turns one YAML or JSON document into plain Go values
// (map[string]any, []any, string, int64, float64, bool), or nil for an empty
// document. Duplicate keys are an error: one of the values would be lost.
func decodeDocument(chunk []byte) (any, error) {
	if len(bytes.TrimSpace(chunk)) == 0 {
		return nil, nil
	}
	j, err := yaml.YAMLToJSONStrict(chunk)
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), "error converting YAML to JSON: ")
		return nil, fmt.Errorf("invalid YAML (line numbers count from the start of the document): %s", msg)
	}
	var v any
	// utiljson keeps integers as int64, as the apiserver's own decoder does.
	if err := utiljson.Unmarshal(j, &v); err != nil {
		return nil, fmt.Errorf("invalid document: %v", err)
	}
	return v, nil
}

// checkObject reports the first reason obj cannot be applied as it is.
func checkObject(obj *unstructured.Unstructured) error {
	av, ok, err := unstructured.NestedFieldNoCopy(obj.Object, "apiVersion")
	if err != nil || !ok || av == nil || av == "" {
		return errors.New(`missing "apiVersion"`)
	}
	s, isStr := av.(string)
	if !isStr {
		return fmt.Errorf(`"apiVersion" must be a string, got %s`, jsonType(av))
	}
	if _, err := schema.ParseGroupVersion(s); err != nil {
		return fmt.Errorf(`invalid "apiVersion" %q: %v`, s, err)
	}
	k, ok, _ := unstructured.NestedFieldNoCopy(obj.Object, "kind")
	if !ok || k == nil || k == "" {
		return errors.New(`missing "kind"`)
	}
	if _, isStr := k.(string); !isStr {
		return fmt.Errorf(`"kind" must be a string, got %s`, jsonType(k))
	}
	if isList(obj) {
		return nil
	}
	md, ok := obj.Object["metadata"]
	if !ok || md == nil {
		return errors.New(`missing "metadata.name"`)
	}
	if _, isMap := md.(map[string]any); !isMap {
		return fmt.Errorf(`"metadata" must be a mapping, got %s`, jsonType(md))
	}
	name, ok, _ := unstructured.NestedFieldNoCopy(obj.Object, "metadata", "name")
	if !ok || name == nil || name == "" {
		if gn, _, _ := unstructured.NestedString(obj.Object, "metadata", "generateName"); gn != "" {
			return errors.New(`missing "metadata.name" ("generateName" cannot be used: server-side apply needs a fixed name)`)
		}
		return errors.New(`missing "metadata.name"`)
	}
	if _, isStr := name.(string); !isStr {
		return fmt.Errorf(`"metadata.name" must be a string, got %s`, jsonType(name))
	}
	if ns, ok, _ := unstructured.NestedFieldNoCopy(obj.Object, "metadata", "namespace"); ok && ns != nil {
		if _, isStr := ns.(string); !isStr {
			return fmt.Errorf(`"metadata.namespace" must be a string, got %s`, jsonType(ns))
		}
	}
	if l, ok, _ := unstructured.NestedFieldNoCopy(obj.Object, "metadata", "labels"); ok && l != nil {
		lm, isMap := l.(map[string]any)
		if !isMap {
			return fmt.Errorf(`"metadata.labels" must be a mapping, got %s`, jsonType(l))
		}
		for k, v := range lm {
			if _, isStr := v.(string); !isStr {
				return fmt.Errorf(`"metadata.labels": the value of %q must be a string, got %s (quote it)`, k, jsonType(v))
			}
		}
	}
	return nil
}

// isList tells a List document ("kind: List", or any "...List" with an
// items array, as kubectl accepts them).
func isList(obj *unstructured.Unstructured) bool {
	kind := obj.GetKind()
	if kind == "List" {
		return true
	}
	if !strings.HasSuffix(kind, "List") {
		return false
	}
	_, isArr := obj.Object["items"].([]any)
	return isArr
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case int64, float64:
		return "a number"
	default:
		return fmt.Sprintf("%T", v)
	}
}
