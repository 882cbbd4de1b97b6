// Package nodebin ships the node's helper binaries inside k1s: runc, the
// containerd runc v2 shim, the CNI plugins and the pause program of the
// sandbox image. `make` builds them into bin/ before k1s is compiled; at
// start they are written to <data-dir>/agent/bin when their content changed.
package nodebin

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

//go:embed all:bin
var files embed.FS

// Names of the binaries every node needs.
const (
	Runc  = "runc"
	Shim  = "containerd-shim-runc-v2"
	Pause = "pause"
)

// Required lists what Install must find.
var Required = []string{Runc, Shim, Pause, "bridge", "host-local", "loopback", "portmap"}

// Read returns an embedded binary.
func Read(name string) ([]byte, error) {
	b, err := files.ReadFile("bin/" + name)
	if err != nil {
		return nil, fmt.Errorf("%s is not built into this k1s binary: build k1s with `make`, which builds the node binaries first", name)
	}
	return b, nil
}

// Install writes every embedded binary to dir, skipping unchanged ones.
func Install(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, name := range Required {
		if _, err := Read(name); err != nil {
			return err
		}
	}
	entries, err := fs.ReadDir(files, "bin")
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() == "README.md" {
			continue
		}
		data, _ := files.ReadFile("bin/" + e.Name())
		dst := filepath.Join(dir, e.Name())
		if old, err := os.ReadFile(dst); err == nil && bytes.Equal(old, data) {
			continue
		}
		tmp := dst + ".tmp"
		if err := os.WriteFile(tmp, data, 0o755); err != nil {
			return err
		}
		// Rename, so a running runc or shim keeps its old file.
		if err := os.Rename(tmp, dst); err != nil {
			return err
		}
	}
	return nil
}
