package nodebin

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"syscall"
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

func builtArchive(t *testing.T) {
	t.Helper()
	if _, err := files.Open(binDir + "/" + archive); err != nil {
		t.Skip("node binaries not built (run make nodebin): nothing to install")
	}
}

func TestReadUnknownNameSaysWhatToDo(t *testing.T) {
	builtArchive(t)
	if _, err := Read("no-such-tool"); err == nil || !bytes.Contains([]byte(err.Error()), []byte("make")) {
		t.Fatalf("Read(no-such-tool) = %v, want an error naming `make`", err)
	}
	b, err := Read(Pause)
	if err != nil || len(b) < 4 || string(b[:4]) != "\x7fELF" {
		t.Fatalf("Read(pause) = %d bytes, %v; want an ELF executable", len(b), err)
	}
}

func TestInstallWritesAndSkips(t *testing.T) {
	builtArchive(t)
	dir := t.TempDir()
	if err := Install(dir); err != nil {
		t.Fatal(err)
	}
	want, err := Read(Runc)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, Runc))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("runc not installed intact: %v", err)
	}
	for _, name := range Required {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil || st.Mode().Perm() != 0o755 {
			t.Fatalf("%s: %v, mode %v; want an executable", name, err, st)
		}
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

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// installOne compares while it reads the (unrewindable) stream: an
// identical file stays, a file differing anywhere is replaced whole.
func TestInstallOneComparesWhileStreaming(t *testing.T) {
	dir := t.TempDir()
	dst := filepath.Join(dir, "tool")
	want := bytes.Repeat([]byte("0123456789abcdef"), 300_000) // ~4.6 MiB: several 1 MiB chunks
	if err := installOne(dst, int64(len(want)), bytes.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	ino := inode(t, dst)
	if err := installOne(dst, int64(len(want)), bytes.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	if inode(t, dst) != ino {
		t.Fatal("an identical file was rewritten")
	}
	cases := map[string][]byte{
		"differs in the third chunk": append(append([]byte{}, want[:2<<20+5]...), append([]byte{'X'}, want[2<<20+6:]...)...),
		"differs in the last byte":   append(append([]byte{}, want[:len(want)-1]...), 'Y'),
		"shorter":                    want[:len(want)-10],
		"longer":                     append(append([]byte{}, want...), "tail"...),
	}
	for name, next := range cases {
		if err := installOne(dst, int64(len(want)), bytes.NewReader(want)); err != nil {
			t.Fatal(err)
		}
		if err := installOne(dst, int64(len(next)), bytes.NewReader(next)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, err := os.ReadFile(dst)
		if err != nil || !bytes.Equal(got, next) {
			t.Fatalf("%s: installed file differs from the new content (%d vs %d bytes, %v)", name, len(got), len(next), err)
		}
	}
	// A stream shorter than its header says fails and leaves the file.
	before, _ := os.ReadFile(dst)
	if err := installOne(dst, int64(len(want)), bytes.NewReader(want[:1000])); err == nil {
		t.Fatal("a truncated stream was accepted")
	}
	after, _ := os.ReadFile(dst)
	if !bytes.Equal(before, after) {
		t.Fatal("a failed install changed the file")
	}
}
