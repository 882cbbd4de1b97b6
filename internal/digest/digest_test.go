package digest

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte("abc"), 0o600); err != nil {
		t.Fatal(err)
	}
	sum, n, err := File(p)
	if err != nil {
		t.Fatal(err)
	}
	// sha256("abc"), FIPS 180-2 appendix B.1.
	if want := "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; sum.Hex() != want || n != 3 {
		t.Errorf("File = %s, %d; want %s, 3", sum.Hex(), n, want)
	}
	if _, _, err := File(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: err = %v, want not-exist", err)
	}
}

func TestCounter(t *testing.T) {
	var buf bytes.Buffer
	c := &Counter{W: &buf}
	for _, s := range []string{"hello", ", ", "world"} {
		if _, err := c.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	if c.N != 12 || buf.String() != "hello, world" {
		t.Errorf("Counter: N=%d, wrote %q", c.N, buf.String())
	}
}
