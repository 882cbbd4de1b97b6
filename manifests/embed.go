// Package manifests holds the add-on manifests that k1s embeds in its binary
// (CoreDNS, the ingress controller, ...). The server stages them into
// <data-dir>/server/manifests/ with internal/deploy, which applies them.
//
// Only the *.yaml files of this folder are embedded; each may contain
// placeholders of the form %{NAME}% that internal/deploy substitutes.
package manifests

import (
	"embed"
	"io/fs"
	"path"
	"strings"
)

//go:embed *.yaml
var files embed.FS

// Builtin returns the embedded add-ons, keyed by file name without its
// ".yaml" extension ("coredns", "ingress", ...). Each call returns a new map
// with its own copies of the contents, so callers may change them freely.
func Builtin() map[string][]byte {
	entries, err := fs.ReadDir(files, ".")
	if err != nil {
		// The embedded FS is built into the binary: this cannot fail.
		panic("manifests: cannot list embedded files: " + err.Error())
	}
	out := make(map[string][]byte, len(entries))
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || path.Ext(name) != ".yaml" {
			continue
		}
		data, err := files.ReadFile(name)
		if err != nil {
			panic("manifests: cannot read embedded " + name + ": " + err.Error())
		}
		out[strings.TrimSuffix(name, ".yaml")] = data
	}
	return out
}
