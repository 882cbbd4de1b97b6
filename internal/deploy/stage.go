package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/k1s-io/k1s/internal/atomicfile"
)

// Action says what Stage did to a built-in add-on's file.
type Action string

const (
	// Created: the file did not exist.
	Created Action = "created"
	// Updated: the file existed with other content (an older k1s wrote it,
	// or a user edited it) and was overwritten.
	Updated Action = "updated"
	// Removed: the add-on is disabled and its file was deleted.
	Removed Action = "removed"
)

// Change is one file that Stage wrote or removed.
type Change struct {
	Name   string // add-on name, e.g. "coredns"
	Path   string // <dir>/<name>.yaml
	Action Action
}

// placeholder matches %{NAME}%; anything between the braces counts, so that a
// misspelt placeholder is reported instead of being left in the file.
var placeholder = regexp.MustCompile(`%\{([^{}%\s]*)\}%`)

// Render substitutes the %{NAME}% placeholders of a built-in manifest with
// vars[NAME]. A placeholder without a value in vars is an error: it means the
// manifest and the code that stages it disagree. name only labels the error.
func Render(name string, content []byte, vars map[string]string) ([]byte, error) {
	var unknown []string
	seen := map[string]bool{}
	out := placeholder.ReplaceAllFunc(content, func(m []byte) []byte {
		key := string(m[2 : len(m)-2])
		v, ok := vars[key]
		if !ok {
			if !seen[key] {
				seen[key] = true
				unknown = append(unknown, "%{"+key+"}%")
			}
			return m
		}
		return []byte(v)
	})
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, fmt.Errorf("built-in manifest %s: unknown placeholder %s (a k1s bug: the manifest and the code that stages it disagree)",
			name, strings.Join(unknown, ", "))
	}
	return out, nil
}

// Stage writes each built-in add-on to <dir>/<name>.yaml with its
// placeholders substituted from vars (keys without the %{ }%), and deletes
// the file of each add-on that disabled names. It creates dir (mode 0700) if
// needed, writes files with mode 0600 through a temporary file and a rename,
// and writes a file only when its content differs, so an unchanged file keeps
// its mtime. A file that a user edited is overwritten (Action Updated): edit
// a copy under another name instead, and disable the built-in.
//
// Files whose names are not built-in add-ons are never touched, and a name in
// disabled that is not a built-in add-on is ignored. An add-on that fails to
// render (unknown placeholder) is left as it is on disk; the others are still
// staged, and the error names every add-on that failed. The returned changes
// are sorted by add-on name, for the caller to log.
func Stage(dir string, builtin map[string][]byte, vars map[string]string, disabled map[string]bool) ([]Change, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cannot create manifests dir: %w", err)
	}
	names := make([]string, 0, len(builtin))
	for name := range builtin {
		names = append(names, name)
	}
	sort.Strings(names)

	var changes []Change
	var errs []error
	for _, name := range names {
		if name == "" || strings.HasPrefix(name, ".") || strings.ContainsAny(name, `/\`) {
			errs = append(errs, fmt.Errorf("built-in manifest %q: invalid name", name))
			continue
		}
		path := filepath.Join(dir, name+".yaml")
		if disabled[name] {
			err := os.Remove(path)
			switch {
			case err == nil:
				changes = append(changes, Change{Name: name, Path: path, Action: Removed})
			case !errors.Is(err, fs.ErrNotExist):
				errs = append(errs, fmt.Errorf("cannot remove disabled add-on %s: %w", name, err))
			}
			continue
		}
		content, err := Render(name, builtin[name], vars)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		action, err := writeIfChanged(path, content)
		if err != nil {
			errs = append(errs, fmt.Errorf("cannot write add-on %s: %w", name, err))
			continue
		}
		if action != "" {
			changes = append(changes, Change{Name: name, Path: path, Action: action})
		}
	}
	return changes, errors.Join(errs...)
}

// writeIfChanged writes content to path atomically unless the file already
// holds exactly that content. It returns "" when nothing was written.
func writeIfChanged(path string, content []byte) (Action, error) {
	action := Created
	old, err := os.ReadFile(path)
	switch {
	case err == nil:
		if bytes.Equal(old, content) {
			// Same content: keep the file (and its mtime), but make sure it
			// is not readable by others.
			if st, err := os.Stat(path); err == nil && st.Mode().Perm() != 0o600 {
				if err := os.Chmod(path, 0o600); err != nil {
					return "", err
				}
			}
			return "", nil
		}
		action = Updated
	case !errors.Is(err, fs.ErrNotExist):
		return "", err
	}

	// atomicfile's temporary name starts with a dot, which keeps a
	// half-written file out of the Applier's sight.
	if err := atomicfile.Write(path, content, 0o600); err != nil {
		return "", err
	}
	return action, nil
}
