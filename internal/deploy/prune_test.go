package deploy

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// exists reports whether the fake apiserver has the object.
func (h *harness) exists(gvr schema.GroupVersionResource, ns, name string) bool {
	h.t.Helper()
	_, err := h.get(gvr, ns, name)
	if err != nil && !apierrors.IsNotFound(err) {
		h.t.Fatal(err)
	}
	return err == nil
}

func (h *harness) applyAll() error {
	h.t.Helper()
	return h.a.ApplyAll(context.Background())
}

func (h *harness) mustApplyAll() {
	h.t.Helper()
	if err := h.applyAll(); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) remove(name string) {
	h.t.Helper()
	if err := os.Remove(filepath.Join(h.dir, name)); err != nil {
		h.t.Fatal(err)
	}
}

func nsYAML(name, annotations string) string {
	return "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + name + "\n" + annotations
}

func cmIn(ns, name string) string {
	return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + name + "\n  namespace: " + ns + "\n"
}

func TestPruneDeletedFileDeletesItsObjectsButKeepsNamespaceAndCRD(t *testing.T) {
	h := newHarness(t)
	h.write("app.yaml", nsYAML("demo", "")+"---\n"+widgetCRD+"---\n"+cmIn("demo", "one")+"---\n"+cmIn("demo", "two"))
	h.write("other.yaml", cmYAML("keep"))
	h.mustApplyAll()
	if !h.exists(gvrConfigMaps, "demo", "one") || !h.exists(gvrConfigMaps, "default", "keep") {
		t.Fatal("objects were not applied")
	}

	h.remove("app.yaml")
	h.mustApplyAll()
	for _, name := range []string{"one", "two"} {
		if h.exists(gvrConfigMaps, "demo", name) {
			t.Errorf("ConfigMap demo/%s of the removed file is still there", name)
		}
	}
	if !h.exists(gvrNamespaces, "", "demo") || !h.exists(gvrCRDs, "", "widgets.example.com") {
		t.Error("a Namespace or CRD without k1s.io/prune=true was deleted")
	}
	if !h.exists(gvrConfigMaps, "default", "keep") {
		t.Error("another file's object was deleted")
	}
	var logged bool
	for _, e := range h.logs.AllEntries() {
		if strings.Contains(e.Message, "Keeping Namespace demo although its manifest app.yaml was removed") &&
			strings.Contains(e.Message, `k1s.io/prune="true"`) {
			logged = true
		}
	}
	if !logged {
		t.Error("no log line says why the Namespace was kept and how to have it deleted")
	}
}

func TestPruneNamespaceAnnotatedForPruning(t *testing.T) {
	h := newHarness(t)
	h.write("app.yaml", nsYAML("demo", "  annotations: {k1s.io/prune: \"true\"}\n")+"---\n"+cmIn("demo", "one"))
	h.mustApplyAll()
	h.remove("app.yaml")
	h.dyn.ClearActions()
	h.mustApplyAll()
	if h.exists(gvrNamespaces, "", "demo") {
		t.Error("the Namespace annotated k1s.io/prune=true was kept")
	}
	// The ConfigMap goes before its Namespace, each with a UID precondition.
	var deletes []string
	for _, a := range h.dyn.Actions() {
		if a.GetVerb() != "delete" {
			continue
		}
		d := a.(interface {
			GetName() string
			GetResource() schema.GroupVersionResource
		})
		deletes = append(deletes, d.GetResource().Resource+":"+d.GetName())
	}
	if !equal(deletes, []string{"configmaps:one", "namespaces:demo"}) {
		t.Errorf("deletes = %v", deletes)
	}
}

func TestPruneRemovedDocumentOnly(t *testing.T) {
	h := newHarness(t)
	h.write("app.yaml", cmYAML("a")+"---\n"+cmYAML("b"))
	h.mustApplyAll()
	h.write("app.yaml", cmYAML("a"))
	h.mustApplyAll()
	if h.exists(gvrConfigMaps, "default", "b") {
		t.Error("the object whose document was removed is still there")
	}
	if !h.exists(gvrConfigMaps, "default", "a") {
		t.Error("the object still in the file was deleted")
	}
}

func TestPruneNothingWhenTheFileIsBroken(t *testing.T) {
	h := newHarness(t)
	h.write("app.yaml", cmYAML("a")+"---\n"+cmYAML("b"))
	h.mustApplyAll()
	// Half written: one document is gone, another does not parse.
	h.write("app.yaml", cmYAML("a")+"---\nkind: ConfigMap\n")
	if err := h.applyAll(); err == nil {
		t.Fatal("a broken file applied without error")
	}
	if !h.exists(gvrConfigMaps, "default", "b") {
		t.Error("an object was pruned because its file was broken")
	}
	// Mended without b: now b goes.
	h.write("app.yaml", cmYAML("a"))
	h.mustApplyAll()
	if h.exists(gvrConfigMaps, "default", "b") {
		t.Error("b was not pruned once the file applied")
	}
}

func TestPruneKeepsObjectMovedToAnotherFile(t *testing.T) {
	h := newHarness(t)
	h.write("b.yaml", cmYAML("moving"))
	h.mustApplyAll()
	// Move it to a file applied before b.yaml, and drop it from b.yaml.
	h.write("a.yaml", cmYAML("moving"))
	h.write("b.yaml", cmYAML("other"))
	h.mustApplyAll()
	h.remove("b.yaml")
	h.mustApplyAll()
	obj, err := h.get(gvrConfigMaps, "default", "moving")
	if err != nil {
		t.Fatalf("the object moved to a.yaml was pruned: %v", err)
	}
	if got := obj.GetLabels()[LabelManifest]; got != "a" {
		t.Errorf("label %s = %q, want a", LabelManifest, got)
	}
}

func TestPruneSkipsObjectRelabelledOrReplaced(t *testing.T) {
	h := newHarness(t)
	h.write("app.yaml", cmYAML("relabelled")+"---\n"+cmYAML("replaced"))
	h.mustApplyAll()
	// The user takes one over (other label) and recreates the other.
	h.dyn.Tracker().Delete(gvrConfigMaps, "default", "relabelled")
	h.create(gvrConfigMaps, "default", cmYAML("relabelled")+"  labels: {k1s.io/manifest: mine}\n")
	h.dyn.Tracker().Delete(gvrConfigMaps, "default", "replaced")
	h.create(gvrConfigMaps, "default", cmYAML("replaced")+"  labels: {k1s.io/manifest: app}\n")
	obj, _ := h.get(gvrConfigMaps, "default", "replaced")
	obj.SetUID("another-uid")
	if err := h.dyn.Tracker().Update(gvrConfigMaps, obj, "default"); err != nil {
		t.Fatal(err)
	}
	h.remove("app.yaml")
	h.mustApplyAll()
	if !h.exists(gvrConfigMaps, "default", "relabelled") {
		t.Error("an object that no longer carries the file's label was pruned")
	}
	if !h.exists(gvrConfigMaps, "default", "replaced") {
		t.Error("an object with another UID than the applied one was pruned")
	}
}

func TestPruneSkippedFileKeepsItsObjects(t *testing.T) {
	h := newHarness(t)
	h.write("app.yaml", cmYAML("a"))
	h.mustApplyAll()
	h.write("app.yaml.skip", "")
	h.mustApplyAll()
	if !h.exists(gvrConfigMaps, "default", "a") {
		t.Error("the object of a skipped file was pruned")
	}
}

func TestPruneAcrossRestartFromInventory(t *testing.T) {
	h := newHarness(t)
	inv := filepath.Join(t.TempDir(), "applied.json")
	h.a.useInventory(inv)
	h.write("app.yaml", cmYAML("a")+"---\n"+cmYAML("b"))
	h.mustApplyAll()
	fi, err := os.Stat(inv)
	if err != nil {
		t.Fatalf("no inventory written: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("inventory mode %v, want 0600", fi.Mode().Perm())
	}

	// "k1s is down": one document removed, then a new Applier starts.
	h.write("app.yaml", cmYAML("a"))
	h.a = newApplier(h.dyn, h.a.mapper, h.dir, h.a.log)
	h.a.useInventory(inv)
	h.mustApplyAll()
	if h.exists(gvrConfigMaps, "default", "b") {
		t.Error("the document removed while k1s was down was not pruned")
	}

	h.remove("app.yaml")
	h.a = newApplier(h.dyn, h.a.mapper, h.dir, h.a.log)
	h.a.useInventory(inv)
	h.mustApplyAll()
	if h.exists(gvrConfigMaps, "default", "a") {
		t.Error("the file removed while k1s was down was not pruned")
	}
}

func TestPruneUnreadableInventoryPrunesNothing(t *testing.T) {
	h := newHarness(t)
	inv := filepath.Join(t.TempDir(), "applied.json")
	h.write("app.yaml", cmYAML("a"))
	h.a.useInventory(inv)
	h.mustApplyAll()
	if err := os.WriteFile(inv, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	h.remove("app.yaml")
	h.a = newApplier(h.dyn, h.a.mapper, h.dir, h.a.log)
	h.a.useInventory(inv)
	h.mustApplyAll()
	if !h.exists(gvrConfigMaps, "default", "a") {
		t.Error("an object was pruned on the word of an unreadable inventory")
	}
	var warned bool
	for _, e := range h.logs.AllEntries() {
		if strings.Contains(e.Message, "ignoring the record of applied manifests "+inv) {
			warned = true
		}
	}
	if !warned {
		t.Error("no warning names the unreadable inventory")
	}
}
