package release

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/k1s-io/k1s/internal/selfextract"
	"github.com/k1s-io/k1s/tests/harness"
)

func inodeOf(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// TestLauncher runs dist/k1s (launcher and payload) as a user would: the
// first start unpacks into the data dir, a second does not, a damaged
// unpacked file is replaced, other versions' folders go, argv[0] still
// selects kubectl, --data-dir is honoured, and a user who cannot write
// the data dir gets a per-user cache folder.
func TestLauncher(t *testing.T) {
	exe := filepath.Join(distDir(t), "k1s")
	f, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := selfextract.ReadTrailer(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	target := selfextract.Target(dataDir, tr)
	oldVersion := filepath.Join(dataDir, "data", strings.Repeat("0", 64))
	if err := os.MkdirAll(oldVersion, 0o755); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	out, stderr := run(t, dataDir, exe, "--version")
	cold := time.Since(start)
	if !strings.HasPrefix(out, "k1s version v") || stderr != "" || !selfextract.Fresh(target, tr) {
		t.Fatalf("first start: stdout %q, stderr %q; want the version, nothing on stderr (no terminal) and a verified unpack into %s", out, stderr, target)
	}
	if _, err := os.Stat(oldVersion); !os.IsNotExist(err) {
		t.Errorf("the other version's folder %s is still there after an unpack: %v", oldVersion, err)
	}
	ino := inodeOf(t, target)

	start = time.Now()
	out2, stderr := run(t, dataDir, exe, "--version")
	warm := time.Since(start)
	if out2 != out || stderr != "" || inodeOf(t, target) != ino {
		t.Fatalf("second start: stdout %q, stderr %q, inode changed %v; want the same version, silently, from the same file",
			out2, stderr, inodeOf(t, target) != ino)
	}
	t.Logf("--version through the launcher: first start (unpack) %s, second %s", cold.Round(time.Millisecond), warm.Round(time.Millisecond))

	// Damaged in place: the next start notices and unpacks again.
	w, err := os.OpenFile(target, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt([]byte("damaged"), tr.Size/2); err != nil {
		t.Fatal(err)
	}
	w.Close()
	damagedIno := inodeOf(t, target)
	out3, _ := run(t, dataDir, exe, "--version")
	if out3 != out || inodeOf(t, target) == damagedIno || !selfextract.Fresh(target, tr) {
		t.Fatalf("start after damage: stdout %q, inode changed %v; want a new, verified unpack and the version",
			out3, inodeOf(t, target) != damagedIno)
	}

	// argv[0] is kept: a kubectl link to the release file runs kubectl.
	link := filepath.Join(t.TempDir(), "kubectl")
	if err := os.Symlink(exe, link); err != nil {
		t.Fatal(err)
	}
	out, stderr = run(t, dataDir, link, "version", "--client")
	if !strings.Contains(out, "Client Version: v1.") || stderr != "" {
		t.Fatalf("kubectl link: stdout %q, stderr %q", out, stderr)
	}

	// --data-dir wins over K1S_DATA_DIR.
	flagDir := t.TempDir()
	run(t, dataDir, exe, "server", "--data-dir", flagDir, "--help")
	if !selfextract.Fresh(selfextract.Target(flagDir, tr), tr) {
		t.Fatalf("server --data-dir %s --help: no unpacked k1s there", flagDir)
	}

	// A user who cannot write the data dir: the per-user cache folder.
	// Not below t.TempDir(), whose parent only root may enter.
	home, err := os.MkdirTemp("", "k1s-launcher-home-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	if err := os.Chmod(home, 0o777); err != nil {
		t.Fatal(err)
	}
	closed := t.TempDir() // 0700, root's
	cmd := exec.Command(exe, "--version")
	cmd.Env = harness.Env("K1S_DATA_DIR="+closed, "HOME="+home, "XDG_CACHE_HOME=")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	b, err := cmd.CombinedOutput()
	cached := selfextract.Target(filepath.Join(home, ".cache", "k1s"), tr)
	if err != nil || !strings.HasPrefix(string(b), "k1s version v") || !selfextract.Fresh(cached, tr) {
		t.Fatalf("--version as nobody with an unwritable data dir: %v\n%s\nwant an unpack into %s", err, b, cached)
	}
}
