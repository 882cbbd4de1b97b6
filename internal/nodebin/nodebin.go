// Package nodebin ships the node's helper binaries inside k1s: containerd,
// runc, the containerd runc v2 shim, the CNI plugins, crictl and the pause
// program (cmd/pause). `make` builds them and packs them, as one tar stream
// compressed with zstd (cmd/k1s-pack), into bin/<GOARCH>/helpers.tar.zst
// before k1s is compiled; at start they are unpacked to <data-dir>/agent/bin
// when this k1s binary has not installed them there before. The package also
// builds the sandbox image around pause (PauseImage) and runs an embedded
// tool straight from memory (Exec, for `k1s crictl` and `k1s containerd`).
package nodebin

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/zstd"

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

const (
	stampFile = ".k1s-installed"
	archive   = "helpers.tar.zst"
	// maxWindow bounds the decoder's memory; cmd/k1s-pack compresses with
	// a 64 MiB window.
	maxWindow = 64 << 20
)

func missing(name string) error {
	return fmt.Errorf("%s is not built into this k1s binary: build k1s with `make`, which builds the node binaries first", name)
}

// walk calls fn for each binary in the embedded archive, in its order,
// with a reader of its content, until fn returns errStop or an error.
func walk(fn func(hdr *tar.Header, r io.Reader) error) error {
	f, err := files.Open(binDir + "/" + archive)
	if err != nil {
		return missing(Containerd)
	}
	defer f.Close()
	dec, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(maxWindow))
	if err != nil {
		return err
	}
	defer dec.Close()
	tr := tar.NewReader(dec)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("embedded %s is damaged: %w", archive, err)
		}
		if err := fn(hdr, tr); err != nil {
			if errors.Is(err, errStop) {
				return nil
			}
			return err
		}
	}
}

var errStop = errors.New("stop")

// open runs fn on the content of one embedded binary.
func open(name string, fn func(size int64, r io.Reader) error) error {
	found := false
	err := walk(func(hdr *tar.Header, r io.Reader) error {
		if hdr.Name != name {
			return nil
		}
		found = true
		if err := fn(hdr.Size, r); err != nil {
			return err
		}
		return errStop
	})
	if err != nil {
		return err
	}
	if !found {
		return missing(name)
	}
	return nil
}

// Read returns an embedded binary.
func Read(name string) ([]byte, error) {
	var b []byte
	err := open(name, func(size int64, r io.Reader) error {
		b = make([]byte, size)
		_, err := io.ReadFull(r, b)
		return err
	})
	return b, err
}

// Install writes every embedded binary to dir. A stamp naming this k1s
// executable (path, size, modification time) lets a restart skip the
// work, and with it decompressing ~100 MB.
func Install(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	stamp := selfStamp()
	if old, err := os.ReadFile(filepath.Join(dir, stampFile)); err == nil && stamp != "" && string(old) == stamp && allPresent(dir) {
		return nil
	}
	seen := map[string]bool{}
	err := walk(func(hdr *tar.Header, r io.Reader) error {
		if filepath.Base(hdr.Name) != hdr.Name || hdr.Typeflag != tar.TypeReg {
			return fmt.Errorf("embedded %s holds %q, which is not a plain file name", archive, hdr.Name)
		}
		if err := installOne(filepath.Join(dir, hdr.Name), hdr.Size, r); err != nil {
			return fmt.Errorf("installing %s: %w", hdr.Name, err)
		}
		seen[hdr.Name] = true
		return nil
	})
	release(archive)
	if err != nil {
		return err
	}
	for _, name := range Required {
		if !seen[name] {
			return missing(name)
		}
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

// installOne streams one binary (size bytes from r) to dst, leaving an
// identical file alone. It compares while reading, since the compressed
// stream cannot be rewound: at the first difference, the matching prefix
// is copied from the old file and the rest from r.
func installOne(dst string, size int64, r io.Reader) error {
	old, err := os.Open(dst)
	if err == nil {
		defer old.Close()
	}
	var matched int64
	var pending []byte
	if st, serr := os.Stat(dst); err == nil && serr == nil && st.Mode().IsRegular() && st.Size() == size {
		bufA, bufB := make([]byte, 1<<20), make([]byte, 1<<20)
		for matched < size {
			n, rerr := io.ReadFull(r, bufA[:min(int64(len(bufA)), size-matched)])
			if rerr != nil {
				return rerr
			}
			if _, oerr := io.ReadFull(old, bufB[:n]); oerr != nil || !bytes.Equal(bufA[:n], bufB[:n]) {
				pending = bufA[:n]
				break
			}
			matched += int64(n)
		}
		if matched == size {
			return nil
		}
	} else {
		old = nil
	}
	// Replaced by a rename, so a running runc or shim keeps its old file.
	return atomicfile.WriteFrom(dst, 0o755, func(w io.Writer) error {
		if matched > 0 {
			if _, err := old.Seek(0, io.SeekStart); err != nil {
				return err
			}
			if _, err := io.CopyN(w, old, matched); err != nil {
				return err
			}
		}
		if _, err := w.Write(pending); err != nil {
			return err
		}
		rest := size - matched - int64(len(pending))
		n, err := io.CopyN(w, r, rest)
		if err != nil {
			return fmt.Errorf("embedded data ends after %d of %d bytes: %w", matched+int64(len(pending))+n, size, err)
		}
		return nil
	})
}
