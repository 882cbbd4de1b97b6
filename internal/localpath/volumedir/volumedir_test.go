package volumedir

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPathRefusesEscapes(t *testing.T) {
	for _, c := range []struct{ root, name string }{
		{"/var/lib/k1s/storage", "../etc"},
		{"/var/lib/k1s/storage", ".."},
		{"/var/lib/k1s/storage", "."},
		{"/var/lib/k1s/storage", "a/b"},
		{"/var/lib/k1s/storage", ""},
		{"/", "pvc-1"},
		{"relative/storage", "pvc-1"},
		{"/var/lib/../k1s", "pvc-1"},
	} {
		if p, err := Path(c.root, c.name); err == nil {
			t.Errorf("Path(%q, %q) = %q, want an error", c.root, c.name, p)
		}
	}
	p, err := Path("/var/lib/k1s/storage", "pvc-1")
	if err != nil || p != "/var/lib/k1s/storage/pvc-1" {
		t.Fatalf("Path = %q, %v", p, err)
	}
}

func TestCreateAndDelete(t *testing.T) {
	root := filepath.Join(t.TempDir(), "storage")
	if err := Create(root, "pvc-1", 1024); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(root, "pvc-1"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o777 {
		t.Errorf("mode %v, want 0777", fi.Mode().Perm())
	}
	// A retry keeps the directory and what is in it.
	if err := os.WriteFile(filepath.Join(root, "pvc-1", "data"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Create(root, "pvc-1", 1024); err != nil {
		t.Fatalf("second create: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "pvc-1", "data")); err != nil {
		t.Fatalf("second create lost the data: %v", err)
	}
	if err := Delete(root, "pvc-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "pvc-1")); !os.IsNotExist(err) {
		t.Fatalf("directory still there: %v", err)
	}
	if err := Delete(root, "pvc-1"); err != nil {
		t.Fatalf("deleting again: %v", err)
	}
	if _, err := os.Stat(root); err != nil {
		t.Fatalf("the root must stay: %v", err)
	}
}

func TestCreateRefusesMoreThanFree(t *testing.T) {
	root := t.TempDir()
	err := Create(root, "pvc-big", 1<<62)
	var ns *NoSpaceError
	if !errors.As(err, &ns) {
		t.Fatalf("err = %v, want a NoSpaceError", err)
	}
	if !strings.Contains(err.Error(), "4.0 EiB") || !strings.Contains(err.Error(), root) {
		t.Errorf("message %q should name the size asked and the root", err)
	}
	if _, err := os.Stat(filepath.Join(root, "pvc-big")); !os.IsNotExist(err) {
		t.Errorf("directory made although it does not fit: %v", err)
	}
}

func TestDeleteLeavesFilesAlone(t *testing.T) {
	root := t.TempDir()
	f := filepath.Join(root, "pvc-file")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Delete(root, "pvc-file"); err == nil {
		t.Fatal("deleted a file that is not a volume directory")
	}
}
