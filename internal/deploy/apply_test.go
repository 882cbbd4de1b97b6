package deploy

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/discovery/cached/memory"
	fakediscovery "k8s.io/client-go/discovery/fake"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/restmapper"
	clienttesting "k8s.io/client-go/testing"
)

var (
	gvrNamespaces  = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	gvrConfigMaps  = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	gvrServices    = schema.GroupVersionResource{Version: "v1", Resource: "services"}
	gvrDeployments = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	gvrCRDs        = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	gvrWidgets     = schema.GroupVersionResource{Group: "example.com", Version: "v1", Resource: "widgets"}
)

// applied is one server-side apply that reached the fake apiserver.
type applied struct {
	gvr       schema.GroupVersionResource
	namespace string
	name      string
	obj       *unstructured.Unstructured
	opts      metav1.PatchOptions
}

// harness is a fake apiserver: a dynamic client whose apply patches create
// or replace objects in its tracker, and a fake discovery behind the same
// memory-cached deferred RESTMapper that New uses.
type harness struct {
	t    *testing.T
	dir  string
	dyn  *dynamicfake.FakeDynamicClient
	disc *fakediscovery.FakeDiscovery
	a    *Applier
	logs *logtest.Hook

	mu      sync.Mutex
	applies []applied
	// serveCRDs: when a CRD is applied, add its resource to discovery.
	serveCRDs bool
}

func res(name, kind string, namespaced bool) metav1.APIResource {
	return metav1.APIResource{Name: name, Kind: kind, Namespaced: namespaced,
		Verbs: metav1.Verbs{"get", "list", "create", "update", "patch", "delete"}}
}

func newHarness(t *testing.T) *harness {
	h := &harness{t: t, dir: t.TempDir(), serveCRDs: true}
	h.disc = &fakediscovery.FakeDiscovery{Fake: &clienttesting.Fake{}}
	h.disc.Resources = []*metav1.APIResourceList{
		{GroupVersion: "v1", APIResources: []metav1.APIResource{
			res("namespaces", "Namespace", false),
			res("configmaps", "ConfigMap", true),
			res("services", "Service", true),
		}},
		{GroupVersion: "apps/v1", APIResources: []metav1.APIResource{res("deployments", "Deployment", true)}},
		{GroupVersion: "apiextensions.k8s.io/v1", APIResources: []metav1.APIResource{res("customresourcedefinitions", "CustomResourceDefinition", false)}},
	}
	h.dyn = dynamicfake.NewSimpleDynamicClient(runtime.NewScheme())
	h.dyn.PrependReactor("patch", "*", h.applyReactor)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(h.disc))
	logger, hook := logtest.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	h.logs = hook
	h.a = newApplier(h.dyn, mapper, h.dir, logger)
	h.a.crdWait = 300 * time.Millisecond
	h.a.crdPoll = 20 * time.Millisecond
	return h
}

func (h *harness) applyReactor(action clienttesting.Action) (bool, runtime.Object, error) {
	pa, ok := action.(clienttesting.PatchActionImpl)
	if !ok || pa.GetPatchType() != types.ApplyPatchType {
		return false, nil, nil
	}
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(pa.GetPatch()); err != nil {
		return true, nil, apierrors.NewBadRequest(err.Error())
	}
	if obj.GetName() != pa.GetName() {
		return true, nil, apierrors.NewBadRequest("name in body differs from name in URL")
	}
	if obj.GetNamespace() != pa.GetNamespace() {
		return true, nil, apierrors.NewBadRequest("namespace in body differs from namespace in URL")
	}
	// A stand-in for the apiserver's validation.
	if _, bad := obj.GetAnnotations()["test/invalid"]; bad {
		return true, nil, apierrors.NewInvalid(obj.GroupVersionKind().GroupKind(), obj.GetName(),
			field.ErrorList{field.Invalid(field.NewPath("spec", "bogus"), "x", "not a field")})
	}
	h.mu.Lock()
	h.applies = append(h.applies, applied{gvr: pa.GetResource(), namespace: pa.GetNamespace(), name: pa.GetName(), obj: obj, opts: pa.PatchOptions})
	h.mu.Unlock()

	tr := h.dyn.Tracker()
	gvr, ns := pa.GetResource(), pa.GetNamespace()
	var err error
	// As the apiserver: a UID for a new object, the same UID on an update.
	if cur, getErr := tr.Get(gvr, ns, obj.GetName()); apierrors.IsNotFound(getErr) {
		obj.SetUID(types.UID("uid-" + obj.GetName()))
		err = tr.Create(gvr, obj, ns)
	} else {
		obj.SetUID(cur.(metav1.Object).GetUID())
		err = tr.Update(gvr, obj, ns)
	}
	if err != nil {
		return true, nil, err
	}
	if h.serveCRDs && gvr == gvrCRDs {
		group, _, _ := unstructured.NestedString(obj.Object, "spec", "group")
		kind, _, _ := unstructured.NestedString(obj.Object, "spec", "names", "kind")
		plural, _, _ := unstructured.NestedString(obj.Object, "spec", "names", "plural")
		scope, _, _ := unstructured.NestedString(obj.Object, "spec", "scope")
		h.disc.Resources = append(h.disc.Resources, &metav1.APIResourceList{
			GroupVersion: group + "/v1",
			APIResources: []metav1.APIResource{res(plural, kind, scope == "Namespaced")},
		})
	}
	return true, obj, nil
}

func (h *harness) write(name, content string) {
	h.t.Helper()
	if err := os.WriteFile(filepath.Join(h.dir, name), []byte(content), 0o600); err != nil {
		h.t.Fatal(err)
	}
}

// take returns and forgets the applies seen so far.
func (h *harness) take() []applied {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.applies
	h.applies = nil
	return out
}

func keys(as []applied) []string {
	var out []string
	for _, a := range as {
		k := a.gvr.Resource + ":" + a.name
		if a.namespace != "" {
			k = a.gvr.Resource + ":" + a.namespace + "/" + a.name
		}
		out = append(out, k)
	}
	return out
}

func (h *harness) get(gvr schema.GroupVersionResource, ns, name string) (*unstructured.Unstructured, error) {
	var ri interface {
		Get(context.Context, string, metav1.GetOptions, ...string) (*unstructured.Unstructured, error)
	} = h.dyn.Resource(gvr)
	if ns != "" {
		ri = h.dyn.Resource(gvr).Namespace(ns)
	}
	return ri.Get(context.Background(), name, metav1.GetOptions{})
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

const cm = `apiVersion: v1
kind: ConfigMap
metadata:
  name: %s
`

func cmYAML(name string) string { return strings.Replace(cm, "%s", name, 1) }

func TestApplyAllAppliesEveryManifestFile(t *testing.T) {
	h := newHarness(t)
	// Namespace listed after the objects that need it: it goes first.
	h.write("10-app.yaml", `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
  labels: {app: web}
spec:
  replicas: 2
---
apiVersion: v1
kind: Service
metadata:
  name: web
---
apiVersion: v1
kind: Namespace
metadata:
  name: demo
  namespace: ignored-for-cluster-scoped
`)
	h.write("20-data.json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"from-json","namespace":"demo"}}`)
	h.write("30-extra.yml", cmYAML("from-yml"))
	h.write(".hidden.yaml", cmYAML("hidden"))
	h.write("notes.txt", cmYAML("txt"))
	h.write("off.yaml", cmYAML("off"))
	h.write("off.yaml.skip", "")
	h.write("old.yaml.skip", cmYAML("skipfile"))
	if err := os.Mkdir(filepath.Join(h.dir, "sub.yaml"), 0o700); err != nil {
		t.Fatal(err)
	}

	if err := h.a.ApplyAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := h.take()
	want := []string{
		"namespaces:demo",
		"deployments:demo/web",
		"services:default/web", // no namespace: "default", as kubectl does
		"configmaps:demo/from-json",
		"configmaps:default/from-yml",
	}
	if !equal(keys(got), want) {
		t.Fatalf("applied %v, want %v", keys(got), want)
	}
	wantLabel := []string{"10-app", "10-app", "10-app", "20-data", "30-extra"}
	for i, a := range got {
		if a.opts.FieldManager != "k1s-deploy" || a.opts.Force == nil || !*a.opts.Force {
			t.Errorf("%s: patch options %+v, want field manager k1s-deploy and force", keys(got)[i], a.opts)
		}
		if l := a.obj.GetLabels()[LabelManifest]; l != wantLabel[i] {
			t.Errorf("%s: label %s = %q, want %q", keys(got)[i], LabelManifest, l, wantLabel[i])
		}
	}
	if got[0].obj.GetNamespace() != "" {
		t.Errorf("cluster-scoped Namespace sent with namespace %q", got[0].obj.GetNamespace())
	}
	// The manifest's own labels survive, and the object reached the cluster.
	dep, err := h.get(gvrDeployments, "demo", "web")
	if err != nil {
		t.Fatal(err)
	}
	if dep.GetLabels()["app"] != "web" || dep.GetLabels()[LabelManifest] != "10-app" {
		t.Errorf("deployment labels = %v", dep.GetLabels())
	}
	if r, _, _ := unstructured.NestedInt64(dep.Object, "spec", "replicas"); r != 2 {
		t.Errorf("replicas = %d", r)
	}
}

func TestApplyAllReappliesOnlyChangedFiles(t *testing.T) {
	h := newHarness(t)
	h.write("a.yaml", cmYAML("a"))
	h.write("b.yaml", cmYAML("b"))
	ctx := context.Background()
	if err := h.a.ApplyAll(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(h.take()); n != 2 {
		t.Fatalf("first pass applied %d objects, want 2", n)
	}
	if err := h.a.ApplyAll(ctx); err != nil {
		t.Fatal(err)
	}
	if got := h.take(); len(got) != 0 {
		t.Fatalf("unchanged files re-applied: %v", keys(got))
	}
	h.write("b.yaml", cmYAML("b")+"data:\n  k: v\n")
	if err := h.a.ApplyAll(ctx); err != nil {
		t.Fatal(err)
	}
	if got := keys(h.take()); !equal(got, []string{"configmaps:default/b"}) {
		t.Fatalf("after editing b.yaml applied %v, want only b", got)
	}
	// A file that went away and came back with the same content is applied
	// again (its objects may have been deleted meanwhile).
	os.Rename(filepath.Join(h.dir, "a.yaml"), filepath.Join(h.dir, ".a.yaml"))
	if err := h.a.ApplyAll(ctx); err != nil {
		t.Fatal(err)
	}
	os.Rename(filepath.Join(h.dir, ".a.yaml"), filepath.Join(h.dir, "a.yaml"))
	if err := h.a.ApplyAll(ctx); err != nil {
		t.Fatal(err)
	}
	if got := keys(h.take()); !equal(got, []string{"configmaps:default/a"}) {
		t.Fatalf("after a.yaml came back applied %v", got)
	}
}

func TestApplyAllBadFileAppliesNothingFromIt(t *testing.T) {
	h := newHarness(t)
	h.write("a-good.yaml", cmYAML("good-a"))
	h.write("bad.yaml", cmYAML("from-bad-1")+"---\napiVersion: v1\nmetadata:\n  name: nokind\n---\n"+cmYAML("from-bad-3"))
	h.write("unknown.yaml", cmYAML("from-unknown")+"---\napiVersion: example.com/v1\nkind: Gadget\nmetadata:\n  name: g\n")
	h.write("z-good.yaml", cmYAML("good-z"))

	err := h.a.ApplyAll(context.Background())
	if err == nil {
		t.Fatal("ApplyAll succeeded with bad files")
	}
	t.Logf("ApplyAll error:\n%v", err)
	msg := err.Error()
	for _, w := range []string{
		filepath.Join(h.dir, "bad.yaml") + `: document 2: missing "kind"`,
		filepath.Join(h.dir, "unknown.yaml") + `: document 2: unknown kind "Gadget" in apiVersion "example.com/v1"`,
	} {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not contain %q", msg, w)
		}
	}
	if joined, ok := err.(interface{ Unwrap() []error }); !ok || len(joined.Unwrap()) != 2 {
		t.Errorf("error is not a join of the 2 per-file errors: %#v", err)
	}
	if got := keys(h.take()); !equal(got, []string{"configmaps:default/good-a", "configmaps:default/good-z"}) {
		t.Fatalf("applied %v, want only the good files", got)
	}
	for _, name := range []string{"from-bad-1", "from-bad-3", "from-unknown"} {
		if _, err := h.get(gvrConfigMaps, "default", name); !apierrors.IsNotFound(err) {
			t.Errorf("%s reached the cluster (get: %v)", name, err)
		}
	}

	// The failed files are tried again on every pass; once fixed, applied.
	h.write("bad.yaml", cmYAML("from-bad-1"))
	err = h.a.ApplyAll(context.Background())
	if err == nil || !strings.Contains(err.Error(), "unknown.yaml") || strings.Contains(err.Error(), "bad.yaml") {
		t.Errorf("second pass error = %v, want only unknown.yaml", err)
	}
	if got := keys(h.take()); !equal(got, []string{"configmaps:default/from-bad-1"}) {
		t.Fatalf("second pass applied %v", got)
	}
	// The kind appears (a CRD installed by someone else): applied next pass.
	h.disc.Resources = append(h.disc.Resources, &metav1.APIResourceList{
		GroupVersion: "example.com/v1", APIResources: []metav1.APIResource{res("gadgets", "Gadget", true)}})
	if err := h.a.ApplyAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := keys(h.take()); !equal(got, []string{"configmaps:default/from-unknown", "gadgets:default/g"}) {
		t.Fatalf("third pass applied %v", got)
	}
}

func TestApplyAllNamesObjectOnApiserverError(t *testing.T) {
	h := newHarness(t)
	h.write("app.yaml", cmYAML("first")+"---\n"+`apiVersion: v1
kind: ConfigMap
metadata:
  name: broken
  namespace: kube-system
  annotations: {test/invalid: "yes"}
---
`+cmYAML("third"))
	err := h.a.ApplyAll(context.Background())
	if err == nil {
		t.Fatal("no error")
	}
	want := filepath.Join(h.dir, "app.yaml") + ": document 2: ConfigMap kube-system/broken: "
	if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "not a field") {
		t.Errorf("error %q does not contain %q and the apiserver's message", err, want)
	}
	if !apierrors.IsInvalid(err) {
		t.Errorf("error does not wrap the apiserver's Invalid status")
	}
	// The other objects of the file are applied.
	if got := keys(h.take()); !equal(got, []string{"configmaps:default/first", "configmaps:default/third"}) {
		t.Fatalf("applied %v", got)
	}
	// Failed: the whole file is applied again on the next pass.
	if err := h.a.ApplyAll(context.Background()); err == nil {
		t.Error("second pass: no error")
	}
	if got := keys(h.take()); !equal(got, []string{"configmaps:default/first", "configmaps:default/third"}) {
		t.Fatalf("second pass applied %v, want the file again", got)
	}
}

const widgetCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
`

func TestApplyAllCRDAndItsObjectsInOneFile(t *testing.T) {
	h := newHarness(t)
	// The Widget comes first in the file, and its kind is unknown until the
	// CRD is applied: the CRD goes first, then the mapper is reset.
	h.write("widgets.yaml", `apiVersion: example.com/v1
kind: Widget
metadata:
  name: w1
spec: {size: 3}
---
`+widgetCRD)
	ctx := context.Background()
	// Warm the mapper's cache before the CRD exists.
	if _, err := h.a.mapper.RESTMapping(schema.GroupKind{Kind: "ConfigMap"}, "v1"); err != nil {
		t.Fatal(err)
	}
	if err := h.a.ApplyAll(ctx); err != nil {
		t.Fatal(err)
	}
	got := h.take()
	if !equal(keys(got), []string{"customresourcedefinitions:widgets.example.com", "widgets:default/w1"}) {
		t.Fatalf("applied %v", keys(got))
	}
	if got[1].gvr != gvrWidgets {
		t.Errorf("widget applied to %v", got[1].gvr)
	}
}

func TestApplyAllCRDNotServedInTime(t *testing.T) {
	h := newHarness(t)
	h.serveCRDs = false // the apiserver never establishes the CRD
	h.write("widgets.yaml", widgetCRD+"---\napiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w1\n")
	start := time.Now()
	err := h.a.ApplyAll(context.Background())
	if err == nil {
		t.Fatal("no error")
	}
	if !strings.Contains(err.Error(), `document 2: Widget w1: the apiserver does not serve kind "Widget"`) {
		t.Errorf("error = %q", err)
	}
	if d := time.Since(start); d < h.a.crdWait {
		t.Errorf("gave up after %v, before crdWait %v", d, h.a.crdWait)
	}
	if got := keys(h.take()); !equal(got, []string{"customresourcedefinitions:widgets.example.com"}) {
		t.Errorf("applied %v", got)
	}
}

func TestApplyAllMissingDirIsNotAnError(t *testing.T) {
	h := newHarness(t)
	h.a.dir = filepath.Join(h.dir, "nope")
	if err := h.a.ApplyAll(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestRunAppliesNewFilesAndStops(t *testing.T) {
	h := newHarness(t)
	h.write("bad.yaml", "kind: X\n")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.a.Run(ctx, 10*time.Millisecond) }()
	time.Sleep(50 * time.Millisecond)
	h.write("late.yaml", cmYAML("late"))
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := h.get(gvrConfigMaps, "default", "late"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("late.yaml never applied")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run returned %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	// The bad file's error was logged once, not on every pass.
	n := 0
	for _, e := range h.logs.AllEntries() {
		if e.Level == logrus.ErrorLevel && strings.Contains(e.Message, "bad.yaml") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("bad.yaml error logged %d times, want once", n)
	}
}

func (h *harness) create(gvr schema.GroupVersionResource, ns, yaml string) {
	h.t.Helper()
	items, err := parseManifest("fixture", []byte(yaml))
	if err != nil {
		h.t.Fatal(err)
	}
	for _, it := range items {
		it.obj.SetUID(types.UID("uid-" + it.obj.GetName()))
		if err := h.dyn.Tracker().Create(gvr, it.obj, ns); err != nil {
			h.t.Fatal(err)
		}
	}
}

func TestRemoveDeletesOnlyTheAddonsObjects(t *testing.T) {
	h := newHarness(t)
	labelled := "  labels: {k1s.io/manifest: traefik}\n"
	h.create(gvrNamespaces, "", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: traefik\n"+labelled)
	h.create(gvrCRDs, "", strings.Replace(widgetCRD, "  name: widgets.example.com\n", "  name: widgets.example.com\n"+labelled, 1))
	h.create(gvrDeployments, "traefik", "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: traefik\n  namespace: traefik\n"+labelled)
	h.create(gvrServices, "default", "apiVersion: v1\nkind: Service\nmetadata:\n  name: traefik\n  namespace: default\n"+labelled)
	// Same name, but not created from the traefik manifest: a user's.
	h.create(gvrConfigMaps, "traefik", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: traefik-config\n  namespace: traefik\n  labels: {app: mine}\n")

	manifest := `apiVersion: v1
kind: Namespace
metadata:
  name: traefik
---
` + widgetCRD + `---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: traefik
  namespace: traefik
---
apiVersion: v1
kind: Service
metadata:
  name: traefik
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: traefik-config
  namespace: traefik
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: never-created
  namespace: traefik
---
apiVersion: example.com/v1
kind: Gadget
metadata:
  name: unknown-kind
`
	h.dyn.ClearActions()
	if err := h.a.Remove(context.Background(), "traefik", []byte(manifest)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.get(gvrDeployments, "traefik", "traefik"); !apierrors.IsNotFound(err) {
		t.Errorf("deployment still there (get: %v)", err)
	}
	if _, err := h.get(gvrServices, "default", "traefik"); !apierrors.IsNotFound(err) {
		t.Errorf("service (namespace defaulted) still there (get: %v)", err)
	}
	for _, keep := range []struct {
		gvr      schema.GroupVersionResource
		ns, name string
	}{{gvrNamespaces, "", "traefik"}, {gvrCRDs, "", "widgets.example.com"}, {gvrConfigMaps, "traefik", "traefik-config"}} {
		if _, err := h.get(keep.gvr, keep.ns, keep.name); err != nil {
			t.Errorf("%s %s/%s was deleted: %v", keep.gvr.Resource, keep.ns, keep.name, err)
		}
	}
	var deletes []string
	for _, a := range h.dyn.Actions() {
		if d, ok := a.(clienttesting.DeleteActionImpl); ok {
			deletes = append(deletes, d.GetResource().Resource+":"+d.GetName())
			if p := d.DeleteOptions.PropagationPolicy; p == nil || *p != metav1.DeletePropagationBackground {
				t.Errorf("delete %s: propagation %v, want Background", d.GetName(), p)
			}
			if d.DeleteOptions.Preconditions == nil || d.DeleteOptions.Preconditions.UID == nil {
				t.Errorf("delete %s without a UID precondition", d.GetName())
			}
		}
	}
	// Reverse file order: the Service before the Deployment.
	if !equal(deletes, []string{"services:traefik", "deployments:traefik"}) {
		t.Errorf("deletes = %v", deletes)
	}
	// Running it again is harmless.
	if err := h.a.Remove(context.Background(), "traefik", []byte(manifest)); err != nil {
		t.Fatal(err)
	}
}

func TestRemoveBadManifest(t *testing.T) {
	h := newHarness(t)
	err := h.a.Remove(context.Background(), "coredns", []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n---\nkind: Y\n"))
	if err == nil || !strings.Contains(err.Error(), `built-in manifest coredns: document 2: missing "apiVersion"`) {
		t.Errorf("err = %v", err)
	}
	for _, a := range h.dyn.Actions() {
		if a.GetVerb() == "delete" {
			t.Errorf("deleted something from a bad manifest: %v", a)
		}
	}
}
