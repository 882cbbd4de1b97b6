// Package atomicfile replaces a file in one step: a reader, a concurrent
// writer or a crash sees either the old content or the whole new content,
// never part of it. The data goes to a uniquely named temporary file in the
// target's directory (so the rename stays on one filesystem), which is given
// its mode, synced, closed and renamed over the target; then the directory
// is synced so the rename itself survives a crash. On any failure the
// temporary file is removed and the old target is left as it was.
package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// tempInfix sits between "."+<target name> and CreateTemp's random suffix.
// The leading dot keeps a half-written file out of directory scans that
// skip dot files, such as the add-on applier's.
const tempInfix = ".tmp-"

// Write replaces path with data, with exactly the permission bits of mode
// (the umask does not apply). The directory must exist.
func Write(path string, data []byte, mode os.FileMode) error {
	return WriteFrom(path, mode, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteFrom replaces path with what write writes, for content too large to
// hold in memory. If write returns an error, path is left untouched and
// that error is returned (wrapped). write must not keep w after returning.
func WriteFrom(path string, mode os.FileMode, write func(w io.Writer) error) (err error) {
	_, base := filepath.Split(path)
	if base == "" {
		return fmt.Errorf("cannot write %q: the path names a directory, not a file", path)
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+base+tempInfix+"*")
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("cannot write %s: directory %s does not exist (create it first): %w", path, dir, err)
		}
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close() // a second Close after a failed one only returns an error
			os.Remove(tmp)
		}
	}()
	if err := write(f); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Chmod(mode.Perm()); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("cannot replace %s: %w", path, err)
	}
	// The new content is in place; a failing directory sync only means the
	// rename might not survive a crash, which the caller should still hear.
	if err := SyncDir(dir); err != nil {
		return fmt.Errorf("%s was replaced, but %w", path, err)
	}
	return nil
}

// SyncDir flushes dir's entries (a rename or a new file in it) to disk.
// Filesystems that cannot sync a directory are not an error.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("cannot sync directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("cannot sync directory %s: %w", dir, err)
	}
	return nil
}

// RemoveLeftovers deletes the temporary files that writes of path cut off
// by a crash left in its directory. It must not run while another write of
// path may be under way, since it would remove that write's file too.
func RemoveLeftovers(path string) error {
	dir, base := filepath.Dir(path), filepath.Base(path)
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	prefix := "." + base + tempInfix
	var errs []error
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasPrefix(e.Name(), prefix) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
