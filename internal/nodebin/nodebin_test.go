package nodebin

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestEmbeddedDataIsTheFileContent(t *testing.T) {
	f, err := files.Open(binDir + "/README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want, _ := io.ReadAll(f)
	f2, _ := files.Open(binDir + "/README.md")
	defer f2.Close()
	got, ok := embeddedData(f2)
	if !ok || got != string(want) {
		t.Fatalf("embeddedData does not find embed's data (ok=%v): release would do nothing", ok)
	}
	release("README.md") // must not fault
	again, _ := files.ReadFile(binDir + "/README.md")
	if !bytes.Equal(again, want) {
		t.Fatal("content changed after release")
	}
}

func TestInstallWritesAndSkips(t *testing.T) {
	if _, err := files.Open(binDir + "/" + Runc); err != nil {
		t.Skip("node binaries not built (run make nodebin): nothing to install")
	}
	dir := t.TempDir()
	if err := Install(dir); err != nil {
		t.Fatal(err)
	}
	want, _ := files.ReadFile(binDir + "/" + Runc)
	got, err := os.ReadFile(filepath.Join(dir, Runc))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("runc not installed intact: %v", err)
	}
	// A damaged binary is replaced, even with the stamp present.
	if err := os.WriteFile(filepath.Join(dir, Runc), []byte("damaged"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, stampFile))
	if err := Install(dir); err != nil {
		t.Fatal(err)
	}
	got, _ = os.ReadFile(filepath.Join(dir, Runc))
	if !bytes.Equal(got, want) {
		t.Fatal("damaged runc was not replaced")
	}
	if _, err := os.Stat(filepath.Join(dir, stampFile)); err != nil {
		t.Fatalf("no stamp after install: %v", err)
	}
}
