// Package deploy owns <data-dir>/server/manifests/: k1s's add-ons written
// there and every file there applied to the cluster.
//
// Stage writes the built-in add-ons (package manifests) into the folder with
// their %{NAME}% placeholders filled in, and removes the file of a disabled
// one. It never touches any other file: users may drop their own manifests
// next to k1s's, and those are applied too.
//
// An Applier applies every *.yaml, *.yml and *.json file of the folder with
// server-side apply (field manager "k1s-deploy"), labelling each object
// "k1s.io/manifest: <file name without extension>". It re-applies a file
// only when its content changed since its last successful apply, or when
// that apply failed. A file that does not parse is not applied at all, and
// the error names the file and the document.
//
// A HelmChart (helm.k1s.io) in the folder may name a chart .tgz next to it
// in spec.chartFile: the Applier puts the file's content into
// spec.chartContent, and applies the manifest again when the .tgz changes.
//
// The Applier prunes: it records what each file applied (in a 0600 JSON
// file next to the folder, so this holds across restarts) and deletes an
// object when its file is deleted or its document is removed from the
// file, once the file applies again in full. It deletes only an object that
// still carries the file's label and the UID it was applied with, and no
// object that another file applies. Namespaces and CRDs stay unless their
// manifest annotates them k1s.io/prune: "true". A skipped file (F.skip)
// keeps its objects. Remove deletes a disabled add-on's objects from its
// built-in manifest, which works without that record.
package deploy
