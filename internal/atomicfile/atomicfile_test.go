package atomicfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// names lists dir's entries, sorted.
func names(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func TestWriteContentAndMode(t *testing.T) {
	// A restrictive umask must not change the mode asked for.
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	for _, mode := range []os.FileMode{0o600, 0o640, 0o644, 0o755} {
		t.Run(mode.String(), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "f")
			// An existing file with other content and mode is replaced.
			if err := os.WriteFile(path, []byte("a longer old content that must not linger"), 0o666); err != nil {
				t.Fatal(err)
			}
			data := []byte("new\n")
			if err := Write(path, data, mode); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Errorf("content %q, want %q", got, data)
			}
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode() != mode {
				t.Errorf("mode %v, want %v", st.Mode(), mode)
			}
			if n := names(t, dir); !slices.Equal(n, []string{"f"}) {
				t.Errorf("directory holds %v, want only f", n)
			}
		})
	}
}

func TestWriteNewFileRelativePath(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := Write("rel", []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "rel")); err != nil || string(got) != "x" {
		t.Fatalf("read back %q, %v; want \"x\"", got, err)
	}
}

func TestFailingWriterKeepsOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := WriteFrom(path, 0o644, func(w io.Writer) error {
		if _, err := w.Write([]byte("half of the new")); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("error %v, want one wrapping %v", err, boom)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name %s", err, path)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "old" {
		t.Errorf("content %q after a failed write, want \"old\"", got)
	}
	if st, _ := os.Stat(path); st.Mode() != 0o600 {
		t.Errorf("mode %v after a failed write, want -rw-------", st.Mode())
	}
	if n := names(t, dir); !slices.Equal(n, []string{"config.toml"}) {
		t.Errorf("directory holds %v, want only config.toml (no temporary file left)", n)
	}
}

func TestFailingRenameLeavesNoTempFile(t *testing.T) {
	dir := t.TempDir()
	// A non-empty directory in the way: the rename fails.
	path := filepath.Join(dir, "target")
	if err := os.MkdirAll(filepath.Join(path, "child"), 0o700); err != nil {
		t.Fatal(err)
	}
	err := Write(path, []byte("data"), 0o600)
	if err == nil {
		t.Fatal("write over a non-empty directory succeeded")
	}
	if !strings.Contains(err.Error(), "cannot replace "+path) {
		t.Errorf("error %q does not say the target could not be replaced", err)
	}
	if n := names(t, dir); !slices.Equal(n, []string{"target"}) {
		t.Errorf("directory holds %v, want only target", n)
	}
}

func TestMissingDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "absent")
	path := filepath.Join(dir, "f")
	err := Write(path, []byte("x"), 0o600)
	if err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error %v does not wrap fs.ErrNotExist", err)
	}
	want := fmt.Sprintf("cannot write %s: directory %s does not exist", path, dir)
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q, want it to contain %q", err, want)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the missing directory was created (stat: %v)", err)
	}
}

func TestDirectoryPath(t *testing.T) {
	err := Write(t.TempDir()+"/", []byte("x"), 0o600)
	if err == nil || !strings.Contains(err.Error(), "names a directory") {
		t.Fatalf("error %v, want one saying the path names a directory", err)
	}
}

// Writers racing on one path, and a reader watching it: every read sees
// one writer's whole content, and no temporary file is left.
func TestConcurrentWritersNeverTear(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "shared")
	const size = 256 << 10
	const writers, rounds = 8, 10
	if err := Write(path, bytes.Repeat([]byte{'A'}, size), 0o644); err != nil {
		t.Fatal(err)
	}

	done := make(chan struct{})
	readErr := make(chan error, 1)
	go func() {
		defer close(readErr)
		reads := 0
		for {
			select {
			case <-done:
				if reads == 0 {
					readErr <- errors.New("the reader never read the file")
				}
				return
			default:
			}
			b, err := os.ReadFile(path)
			if err != nil {
				readErr <- err
				return
			}
			reads++
			if len(b) != size || !bytes.Equal(b, bytes.Repeat(b[:1], size)) {
				readErr <- fmt.Errorf("torn read: %d bytes, first %q", len(b), b[:min(len(b), 1)])
				return
			}
		}
	}()

	var wg sync.WaitGroup
	errs := make(chan error, writers*rounds)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data := bytes.Repeat([]byte{byte('a' + i)}, size)
			for range rounds {
				// Streamed in small pieces, so writes interleave.
				err := WriteFrom(path, 0o644, func(w io.Writer) error {
					for off := 0; off < size; off += 4096 {
						if _, err := w.Write(data[off : off+4096]); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(done)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for err := range readErr {
		t.Error(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != size || b[0] < 'a' || b[0] >= 'a'+writers || !bytes.Equal(b, bytes.Repeat(b[:1], size)) {
		t.Errorf("final file is not one writer's whole content (%d bytes, first %q)", len(b), b[:1])
	}
	if n := names(t, dir); !slices.Equal(n, []string{"shared"}) {
		t.Errorf("directory holds %v, want only shared", n)
	}
}

func TestRemoveLeftovers(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "hosts.toml")
	// A write cut off before its rename leaves its temporary file.
	stale := filepath.Join(dir, ".hosts.toml"+tempInfix+"123")
	for _, f := range []string{path, stale, filepath.Join(dir, ".other.toml"+tempInfix+"1"), filepath.Join(dir, "hosts.toml.bak")} {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := RemoveLeftovers(path); err != nil {
		t.Fatal(err)
	}
	want := []string{".other.toml" + tempInfix + "1", "hosts.toml", "hosts.toml.bak"}
	if n := names(t, dir); !slices.Equal(n, want) {
		t.Errorf("directory holds %v, want %v", n, want)
	}
	if err := RemoveLeftovers(filepath.Join(dir, "absent", "f")); err != nil {
		t.Errorf("missing directory: %v, want nil", err)
	}
}

// The temporary file a write uses is one RemoveLeftovers recognises.
func TestLeftoverOfInterruptedWriteIsRecognised(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	var tmpName string
	err := WriteFrom(path, 0o600, func(w io.Writer) error {
		tmpName = filepath.Base(w.(*os.File).Name())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tmpName, ".f"+tempInfix) {
		t.Fatalf("temporary file %q, want prefix %q", tmpName, ".f"+tempInfix)
	}
	// What a crash before the rename would have left.
	if err := os.WriteFile(filepath.Join(dir, tmpName), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := RemoveLeftovers(path); err != nil {
		t.Fatal(err)
	}
	if n := names(t, dir); !slices.Equal(n, []string{"f"}) {
		t.Errorf("directory holds %v, want [f]", n)
	}
}
