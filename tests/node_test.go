package tests

import (
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/k1s-io/k1s/tests/harness"
	"github.com/k1s-io/k1s/tests/images"
)

// newNodeServer prepares a server with its own node; the caller starts it.
// When the test ends (after the server is stopped), the host is cleaned
// with k1s-killall.sh and checked, and ip_forward is restored.
func newNodeServer(t testing.TB, extra ...string) *harness.Server {
	t.Helper()
	s, err := harness.NewNodeServer(t.TempDir(), extra...)
	if err != nil {
		t.Fatal(err)
	}
	forward, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	t.Cleanup(func() {
		out, err := s.Killall()
		if err != nil {
			t.Errorf("k1s-killall.sh: %v\n%s", err, out)
		}
		if left := harness.HostLeftovers(s.Dir); len(left) > 0 {
			t.Errorf("host state left after k1s-killall.sh: %v\n%s", left, out)
		}
		if len(forward) > 0 {
			_ = os.WriteFile("/proc/sys/net/ipv4/ip_forward", forward, 0o644)
		}
	})
	return s
}

func ctr(t *testing.T, s *harness.Server, args ...string) string {
	t.Helper()
	out, err := execOut(harness.Bin(), append([]string{"ctr", "--address", s.ContainerdSocket()}, args...)...)
	if err != nil {
		t.Fatalf("k1s ctr %v: %v\n%s", args, err, out)
	}
	return out
}

// TestAirgapImages: containerd runs from the k1s binary and imports every
// tarball in the images folder; a corrupt one is named and skipped, and a
// restart skips what was already imported.
func TestAirgapImages(t *testing.T) {
	s := newNodeServer(t)
	dir := filepath.Join(s.DataDir, "agent", "images")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := images.Busybox(filepath.Join(dir, "one.tar"), "docker.io/k1s-test/busybox:one", "sleep", "3600"); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(s.Dir, "two.tar")
	if err := images.Busybox(plain, "docker.io/k1s-test/busybox:two", "sleep", "3600"); err != nil {
		t.Fatal(err)
	}
	gzipFile(t, plain, filepath.Join(dir, "two.tar.gz"))
	if err := os.WriteFile(filepath.Join(dir, "broken.tar"), []byte("this is not a tarball"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "README.txt"), []byte("not an image"), 0o600); err != nil {
		t.Fatal(err)
	}

	startExisting(t, s)
	if err := s.WaitLog("k1s is ready", 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	log := s.Log()
	mustContain(t, log, "broken.tar could not be imported", "corrupt tarball named in the log")
	mustContain(t, log, "2 imported, 0 already present, 1 failed", "import summary")
	refs := ctr(t, s, "-n", "k8s.io", "images", "ls", "-q")
	for _, want := range []string{"docker.io/k1s-test/busybox:one", "docker.io/k1s-test/busybox:two"} {
		mustContain(t, refs, want, "images in containerd")
	}
	pid := containerdPID(t, log)

	if err := s.Stop(90 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("containerd (PID %d) still runs after k1s stopped", pid)
	}

	startExisting(t, s)
	if err := s.WaitLog("k1s is ready", 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	mustContain(t, s.Log(), "0 imported, 2 already present, 1 failed", "restart skips imported tarballs")
}

// TestContainerdLeftoverIsReplaced: a containerd left running by a k1s
// that was killed is stopped when k1s starts again.
func TestContainerdLeftoverIsReplaced(t *testing.T) {
	s := newNodeServer(t)
	startExisting(t, s)
	if err := s.WaitLog("k1s is ready", 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	old := containerdPID(t, s.Log())
	if err := syscall.Kill(s.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "k1s gone", func() error {
		if done, _ := s.Exited(); !done {
			return fmt.Errorf("still running")
		}
		return nil
	})
	if err := syscall.Kill(old, 0); err != nil {
		t.Fatalf("expected the orphaned containerd %d to still run: %v", old, err)
	}
	startExisting(t, s)
	if err := s.WaitLog("k1s is ready", 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	mustContain(t, s.Log(), fmt.Sprintf("stopping containerd (PID %d) left running by a previous k1s", old), "stale containerd handled")
	eventually(t, 10*time.Second, "old containerd gone", func() error {
		if syscall.Kill(old, 0) == nil {
			if st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", old)); !strings.Contains(string(st), ") Z ") {
				return fmt.Errorf("PID %d alive", old)
			}
		}
		return nil
	})

	// If containerd dies under a running k1s, k1s fails and names it.
	if err := syscall.Kill(containerdPID(t, s.Log()), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "k1s exits after containerd died", func() error {
		done, err := s.Exited()
		if !done {
			return fmt.Errorf("k1s still running")
		}
		if err == nil {
			return fmt.Errorf("k1s exited 0, want failure")
		}
		return nil
	})
	mustContain(t, s.Log(), "containerd: containerd exited", "failure names containerd")
}

var containerdPIDRe = regexp.MustCompile(`containerd started \(PID (\d+)\)`)

func containerdPID(t *testing.T, log string) int {
	t.Helper()
	m := containerdPIDRe.FindAllStringSubmatch(log, -1)
	if len(m) == 0 {
		t.Fatalf("no containerd PID in log")
	}
	pid, _ := strconv.Atoi(m[len(m)-1][1])
	return pid
}

func gzipFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(f)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
