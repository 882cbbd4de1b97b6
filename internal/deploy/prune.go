package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/k1s-io/k1s/internal/atomicfile"
)

// AnnotationPrune on a Namespace or CRD in a manifest, set to "true", lets
// the Applier delete it when it leaves the folder. Without it such objects
// stay: deleting them would delete everything in them.
const AnnotationPrune = "k1s.io/prune"

// record is one object that a file's last apply created or updated.
type record struct {
	APIVersion string    `json:"apiVersion"`
	Kind       string    `json:"kind"`
	Namespace  string    `json:"namespace,omitempty"`
	Name       string    `json:"name"`
	UID        types.UID `json:"uid,omitempty"`
}

func (r record) key() string {
	gv, _ := schema.ParseGroupVersion(r.APIVersion)
	return gv.Group + "/" + r.Kind + "/" + r.Namespace + "/" + r.Name
}

func (r record) gvk() schema.GroupVersionKind {
	return schema.FromAPIVersionAndKind(r.APIVersion, r.Kind)
}

func (r record) describe() string {
	name := r.Name
	if r.Namespace != "" {
		name = r.Namespace + "/" + name
	}
	return fmt.Sprintf("%s %s", r.Kind, name)
}

func recordOf(obj *unstructured.Unstructured) record {
	return record{APIVersion: obj.GetAPIVersion(), Kind: obj.GetKind(), Namespace: obj.GetNamespace(),
		Name: obj.GetName(), UID: obj.GetUID()}
}

// inventory is what each file (by name) applied, kept in a file so that a
// manifest deleted while k1s was down is still pruned at the next start.
type inventory map[string][]record

// inventoryVersion guards the file format; a file of another version is
// ignored (nothing is pruned that it lists) rather than misread.
const inventoryVersion = 1

type inventoryFile struct {
	Version int         `json:"version"`
	Files   inventory   `json:"files"`
	Pending []candidate `json:"pending,omitempty"` // prunes that failed, retried
}

// loadInventory reads path; a missing file is an empty inventory. A file
// that cannot be read is reported and treated as empty: that only means
// objects it listed are not pruned, never that anything is deleted.
func loadInventory(path string) (inventoryFile, error) {
	empty := inventoryFile{Version: inventoryVersion, Files: inventory{}}
	if path == "" {
		return empty, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return empty, nil
	}
	if err != nil {
		return empty, fmt.Errorf("cannot read the record of applied manifests %s: %w", path, err)
	}
	var f inventoryFile
	if err := json.Unmarshal(data, &f); err != nil || f.Version != inventoryVersion {
		if err == nil {
			err = fmt.Errorf("version %d, want %d", f.Version, inventoryVersion)
		}
		return empty, fmt.Errorf("ignoring the record of applied manifests %s (%v): objects of manifests removed before now are not pruned", path, err)
	}
	if f.Files == nil {
		f.Files = inventory{}
	}
	return f, nil
}

// useInventory makes the Applier keep its inventory in path, starting from
// what path holds.
func (a *Applier) useInventory(path string) {
	a.inventoryPath = path
	f, err := loadInventory(path)
	if err != nil {
		a.log.Warn(err)
	}
	a.inv, a.pending = f.Files, f.Pending
}

func (a *Applier) saveInventory() error {
	if a.inventoryPath == "" {
		return nil
	}
	data, err := json.MarshalIndent(inventoryFile{Version: inventoryVersion, Files: a.inv, Pending: a.pending}, "", " ")
	if err != nil {
		return err
	}
	if bytes.Equal(data, a.lastSaved) {
		return nil
	}
	if err := atomicfile.Write(a.inventoryPath, data, 0o600); err != nil {
		return fmt.Errorf("cannot save the record of applied manifests: %w", err)
	}
	a.lastSaved = data
	return nil
}

// candidate is an object that left a file: the file was deleted, or the
// object's document was removed from it.
type candidate struct {
	File string `json:"file"`
	Rec  record `json:"object"`
}

// prune deletes the candidates that no file applied in this pass and that
// still carry the label of the file they came from. It returns those it
// could not decide about (to be retried in the next pass) and an error per
// failure.
func (a *Applier) prune(ctx context.Context, cands []candidate) ([]candidate, error) {
	claimed := map[string]bool{}
	for _, recs := range a.inv {
		for _, r := range recs {
			claimed[r.key()] = true
		}
	}
	// Objects first, then CRDs, then Namespaces: the reverse of apply order.
	sort.SliceStable(cands, func(i, j int) bool { return pruneRank(cands[i].Rec) < pruneRank(cands[j].Rec) })
	var retry []candidate
	var errs []error
	for _, c := range cands {
		if claimed[c.Rec.key()] {
			continue // moved to another file, which manages it now
		}
		if ctx.Err() != nil {
			retry = append(retry, c)
			continue
		}
		done, err := a.pruneOne(ctx, c)
		if err != nil {
			errs = append(errs, err)
		}
		if !done {
			retry = append(retry, c)
		}
	}
	return retry, errors.Join(errs...)
}

func pruneRank(r record) int {
	gk := r.gvk().GroupKind()
	switch {
	case isNamespace(gk):
		return 2
	case isCRD(gk):
		return 1
	}
	return 0
}

// pruneOne deletes one candidate if it is still the object that file
// applied. done is false when it should be tried again later.
func (a *Applier) pruneOne(ctx context.Context, c candidate) (done bool, err error) {
	why := fmt.Sprintf("its manifest %s was removed", c.File)
	if _, still := a.inv[c.File]; still {
		why = fmt.Sprintf("it is no longer in %s", c.File)
	}
	mapping, err := a.restMapping(c.Rec.gvk())
	if meta.IsNoMatchError(err) {
		return true, nil // the kind is gone (its CRD deleted), and with it the object
	}
	if err != nil {
		return false, fmt.Errorf("%s: cannot prune %s: %w", c.File, c.Rec.describe(), err)
	}
	var ri interface {
		Get(context.Context, string, metav1.GetOptions, ...string) (*unstructured.Unstructured, error)
		Delete(context.Context, string, metav1.DeleteOptions, ...string) error
	} = a.dyn.Resource(mapping.Resource)
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		ri = a.dyn.Resource(mapping.Resource).Namespace(c.Rec.Namespace)
	}
	cur, err := ri.Get(ctx, c.Rec.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("%s: cannot prune %s: %w", c.File, c.Rec.describe(), err)
	}
	if want := labelValue(c.File); cur.GetLabels()[LabelManifest] != want {
		a.log.Infof("Not pruning %s (%s): it no longer has label %s=%s", c.Rec.describe(), why, LabelManifest, want)
		return true, nil
	}
	if c.Rec.UID != "" && cur.GetUID() != c.Rec.UID {
		a.log.Infof("Not pruning %s (%s): it was replaced by another object of that name", c.Rec.describe(), why)
		return true, nil
	}
	gk := c.Rec.gvk().GroupKind()
	if (isNamespace(gk) || isCRD(gk)) && cur.GetAnnotations()[AnnotationPrune] != "true" {
		a.log.Infof("Keeping %s although %s: annotate it %s=\"true\" in its manifest to have it deleted",
			c.Rec.describe(), why, AnnotationPrune)
		return true, nil
	}
	policy := metav1.DeletePropagationBackground
	opts := metav1.DeleteOptions{PropagationPolicy: &policy}
	if uid := cur.GetUID(); uid != "" {
		opts.Preconditions = &metav1.Preconditions{UID: &uid}
	}
	err = ri.Delete(ctx, c.Rec.Name, opts)
	switch {
	case err == nil:
		a.log.Infof("Pruned %s: %s", c.Rec.describe(), why)
		return true, nil
	case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
		return true, nil
	}
	return false, fmt.Errorf("%s: cannot prune %s: %w", c.File, c.Rec.describe(), err)
}

// union is old plus the records of cur whose object old lacks, with cur's
// UID where both have the object.
func union(old, cur []record) []record {
	byKey := map[string]int{}
	out := append([]record(nil), old...)
	for i, r := range out {
		byKey[r.key()] = i
	}
	for _, r := range cur {
		if i, ok := byKey[r.key()]; ok {
			out[i] = r
			continue
		}
		byKey[r.key()] = len(out)
		out = append(out, r)
	}
	return out
}
