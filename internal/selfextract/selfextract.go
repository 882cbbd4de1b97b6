// Package selfextract is the release executable's format and its launcher's
// logic. A release file is the small static k1s-launcher, then the real k1s
// compressed with zstd, then a fixed-size trailer locating it. On every start
// the launcher makes sure <data-dir>/data/<sha256 of k1s>/k1s holds that k1s,
// unpacking it once per version (atomically, under a lock), and execs it with
// the same argv and environment, so argv[0] dispatch (kubectl, crictl, ctr)
// and flags behave as if the file had been started directly. No UPX: the
// unpacked file is an ordinary executable, demand-paged and shared.
package selfextract

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/k1s-io/k1s/internal/atomicfile"
	"github.com/k1s-io/k1s/internal/digest"
)

// Window is the largest zstd window the launcher's decoder accepts
// (`make release` compresses with zstd --long=26, i.e. 64 MiB): unpacking
// needs about this much memory.
const Window = 64 << 20

const (
	magic       = "K1SPAYL1"
	trailerSize = 8 + 3*8 + sha256.Size
)

// Trailer locates the payload in a release file.
type Trailer struct {
	Offset, Length int64 // of the compressed payload in the file
	Size           int64 // of the unpacked k1s
	Sum            [sha256.Size]byte
}

// ID names the payload's version folder: the hex sha256 of the unpacked k1s.
func (t Trailer) ID() string { return hex.EncodeToString(t.Sum[:]) }

func (t Trailer) encode() []byte {
	b := make([]byte, 0, trailerSize)
	b = append(b, magic...)
	b = binary.BigEndian.AppendUint64(b, uint64(t.Offset))
	b = binary.BigEndian.AppendUint64(b, uint64(t.Length))
	b = binary.BigEndian.AppendUint64(b, uint64(t.Size))
	return append(b, t.Sum[:]...)
}

// Pack writes payload compressed with this package's zstd encoder, then
// the trailer, to w, which already holds offset bytes (the launcher).
// Single-threaded, so the output is the same for the same input. `make
// release` uses Append with the zstd program's stronger compression.
func Pack(w io.Writer, offset int64, payload io.Reader) error {
	cw := &digest.Counter{W: w}
	enc, err := zstd.NewWriter(cw, zstd.WithEncoderLevel(zstd.SpeedBestCompression),
		zstd.WithWindowSize(Window), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(enc, io.TeeReader(payload, h))
	if err != nil {
		return err
	}
	if err := enc.Close(); err != nil {
		return err
	}
	t := Trailer{Offset: offset, Length: cw.N, Size: n}
	h.Sum(t.Sum[:0])
	_, err = w.Write(t.encode())
	return err
}

// Append writes an already compressed payload (one zstd stream with a
// window of at most Window) and the trailer for an unpacked k1s of size
// bytes with sha256 sum, to w, which already holds offset bytes.
func Append(w io.Writer, offset int64, compressed io.Reader, size int64, sum [sha256.Size]byte) error {
	n, err := io.Copy(w, compressed)
	if err != nil {
		return err
	}
	_, err = w.Write(Trailer{Offset: offset, Length: n, Size: size, Sum: sum}.encode())
	return err
}

// Verify unpacks the payload of the release file f in memory-bounded
// streaming, as the launcher would, and checks its size and checksum.
func Verify(f *os.File) (Trailer, error) {
	t, err := ReadTrailer(f)
	if err != nil {
		return t, err
	}
	return t, unpackTo(io.Discard, f, t)
}

// ReadTrailer reads the trailer at the end of f.
func ReadTrailer(f *os.File) (Trailer, error) {
	st, err := f.Stat()
	if err != nil {
		return Trailer{}, err
	}
	b := make([]byte, trailerSize)
	if st.Size() < trailerSize {
		return Trailer{}, errNoPayload
	}
	if _, err := f.ReadAt(b, st.Size()-trailerSize); err != nil {
		return Trailer{}, err
	}
	if string(b[:8]) != magic {
		return Trailer{}, errNoPayload
	}
	t := Trailer{
		Offset: int64(binary.BigEndian.Uint64(b[8:])),
		Length: int64(binary.BigEndian.Uint64(b[16:])),
		Size:   int64(binary.BigEndian.Uint64(b[24:])),
	}
	copy(t.Sum[:], b[32:])
	if t.Offset < 0 || t.Length <= 0 || t.Offset+t.Length != st.Size()-trailerSize {
		return Trailer{}, fmt.Errorf("the release file's trailer does not match its size (%d bytes): the download is damaged; download k1s again", st.Size())
	}
	return t, nil
}

var errNoPayload = errors.New("this k1s-launcher carries no k1s payload: use the release file that `make release` writes to dist/")

// toolNames are the multicall tools: their flags are theirs (`ctr run -d`
// means detach), so the launcher reads no --data-dir/-d from their argv.
var toolNames = map[string]bool{"kubectl": true, "ctr": true, "crictl": true, "containerd": true}

// DataDirFlag returns the value of --data-dir or -d in a k1s argv, or ""
// if absent or if argv runs one of the multicall tools.
func DataDirFlag(argv []string) string { return flagValue(argv, "--data-dir", "-data-dir", "-d") }

// configFlag returns the value of --config or -c in a k1s argv, or "".
func configFlag(argv []string) string { return flagValue(argv, "--config", "-config", "-c") }

func flagValue(argv []string, names ...string) string {
	if len(argv) == 0 || toolNames[filepath.Base(argv[0])] || (len(argv) > 1 && toolNames[argv[1]]) {
		return ""
	}
	val := ""
	for i := 1; i < len(argv); i++ {
		a := argv[i]
		if a == "--" {
			break
		}
		for _, name := range names {
			switch {
			case a == name && i+1 < len(argv):
				val = argv[i+1]
			case strings.HasPrefix(a, name+"="):
				val = a[len(name)+1:]
			}
		}
	}
	return val
}

// Choice is where the launcher unpacks, and why.
type Choice struct {
	DataDir string
	Reason  string
}

// DefaultConfigFile is k1s's (internal/config.DefaultConfigFile).
const DefaultConfigFile = "/etc/k1s/config.yaml"

// ConfigDataDir returns the data-dir key of a k1s config file, or "". The
// launcher carries no YAML parser: it reads a top-level `data-dir:` line
// with a plain or quoted value, which is how the key is written.
func ConfigDataDir(data []byte) string {
	val := ""
	for _, line := range strings.Split(string(data), "\n") {
		key, v, ok := strings.Cut(strings.TrimRight(line, "\r"), ":")
		if !ok || strings.Trim(key, `"'`) != "data-dir" || key != strings.TrimLeft(key, " \t") {
			continue
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') {
			if end := strings.IndexByte(v[1:], v[0]); end >= 0 {
				val = v[1 : 1+end]
				continue
			}
		}
		if i := strings.Index(v, " #"); i >= 0 {
			v = strings.TrimSpace(v[:i])
		}
		val = v
	}
	return val
}

// Env is what ChooseDataDir looks at; fields are replaceable for tests.
type Env struct {
	Argv         []string
	Getenv       func(string) string
	ReadFile     func(string) ([]byte, error)
	Euid         int
	Usable       func(dataDir string) bool // already unpacked there, or writable
	UserCacheDir func() (string, error)
}

// DefaultDataDir is k1s's (internal/config.DefaultDataDir; not imported
// to keep the launcher small).
const DefaultDataDir = "/var/lib/k1s"

// ChooseDataDir picks the data dir as k1s server and agent would
// (--data-dir/-d, then K1S_DATA_DIR, then data-dir in the config file named
// by --config/-c, K1S_CONFIG or /etc/k1s/config.yaml, then /var/lib/k1s),
// for every command, so that one copy is unpacked where the operator keeps
// k1s's data; and, for a non-root user who cannot write there, the
// per-user cache folder ($XDG_CACHE_HOME/k1s, else ~/.cache/k1s).
func ChooseDataDir(e Env) (Choice, error) {
	c := Choice{DataDir: DataDirFlag(e.Argv), Reason: "--data-dir"}
	if c.DataDir == "" {
		c = Choice{DataDir: e.Getenv("K1S_DATA_DIR"), Reason: "K1S_DATA_DIR"}
	}
	if c.DataDir == "" && e.ReadFile != nil {
		file := configFlag(e.Argv)
		if file == "" {
			file = e.Getenv("K1S_CONFIG")
		}
		if file == "" {
			file = DefaultConfigFile
		}
		if data, err := e.ReadFile(file); err == nil {
			c = Choice{DataDir: ConfigDataDir(data), Reason: "data-dir in " + file}
		}
	}
	if c.DataDir == "" {
		c = Choice{DataDir: DefaultDataDir, Reason: "default"}
	}
	if abs, err := filepath.Abs(c.DataDir); err == nil {
		c.DataDir = abs
	}
	if e.Usable(c.DataDir) {
		return c, nil
	}
	if e.Euid == 0 {
		return c, fmt.Errorf("cannot unpack k1s into %s/data (%s): it is not writable; choose another folder with --data-dir or K1S_DATA_DIR", c.DataDir, c.Reason)
	}
	cache, err := e.UserCacheDir()
	if err != nil {
		return c, fmt.Errorf("cannot unpack k1s: %s is not writable for this user and there is no cache folder (%v); set HOME or XDG_CACHE_HOME, or run as root", c.DataDir, err)
	}
	return Choice{DataDir: filepath.Join(cache, "k1s"), Reason: fmt.Sprintf("per-user cache: %s is not writable for this user", c.DataDir)}, nil
}

// Paths of one payload version under a data dir.
func versionDir(dataDir string, t Trailer) string { return filepath.Join(dataDir, "data", t.ID()) }

// Target is where the payload of t is unpacked under dataDir.
func Target(dataDir string, t Trailer) string { return filepath.Join(versionDir(dataDir, t), "k1s") }

func stampPath(target string) string { return target + ".stamp" }

// stamp identifies the unpacked file as it was when it was verified: any
// write to it changes its ctime, a replacement its inode.
func stamp(path string) (string, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return "", err
	}
	return fmt.Sprintf("size=%d dev=%d ino=%d mtime=%d.%09d ctime=%d.%09d\n", st.Size, st.Dev, st.Ino,
		st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec), nil
}

// Fresh reports whether target holds the verified payload of t, cheaply:
// from the stamp written after verification, not by hashing the file.
func Fresh(target string, t Trailer) bool {
	want, err := os.ReadFile(stampPath(target))
	if err != nil {
		return false
	}
	got, err := stamp(target)
	return err == nil && string(want) == got && strings.HasPrefix(got, fmt.Sprintf("size=%d ", t.Size))
}

// Writable reports whether dataDir/data exists or can be created, and can
// be written to.
func Writable(dataDir string) bool {
	d := filepath.Join(dataDir, "data")
	if err := os.MkdirAll(d, 0o755); err != nil {
		return false
	}
	return syscall.Access(d, 2 /* W_OK */) == nil
}

// Result says what Ensure did.
type Result struct {
	Target   string
	Unpacked bool          // false: a verified copy was there already
	Took     time.Duration // of the unpack
	Removed  []string      // other versions' folders deleted
}

// Ensure makes Target(dataDir, t) hold the payload that src (the release
// file) carries, unpacking it if it is missing or differs, and then
// removes other versions' folders. Concurrent callers serialise on a lock
// file; a reader never sees a half-written k1s (temp file and rename).
func Ensure(src io.ReaderAt, t Trailer, dataDir string) (Result, error) {
	target := Target(dataDir, t)
	r := Result{Target: target}
	if Fresh(target, t) {
		return r, nil
	}
	dir := filepath.Dir(target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return r, fmt.Errorf("cannot create %s: %w", dir, err)
	}
	lock, err := os.OpenFile(filepath.Join(dataDir, "data", ".unpack.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return r, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return r, fmt.Errorf("cannot lock %s: %w", lock.Name(), err)
	}
	// Another start may have unpacked it while this one waited.
	if Fresh(target, t) {
		return r, nil
	}
	// A stamp lost but the file intact: verify instead of rewriting.
	if st, err := os.Stat(target); err != nil || st.Size() != t.Size || !sameSum(target, t.Sum) {
		start := time.Now()
		_ = atomicfile.RemoveLeftovers(target)
		if err := unpack(src, t, target); err != nil {
			return r, err
		}
		r.Unpacked, r.Took = true, time.Since(start)
	}
	s, err := stamp(target)
	if err != nil {
		return r, err
	}
	if err := atomicfile.Write(stampPath(target), []byte(s), 0o644); err != nil {
		return r, err
	}
	if r.Unpacked {
		r.Removed = removeOthers(filepath.Join(dataDir, "data"), t.ID())
	}
	return r, nil
}

func sameSum(path string, want [sha256.Size]byte) bool {
	sum, _, err := digest.File(path)
	return err == nil && sum == want
}

func unpack(src io.ReaderAt, t Trailer, target string) error {
	return atomicfile.WriteFrom(target, 0o755, func(w io.Writer) error { return unpackTo(w, src, t) })
}

func unpackTo(w io.Writer, src io.ReaderAt, t Trailer) error {
	dec, err := zstd.NewReader(io.NewSectionReader(src, t.Offset, t.Length), zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(Window))
	if err != nil {
		return err
	}
	defer dec.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), dec)
	if err != nil {
		return fmt.Errorf("unpacking k1s: %w: the release file is damaged; download it again", err)
	}
	if n != t.Size || !bytes.Equal(h.Sum(nil), t.Sum[:]) {
		return errors.New("unpacked k1s does not match its checksum: the release file is damaged; download it again")
	}
	return nil
}

// removeOthers deletes the folders of other payload versions. A k1s still
// running from one keeps its open file; only unused disk space goes.
func removeOthers(dataSub, keep string) []string {
	entries, err := os.ReadDir(dataSub)
	if err != nil {
		return nil
	}
	var removed []string
	for _, e := range entries {
		if !e.IsDir() || e.Name() == keep || !isID(e.Name()) {
			continue
		}
		if os.RemoveAll(filepath.Join(dataSub, e.Name())) == nil {
			removed = append(removed, e.Name())
		}
	}
	return removed
}

func isID(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// Main is the launcher: find the payload, unpack it if needed, exec it.
func Main() int {
	exe, err := os.Open("/proc/self/exe")
	if err == nil {
		defer exe.Close()
	}
	var t Trailer
	if err == nil {
		t, err = ReadTrailer(exe)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "k1s:", err)
		return 1
	}
	choice, err := ChooseDataDir(Env{
		Argv:     os.Args,
		Getenv:   os.Getenv,
		ReadFile: os.ReadFile,
		Euid:     os.Geteuid(),
		Usable: func(d string) bool {
			return Fresh(Target(d, t), t) || Writable(d)
		},
		UserCacheDir: os.UserCacheDir,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "k1s:", err)
		return 1
	}
	res, err := Ensure(exe, t, choice.DataDir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "k1s:", err)
		return 1
	}
	// Said only to a person at a terminal: scripts and tools that read
	// k1s's (or kubectl's) stderr must not find a note there.
	if st, err := os.Stderr.Stat(); err == nil && res.Unpacked && st.Mode()&os.ModeCharDevice != 0 {
		fmt.Fprintf(os.Stderr, "k1s: unpacked this version to %s in %.1f s (data dir: %s)\n", res.Target, res.Took.Seconds(), choice.Reason)
	}
	exe.Close()
	err = syscall.Exec(res.Target, os.Args, os.Environ())
	fmt.Fprintf(os.Stderr, "k1s: cannot run %s: %v\n", res.Target, err)
	return 1
}
