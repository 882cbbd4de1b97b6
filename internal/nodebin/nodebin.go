// Package nodebin ships the node's helper binaries inside k1s: containerd,
// runc, the containerd runc v2 shim, the CNI plugins, crictl and the pause
// program (cmd/pause). `make` builds them into bin/<GOARCH> before k1s is compiled;
// at start they are written to <data-dir>/agent/bin when this k1s binary
// has not installed them there before. The package also builds the sandbox
// image around pause (PauseImage) and runs an embedded tool straight from
// memory (Exec, for `k1s crictl` and `k1s containerd`).
package nodebin

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/k1s-io/k1s/internal/atomicfile"
)

// Names of the binaries every node needs.
const (
	Containerd = "containerd"
	Runc       = "runc"
	Shim       = "containerd-shim-runc-v2"
	Pause      = "pause"
)

// Required lists what Install must find.
var Required = []string{Containerd, Runc, Shim, Pause, "bridge", "host-local", "loopback", "portmap"}

const stampFile = ".k1s-installed"

// Read returns an embedded binary.
func Read(name string) ([]byte, error) {
	b, err := files.ReadFile(binDir + "/" + name)
	if err != nil {
		return nil, missing(name)
	}
	return b, nil
}

func missing(name string) error {
	return fmt.Errorf("%s is not built into this k1s binary: build k1s with `make`, which builds the node binaries first", name)
}

// Install writes every embedded binary to dir. A stamp naming this k1s
// executable (path, size, modification time) lets a restart skip the
// work, and with it reading ~60 MB of embedded data into memory.
func Install(dir string) error {
	for _, name := range Required {
		if _, err := fs.Stat(files, binDir+"/"+name); err != nil {
			return missing(name)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	stamp := selfStamp()
	if old, err := os.ReadFile(filepath.Join(dir, stampFile)); err == nil && stamp != "" && string(old) == stamp && allPresent(dir) {
		return nil
	}
	entries, err := fs.ReadDir(files, binDir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() == "README.md" {
			continue
		}
		if err := installOne(dir, e.Name()); err != nil {
			return fmt.Errorf("installing %s: %w", e.Name(), err)
		}
		release(e.Name())
	}
	if stamp == "" {
		return nil
	}
	// Written last and atomically: a stamp on disk means every binary is.
	return atomicfile.Write(filepath.Join(dir, stampFile), []byte(stamp), 0o644)
}

// selfStamp identifies the running k1s executable, or "" if unknown.
func selfStamp() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	st, err := os.Stat(exe)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%s %d %d\n", exe, st.Size(), st.ModTime().UnixNano())
}

func allPresent(dir string) bool {
	for _, name := range Required {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return false
		}
	}
	return true
}

// installOne streams one binary to dir unless an identical file is there.
func installOne(dir, name string) error {
	info, err := fs.Stat(files, binDir+"/"+name)
	if err != nil {
		return err
	}
	dst := filepath.Join(dir, name)
	if st, err := os.Stat(dst); err == nil && st.Size() == info.Size() && sameContent(dst, name) {
		return nil
	}
	src, err := files.Open(binDir + "/" + name)
	if err != nil {
		return err
	}
	defer src.Close()
	// Replaced by a rename, so a running runc or shim keeps its old file.
	return atomicfile.WriteFrom(dst, 0o755, func(w io.Writer) error {
		_, err := io.Copy(w, src)
		return err
	})
}

// sameContent compares a file with an embedded binary in chunks.
func sameContent(path, name string) bool {
	a, err := os.Open(path)
	if err != nil {
		return false
	}
	defer a.Close()
	b, err := files.Open(binDir + "/" + name)
	if err != nil {
		return false
	}
	defer b.Close()
	bufA, bufB := make([]byte, 1<<20), make([]byte, 1<<20)
	for {
		na, errA := io.ReadFull(a, bufA)
		nb, errB := io.ReadFull(b, bufB)
		if na != nb || !bytes.Equal(bufA[:na], bufB[:nb]) {
			return false
		}
		if errA != nil || errB != nil {
			return (errA == io.EOF || errA == io.ErrUnexpectedEOF) && (errB == io.EOF || errB == io.ErrUnexpectedEOF)
		}
	}
}
