package registries

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/k1s-io/k1s/internal/atomicfile"
)

const (
	// markerFile marks a host directory as k1s's: only those are ever
	// replaced or removed. containerd ignores it (it reads hosts.toml, or
	// *.crt, *.cert and *.key files when hosts.toml is missing).
	markerFile = ".k1s-generated"
	// tmpPrefix names directories being built; a crash can leave one, and
	// the name alone marks it as k1s's.
	tmpPrefix  = ".k1s-tmp-"
	markerText = "Written by k1s from registries.yaml. k1s replaces this directory, and removes it when the registry leaves that file.\n"
	hostsTOML  = "hosts.toml"
	privateDir = 0o700
)

// WriteHostsDir makes dir (containerd's certs.d) hold exactly the
// hosts.toml files for r; r may be nil, which removes every directory k1s
// wrote. Directories without the marker belong to someone else: they are
// left alone, and one that is in the way of a configured registry is an
// error, checked before anything changes.
func WriteHostsDir(dir string, r *Registries) error {
	files, err := r.hostsFiles()
	if err != nil {
		return err
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) && len(files) == 0 {
		return nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("registry config: %w", err)
	}

	owned := map[string]bool{}
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			if err := os.RemoveAll(path); err != nil {
				return fmt.Errorf("registry config: remove an interrupted write: %w", err)
			}
			continue
		}
		if isOwned(path) {
			owned[e.Name()] = true
		}
	}
	for _, name := range sortedKeys(files) {
		if owned[name] {
			continue
		}
		path := filepath.Join(dir, name)
		if _, err := os.Lstat(path); err == nil {
			return fmt.Errorf("registry config: %s exists but was not written by k1s (it has no %s file): move it away so k1s can write the registries.yaml settings for %s there, or remove that registry from registries.yaml",
				path, markerFile, displayName(name))
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("registry config: %w", err)
		}
	}

	if err := os.MkdirAll(dir, privateDir); err != nil {
		return fmt.Errorf("registry config: %w", err)
	}
	for _, name := range sortedKeys(files) {
		if err := writeHost(dir, name, owned[name], files[name].render()); err != nil {
			return fmt.Errorf("registry config for %s: %w", displayName(name), err)
		}
	}
	for name := range owned {
		if _, keep := files[name]; keep {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("registry config: remove %s, no longer in registries.yaml: %w", displayName(name), err)
		}
	}
	return nil
}

func displayName(dirName string) string {
	if dirName == "_default" {
		return `"*"`
	}
	return dirName
}

// isOwned reports whether path is a real directory (not a symlink) with
// the marker in it.
func isOwned(path string) bool {
	fi, err := os.Lstat(path)
	if err != nil || !fi.IsDir() {
		return false
	}
	fi, err = os.Lstat(filepath.Join(path, markerFile))
	return err == nil && fi.Mode().IsRegular()
}

// writeHost replaces hosts.toml in a directory k1s owns, or builds a new
// directory aside and renames it in, so that containerd never sees one
// half-written and an unmarked directory is never left behind. Files are
// written with mode 0600, since hosts.toml may hold credentials.
func writeHost(dir, name string, owned bool, content []byte) error {
	path := filepath.Join(dir, name)
	if owned {
		if err := os.Chmod(path, privateDir); err != nil {
			return err
		}
		// k1s writes certs.d from one process at a time, so any temporary
		// file there is one an interrupted write left.
		if err := atomicfile.RemoveLeftovers(filepath.Join(path, hostsTOML)); err != nil {
			return err
		}
		return atomicfile.Write(filepath.Join(path, hostsTOML), content, 0o600)
	}
	tmp, err := os.MkdirTemp(dir, tmpPrefix+"*") // mode 0700
	if err != nil {
		return err
	}
	err = atomicfile.Write(filepath.Join(tmp, markerFile), []byte(markerText), 0o600)
	if err == nil {
		err = atomicfile.Write(filepath.Join(tmp, hostsTOML), content, 0o600)
	}
	if err == nil {
		// A directory is renamed in whole; the sync makes the rename last.
		if err = os.Rename(tmp, path); err == nil {
			return atomicfile.SyncDir(dir)
		}
	}
	os.RemoveAll(tmp)
	return err
}
