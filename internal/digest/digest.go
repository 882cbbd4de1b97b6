// Package digest is the one place k1s hashes a file with SHA-256 and
// counts bytes on their way to a writer: the air-gap image import, the
// snapshots, the self-extracting release file and the build tools all
// need the same two small things.
package digest

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
)

// Sum is a SHA-256 digest.
type Sum [sha256.Size]byte

// Hex is the digest as lower-case hex, as sha256sum prints it.
func (s Sum) Hex() string { return hex.EncodeToString(s[:]) }

// File returns the SHA-256 of the file at path and its length in bytes.
func File(path string) (Sum, int64, error) {
	var sum Sum
	f, err := os.Open(path)
	if err != nil {
		return sum, 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return sum, n, err
	}
	h.Sum(sum[:0])
	return sum, n, nil
}

// Counter passes writes to W and counts the bytes written.
type Counter struct {
	W io.Writer
	N int64
}

func (c *Counter) Write(p []byte) (int, error) {
	n, err := c.W.Write(p)
	c.N += int64(n)
	return n, err
}
