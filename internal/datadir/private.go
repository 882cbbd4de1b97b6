package datadir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// privateDirs are the data dir's directories that hold keys, tokens,
// kubeconfigs or the database, relative to the data dir ("" is itself).
var privateDirs = []string{"", "server", "server/tls", "server/cred", "server/db", "server/snapshots", "agent", "agent/pki", "logs"}

// isSecret reports whether a file in one of privateDirs must be readable
// by root only: keys, kubeconfigs, tokens, the node password and logs.
// Certificates (.crt) are public. SQLite makes its database, WAL and SHM
// files 0644 on every open; the 0700 db dir is what keeps them private.
func isSecret(name string) bool {
	switch {
	case strings.HasSuffix(name, ".crt"):
		return false
	case strings.HasSuffix(name, ".key"), strings.HasSuffix(name, ".kubeconfig"),
		name == "token", name == "node-password",
		strings.HasSuffix(name, ".log") || strings.Contains(name, ".log."), name == "encryption-config.json":
		return true
	}
	return false
}

// Tighten makes the data dir's private directories 0700 and its secret
// files 0600 where they are group or world accessible, as after a restore
// from a backup made with other modes, and calls note with each change. It
// follows no symlink and creates nothing.
func Tighten(dataDir string, note func(string)) error {
	for _, rel := range privateDirs {
		dir := filepath.Join(dataDir, rel)
		st, err := os.Lstat(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if !st.IsDir() {
			continue
		}
		if err := tighten(dir, st.Mode(), 0o700, note); err != nil {
			return err
		}
		if rel == "" {
			continue // the data dir's own files: only its lock, which is 0600
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if !e.Type().IsRegular() || !isSecret(e.Name()) {
				continue
			}
			info, err := e.Info()
			if err != nil {
				return err
			}
			if err := tighten(filepath.Join(dir, e.Name()), info.Mode(), 0o600, note); err != nil {
				return err
			}
		}
	}
	return nil
}

// tighten removes every group and other bit, keeping the owner's, when any
// is set; want is what the owner's bits become only if they were unusual.
func tighten(path string, mode fs.FileMode, want fs.FileMode, note func(string)) error {
	perm := mode.Perm()
	if perm&0o077 == 0 {
		return nil
	}
	newPerm := perm & 0o700
	if newPerm == 0 {
		newPerm = want
	}
	if err := os.Chmod(path, newPerm); err != nil {
		return fmt.Errorf("%s is readable by others (mode %04o) and could not be made private: %w", path, perm, err)
	}
	note(fmt.Sprintf("%s was readable by others (mode %04o): changed to %04o", path, perm, newPerm))
	return nil
}
