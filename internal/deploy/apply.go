package deploy

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

const (
	// FieldManager is the server-side apply field manager of every object
	// that the Applier applies.
	FieldManager = "k1s-deploy"
	// LabelManifest is set on every applied object to the base name (without
	// extension) of the file it came from.
	LabelManifest = "k1s.io/manifest"
	// DefaultInterval is how often Run looks at the folder again.
	DefaultInterval = 15 * time.Second
)

// Applier applies the manifest files of one folder to the cluster.
type Applier struct {
	dir    string
	log    logrus.FieldLogger
	dyn    dynamic.Interface
	mapper meta.ResettableRESTMapper

	// How long to wait for the apiserver to serve a kind whose CRD was just
	// applied from the same file, and how often to look.
	crdWait, crdPoll time.Duration

	mu sync.Mutex
	// state of each file, by file name, from the last ApplyAll.
	state map[string]fileState
	// fresh: the mapper was reset in this pass and no CRD was applied
	// since, so a no-match is not worth another discovery round trip.
	fresh bool
	// lastReport is the error text Run logged last, to log each problem once.
	lastReport string

	// inv is what each file applied, pending the prunes to try again;
	// both are saved in inventoryPath (none: kept in memory only).
	inventoryPath string
	inv           inventory
	pending       []candidate
	lastSaved     []byte
}

type fileState struct {
	hash [sha256.Size]byte
	ok   bool
}

// New returns an Applier of the files in dir that talks to the apiserver of
// restConfig with a dynamic client and a discovery-based RESTMapper. It
// keeps what each file applied in inventoryPath, so that objects whose file
// or document is removed are pruned, also across restarts. An unreadable
// inventory is logged and replaced: nothing it listed is pruned.
func New(restConfig *rest.Config, dir, inventoryPath string, log logrus.FieldLogger) (*Applier, error) {
	cfg := rest.CopyConfig(restConfig)
	cfg = rest.AddUserAgent(cfg, "k1s-deploy")
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("deploy: dynamic client: %w", err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("deploy: discovery client: %w", err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	a := newApplier(dyn, mapper, dir, log)
	a.useInventory(inventoryPath)
	return a, nil
}

func newApplier(dyn dynamic.Interface, mapper meta.ResettableRESTMapper, dir string, log logrus.FieldLogger) *Applier {
	if log == nil {
		log = logrus.StandardLogger()
	}
	return &Applier{
		dir:     dir,
		log:     log,
		dyn:     dyn,
		mapper:  mapper,
		crdWait: 10 * time.Second,
		crdPoll: 500 * time.Millisecond,
		state:   map[string]fileState{},
		inv:     inventory{},
	}
}

// Run calls ApplyAll now and then every interval (DefaultInterval if
// interval <= 0) until ctx is done, and then returns nil. It logs each
// problem once, and once more when it changes or goes away.
func (a *Applier) Run(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		interval = DefaultInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		err := a.ApplyAll(ctx)
		if ctx.Err() != nil {
			return nil
		}
		a.report(err)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (a *Applier) report(err error) {
	text := ""
	if err != nil {
		text = err.Error()
	}
	a.mu.Lock()
	changed := text != a.lastReport
	prev := a.lastReport
	a.lastReport = text
	a.mu.Unlock()
	if !changed {
		return
	}
	if err == nil {
		if prev != "" {
			a.log.Infof("All manifests in %s are applied", a.dir)
		}
		return
	}
	for _, line := range strings.Split(text, "\n") {
		a.log.Errorf("Manifest not applied (will retry every pass): %s", line)
	}
}

// ApplyAll applies every *.yaml, *.yml and *.json file of the folder, in
// name order, with server-side apply. It skips names starting with "." and
// a file F when a file F.skip exists, and it applies a file only when its
// content changed since its last successful apply or when that apply failed.
//
// A file that does not parse, or that names a kind the apiserver does not
// serve, is not applied at all. The other files are still applied, and the
// returned error joins one error per failed file (see errors.Join), each
// naming the file, the document and the object.
func (a *Applier) ApplyAll(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.fresh = false

	entries, err := os.ReadDir(a.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot read manifests dir: %w", err)
	}
	present := map[string]bool{}
	for _, e := range entries {
		present[e.Name()] = true
	}
	var names []string
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !isManifestName(name) || present[name+".skip"] {
			continue
		}
		names = append(names, name)
	}
	sort.Strings(names)

	var errs []error
	for name := range a.state {
		if !slices.Contains(names, name) {
			delete(a.state, name) // removed or skipped: forget it
		}
	}
	cands := a.pending
	for _, name := range names {
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err())
			break
		}
		path := filepath.Join(a.dir, name)
		data, err := os.ReadFile(path)
		if err != nil {
			delete(a.state, name)
			errs = append(errs, fmt.Errorf("%s: %w", path, err))
			continue
		}
		sum := inputHash(a.dir, path, data)
		if st, ok := a.state[name]; ok && st.ok && st.hash == sum {
			continue
		}
		recs, err := a.applyFile(ctx, path, labelValue(name), data)
		a.state[name] = fileState{hash: sum, ok: err == nil}
		if err != nil {
			// Prune only after a whole file applied: a file that is half
			// written or wrong must not delete what it used to create.
			a.inv[name] = union(a.inv[name], recs)
			errs = append(errs, err)
			continue
		}
		// What the file applied before is a candidate; prune skips what it
		// (or any file) applies now.
		for _, r := range a.inv[name] {
			cands = append(cands, candidate{File: name, Rec: r})
		}
		a.inv[name] = recs
		a.log.Infof("Applied %s (%d objects)", path, len(recs))
	}
	// A file that is gone takes its objects along; one that is only skipped
	// (F.skip) or unreadable keeps them.
	for name, recs := range a.inv {
		if present[name] {
			continue
		}
		for _, r := range recs {
			cands = append(cands, candidate{File: name, Rec: r})
		}
		delete(a.inv, name)
	}
	pending, pruneErr := a.prune(ctx, cands)
	a.pending = pending
	errs = append(errs, pruneErr, a.saveInventory())
	return errors.Join(errs...)
}

func isManifestName(name string) bool {
	if strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".skip") {
		return false
	}
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

var labelBad = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// labelValue turns a file name into the value of LabelManifest: its base
// without extension, made a valid label value (at most 63 characters of
// [A-Za-z0-9._-], starting and ending with a letter or digit).
func labelValue(file string) string {
	base := strings.TrimSuffix(file, filepath.Ext(file))
	v := labelBad.ReplaceAllString(base, "-")
	if len(v) > 63 {
		v = v[:63]
	}
	v = strings.TrimRight(strings.TrimLeft(v, "._-"), "._-")
	if v == "" {
		v = "unnamed"
	}
	return v
}

// applyFile parses a whole file, checks that the apiserver knows every kind
// in it, then applies its objects: Namespaces first, then CRDs, then the rest
// in file order. It returns the objects it applied.
func (a *Applier) applyFile(ctx context.Context, path, label string, data []byte) ([]record, error) {
	items, err := parseManifest(path, data)
	if err != nil {
		return nil, err
	}
	if err := inlineChartFiles(a.dir, items); err != nil {
		return nil, err
	}
	crdKinds := definedKinds(items)

	// Resolve every kind before applying anything, so that a typo in a kind
	// does not leave the file half applied.
	var errs []error
	for _, it := range items {
		gvk := it.obj.GroupVersionKind()
		if crdKinds[gvk.GroupKind()] {
			continue // its CRD is in this file: it will exist once applied
		}
		if _, err := a.restMapping(gvk); err != nil {
			errs = append(errs, mappingError(it, err))
			if !meta.IsNoMatchError(err) {
				break // discovery failed: the other kinds would fail the same way
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	ordered := append([]*item(nil), items...)
	sort.SliceStable(ordered, func(i, j int) bool { return rank(ordered[i]) < rank(ordered[j]) })
	var recs []record
	for _, it := range ordered {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		rec, err := a.applyObject(ctx, it, label, crdKinds[it.obj.GroupVersionKind().GroupKind()])
		if err != nil {
			errs = append(errs, err)
			var status apierrors.APIStatus
			if !errors.As(err, &status) && !meta.IsNoMatchError(err) {
				// Not an answer from the apiserver (unreachable?): the
				// other objects would fail the same way.
				break
			}
			continue
		}
		recs = append(recs, rec)
	}
	return recs, errors.Join(errs...)
}

func mappingError(it *item, err error) error {
	gvk := it.obj.GroupVersionKind()
	if meta.IsNoMatchError(err) {
		return &quietError{
			msg: fmt.Sprintf("%s: unknown kind %q in apiVersion %q: the apiserver serves no such resource (a missing CRD?)",
				it.where(), gvk.Kind, gvk.GroupVersion().String()),
			err: err,
		}
	}
	return it.errorf("%s: cannot look up its resource: %w", it.describe(), err)
}

func isCRD(gk schema.GroupKind) bool {
	return gk.Group == "apiextensions.k8s.io" && gk.Kind == "CustomResourceDefinition"
}

func isNamespace(gk schema.GroupKind) bool {
	return gk.Group == "" && gk.Kind == "Namespace"
}

func rank(it *item) int {
	gk := it.obj.GroupVersionKind().GroupKind()
	switch {
	case isNamespace(gk):
		return 0
	case isCRD(gk):
		return 1
	}
	return 2
}

// definedKinds lists the kinds that the CRDs among items define.
func definedKinds(items []*item) map[schema.GroupKind]bool {
	out := map[schema.GroupKind]bool{}
	for _, it := range items {
		if !isCRD(it.obj.GroupVersionKind().GroupKind()) {
			continue
		}
		group, _, _ := unstructured.NestedString(it.obj.Object, "spec", "group")
		kind, _, _ := unstructured.NestedString(it.obj.Object, "spec", "names", "kind")
		if kind != "" {
			out[schema.GroupKind{Group: group, Kind: kind}] = true
		}
	}
	return out
}

// restMapping maps a kind to its resource. On a no-match it resets the
// mapper (new discovery) once per pass, or again after a CRD was applied.
func (a *Applier) restMapping(gvk schema.GroupVersionKind) (*meta.RESTMapping, error) {
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil && meta.IsNoMatchError(err) && !a.fresh {
		a.mapper.Reset()
		a.fresh = true
		m, err = a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	return m, err
}

// crdMapping maps a kind that a CRD of the same file defines, waiting up to
// crdWait for the apiserver to start serving it.
func (a *Applier) crdMapping(ctx context.Context, gvk schema.GroupVersionKind) (*meta.RESTMapping, error) {
	deadline := time.Now().Add(a.crdWait)
	for {
		m, err := a.restMapping(gvk)
		if err == nil || !meta.IsNoMatchError(err) || !time.Now().Before(deadline) {
			return m, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(a.crdPoll):
		}
		a.fresh = false // look again
	}
}

func (a *Applier) resourceFor(ctx context.Context, it *item, definedHere bool) (dynamic.ResourceInterface, error) {
	gvk := it.obj.GroupVersionKind()
	var mapping *meta.RESTMapping
	var err error
	if definedHere {
		mapping, err = a.crdMapping(ctx, gvk)
	} else {
		mapping, err = a.restMapping(gvk)
	}
	if err != nil {
		return nil, err
	}
	if mapping.Scope.Name() != meta.RESTScopeNameNamespace {
		it.obj.SetNamespace("")
		return a.dyn.Resource(mapping.Resource), nil
	}
	if it.obj.GetNamespace() == "" {
		it.obj.SetNamespace(metav1.NamespaceDefault) // as kubectl does
	}
	return a.dyn.Resource(mapping.Resource).Namespace(it.obj.GetNamespace()), nil
}

func (a *Applier) applyObject(ctx context.Context, it *item, label string, definedHere bool) (record, error) {
	labels := it.obj.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelManifest] = label
	it.obj.SetLabels(labels)

	ri, err := a.resourceFor(ctx, it, definedHere)
	if err != nil {
		if definedHere && meta.IsNoMatchError(err) {
			gvk := it.obj.GroupVersionKind()
			return record{}, it.errorf("%s: the apiserver does not serve kind %q of apiVersion %q yet, %s after applying its CRD from this file: %w",
				it.describe(), gvk.Kind, gvk.GroupVersion().String(), a.crdWait, err)
		}
		return record{}, mappingError(it, err)
	}
	data, err := json.Marshal(it.obj.Object)
	if err != nil {
		return record{}, it.errorf("%s: cannot encode: %v", it.describe(), err)
	}
	force := true
	out, err := ri.Patch(ctx, it.obj.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{
		FieldManager: FieldManager,
		Force:        &force,
	})
	if err != nil {
		return record{}, it.errorf("%s: %w", it.describe(), err)
	}
	if isCRD(it.obj.GroupVersionKind().GroupKind()) {
		a.fresh = false // discovery changes: a no-match is worth a new look
	}
	rec := recordOf(it.obj)
	if out != nil {
		rec.UID = out.GetUID()
	}
	return rec, nil
}

// Remove deletes from the cluster the objects that a built-in add-on's
// manifest lists: call it, with the manifest rendered by Render, for each
// disabled add-on when the server starts. It deletes only objects that carry
// the label k1s.io/manifest=<name>, with propagation Background, in reverse
// file order; objects already gone and kinds the apiserver does not serve are
// skipped. Namespaces and CRDs are left in place: deleting them would delete
// everything in them, including objects that are not the add-on's.
func (a *Applier) Remove(ctx context.Context, name string, content []byte) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.fresh = false
	label := labelValue(name)
	items, err := parseManifest("built-in manifest "+name, content)
	if err != nil {
		return err
	}
	var errs []error
	for i := len(items) - 1; i >= 0; i-- {
		it := items[i]
		gk := it.obj.GroupVersionKind().GroupKind()
		if isNamespace(gk) || isCRD(gk) {
			a.log.Infof("Add-on %s is disabled: leaving %s in place", name, it.describe())
			continue
		}
		ri, err := a.resourceFor(ctx, it, false)
		if err != nil {
			if meta.IsNoMatchError(err) {
				continue // no such kind: no such object
			}
			errs = append(errs, mappingError(it, err))
			continue
		}
		cur, err := ri.Get(ctx, it.obj.GetName(), metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			errs = append(errs, it.errorf("%s: %w", it.describe(), err))
			continue
		}
		if cur.GetLabels()[LabelManifest] != label {
			a.log.Infof("Add-on %s is disabled, but %s does not have label %s=%s: leaving it in place",
				name, it.describe(), LabelManifest, label)
			continue
		}
		uid := cur.GetUID()
		policy := metav1.DeletePropagationBackground
		opts := metav1.DeleteOptions{PropagationPolicy: &policy}
		if uid != "" {
			opts.Preconditions = &metav1.Preconditions{UID: &uid}
		}
		err = ri.Delete(ctx, it.obj.GetName(), opts)
		switch {
		case err == nil:
			a.log.Infof("Add-on %s is disabled: deleted %s", name, it.describe())
		case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
			// Gone already, or replaced by a new object with the same name.
		default:
			errs = append(errs, it.errorf("%s: cannot delete: %w", it.describe(), err))
		}
	}
	delete(a.state, name+".yaml")
	return errors.Join(errs...)
}

// quietError has its own message but still wraps its cause for errors.Is/As.
type quietError struct {
	msg string
	err error
}

func (e *quietError) Error() string { return e.msg }
func (e *quietError) Unwrap() error { return e.err }
