// Command k1s-pack is a build tool (run by the Makefile, not shipped). It
// compresses the node's helper binaries into the archive internal/nodebin
// embeds, and joins the k1s-launcher with a compressed k1s into the release
// executable. Both outputs are deterministic, as `make release-check`
// requires: fixed tar headers and a single-threaded zstd encoder.
//
//	k1s-pack helpers -o internal/nodebin/bin/amd64/helpers.tar.zst -dir bin/nodebin/amd64 crictl containerd ...
//	k1s-pack release -launcher bin/k1s-launcher -payload bin/k1s-full -o dist/k1s
package main

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"math/bits"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/k1s-io/k1s/internal/atomicfile"
	"github.com/k1s-io/k1s/internal/digest"
	"github.com/k1s-io/k1s/internal/selfextract"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "helpers":
		err = helpers(os.Args[2:])
	case "release":
		err = release(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "k1s-pack:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: k1s-pack helpers -o OUT -dir DIR NAME...\n       k1s-pack release -launcher FILE -payload FILE -o OUT")
	os.Exit(2)
}

// helpersWindow lets containerd, crictl and the shim (which share much
// code) match across files; internal/nodebin's decoder accepts it (its
// maxWindow must not be smaller).
const helpersWindow = 64 << 20

// helpers writes the named files of dir, in the given order, as one tar
// stream compressed with zstd. Compressing ~100 MB takes ~10 s and `go
// install` rewrites the binaries even when unchanged, so it does nothing
// when the inputs' checksum (kept in dir/.helpers.sha256) is that of the
// archive already there.
func helpers(args []string) error {
	fs := flag.NewFlagSet("helpers", flag.ExitOnError)
	out := fs.String("o", "", "archive to write")
	dir := fs.String("dir", "", "folder holding the binaries")
	_ = fs.Parse(args)
	names := fs.Args()
	if *out == "" || *dir == "" || len(names) == 0 {
		usage()
	}
	sumFile := filepath.Join(*dir, ".helpers.sha256")
	sum, err := inputsSum(*dir, names)
	if err != nil {
		return err
	}
	if st, err := os.Stat(*out); err == nil {
		if old, err := os.ReadFile(sumFile); err == nil && string(old) == fmt.Sprintf("%s %d\n", sum, st.Size()) {
			return nil
		}
	}
	start := time.Now()
	var in int64
	err = atomicfile.WriteFrom(*out, 0o644, func(w io.Writer) error {
		zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedBestCompression),
			zstd.WithWindowSize(helpersWindow), zstd.WithEncoderConcurrency(1))
		if err != nil {
			return err
		}
		tw := tar.NewWriter(zw)
		for _, name := range names {
			f, err := os.Open(filepath.Join(*dir, name))
			if err != nil {
				return err
			}
			st, err := f.Stat()
			if err != nil {
				f.Close()
				return err
			}
			// Only name, size and mode: no times or owners, so that
			// rebuilding the same binaries gives the same bytes.
			hdr := &tar.Header{Name: name, Size: st.Size(), Mode: 0o755, Typeflag: tar.TypeReg, Format: tar.FormatUSTAR}
			if err := tw.WriteHeader(hdr); err != nil {
				f.Close()
				return err
			}
			n, err := io.Copy(tw, f)
			f.Close()
			if err != nil {
				return err
			}
			in += n
		}
		if err := tw.Close(); err != nil {
			return err
		}
		return zw.Close()
	})
	if err != nil {
		return err
	}
	st, err := os.Stat(*out)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(sumFile, fmt.Appendf(nil, "%s %d\n", sum, st.Size()), 0o644); err != nil {
		return err
	}
	fmt.Printf("k1s-pack: %s: %d files, %.1f MiB -> %.1f MiB in %.1f s\n", *out, len(names),
		float64(in)/(1<<20), float64(st.Size())/(1<<20), time.Since(start).Seconds())
	return nil
}

// inputsSum is the sha256 over the names, sizes and contents of the inputs.
func inputsSum(dir string, names []string) (string, error) {
	h := sha256.New()
	for _, name := range names {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			return "", err
		}
		n, err := io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "\x00%s\x00%d\x00", name, n)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// release writes the launcher, the payload compressed by the zstd
// program (level 19 with a long window: ~9 % smaller than this module's
// best encoder, which matters for the 70 MiB target), and the trailer;
// then it unpacks the result as the launcher would, to check it.
func release(args []string) error {
	fs := flag.NewFlagSet("release", flag.ExitOnError)
	launcher := fs.String("launcher", "", "the k1s-launcher executable")
	payload := fs.String("payload", "", "the k1s executable to carry")
	out := fs.String("o", "", "release executable to write")
	_ = fs.Parse(args)
	if *launcher == "" || *payload == "" || *out == "" {
		usage()
	}
	zstdBin, err := exec.LookPath("zstd")
	if err != nil {
		return fmt.Errorf("the zstd program is needed to compress the release payload: install Debian's zstd (make release-deps): %w", err)
	}
	start := time.Now()
	l, err := os.ReadFile(*launcher)
	if err != nil {
		return err
	}
	sum, size, err := digest.File(*payload)
	if err != nil {
		return err
	}
	longBits := bits.Len(uint(selfextract.Window)) - 1
	err = atomicfile.WriteFrom(*out, 0o755, func(w io.Writer) error {
		if _, err := w.Write(l); err != nil {
			return err
		}
		// -T1: one thread, so the same input gives the same bytes.
		cmd := exec.Command(zstdBin, "-19", fmt.Sprintf("--long=%d", longBits), "-T1", "-q", "-c", "--", *payload)
		cmd.Stderr = os.Stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return err
		}
		aerr := selfextract.Append(w, int64(len(l)), stdout, size, sum)
		if err := cmd.Wait(); err != nil {
			return fmt.Errorf("zstd: %w", err)
		}
		return aerr
	})
	if err != nil {
		return err
	}
	took := time.Since(start)
	f, err := os.Open(*out)
	if err != nil {
		return err
	}
	defer f.Close()
	vstart := time.Now()
	t, err := selfextract.Verify(f)
	if err != nil {
		return fmt.Errorf("%s does not unpack: %w", *out, err)
	}
	st, err := f.Stat()
	if err != nil {
		return err
	}
	fmt.Printf("k1s-pack: %s: %.2f MiB = launcher %.2f MiB + payload %.1f MiB compressed to %.2f MiB (zstd -19 --long=%d) in %.1f s; unpacks in %.1f s\n",
		*out, float64(st.Size())/(1<<20), float64(len(l))/(1<<20), float64(size)/(1<<20), float64(t.Length)/(1<<20),
		longBits, took.Seconds(), time.Since(vstart).Seconds())
	return nil
}
