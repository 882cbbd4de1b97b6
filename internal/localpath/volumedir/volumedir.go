// Package volumedir makes and removes the directories of local-path
// volumes on a node's disk. It is what the helper image (cmd/k1s-local-path)
// runs in a short-lived Pod on the volume's node, and it has no Kubernetes
// dependencies so that image stays small. Every path it touches is one
// direct child of the storage root, whatever name it is given.
package volumedir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Path is root/name after checking that root is an absolute, clean path
// other than "/" and that name is one plain path element.
func Path(root, name string) (string, error) {
	if !filepath.IsAbs(root) || filepath.Clean(root) != root || root == "/" {
		return "", fmt.Errorf("storage root %q must be an absolute, clean path other than /", root)
	}
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return "", fmt.Errorf("volume directory name %q must be one path element (no /, not . or ..)", name)
	}
	return filepath.Join(root, name), nil
}

// Create makes root (0755) and root/name (0777, so that Pods running as any
// user can write) after checking that the file system holding root has at
// least size bytes available. An existing directory is kept: a retried
// create after a lost reply must not fail.
func Create(root, name string, size int64) error {
	dir, err := Path(root, name)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", root, err)
	}
	free := int64(st.Bavail) * st.Bsize
	if size > free {
		return &NoSpaceError{Root: root, Asked: size, Free: free}
	}
	if err := os.Mkdir(dir, 0o777); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	// Mkdir's mode is masked by the umask.
	return os.Chmod(dir, 0o777)
}

// Delete removes root/name and everything in it; a missing directory is
// not an error (the delete may be a retry).
func Delete(root, name string) error {
	dir, err := Path(root, name)
	if err != nil {
		return err
	}
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory; not removing it", dir)
	}
	return os.RemoveAll(dir)
}

// NoSpaceError says the volume does not fit on the node's disk.
type NoSpaceError struct {
	Root        string
	Asked, Free int64
}

func (e *NoSpaceError) Error() string {
	return fmt.Sprintf("asks for %s but %s has only %s free", Bytes(e.Asked), e.Root, Bytes(e.Free))
}

// Bytes formats n in binary units, as Kubernetes quantities are usually
// written (1Gi, 512Mi).
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	units := []string{"Ki", "Mi", "Gi", "Ti", "Pi", "Ei"}
	v := float64(n) / unit
	i := 0
	for v >= unit && i < len(units)-1 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %sB", v, units[i])
}
