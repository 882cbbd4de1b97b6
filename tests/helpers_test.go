// End-to-end tests: they start the real k1s binary ($K1S_BIN, built by
// `make`) and talk to it only through its CLI, kubectl and HTTPS.
package tests

import (
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/k1s-io/k1s/tests/harness"
)

const readyTimeout = 90 * time.Second

func TestMain(m *testing.M) {
	if _, err := os.Stat(harness.Bin()); err != nil {
		println("k1s binary not found at", harness.Bin(), "- run `make` first or set K1S_BIN")
		os.Exit(1)
	}
	// A node in the root namespace turns IP forwarding on (as k1s does on a
	// host); the host gets back the value it had.
	forward, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	code := m.Run()
	if len(forward) > 0 {
		_ = os.WriteFile("/proc/sys/net/ipv4/ip_forward", forward, 0o644)
	}
	os.Exit(code)
}

// startServer starts a server in a fresh temp dir and stops it when the
// test ends; on failure the log tail is printed.
func startServer(t *testing.T, extra ...string) *harness.Server {
	t.Helper()
	s, err := harness.NewServer(t.TempDir(), extra...)
	if err != nil {
		t.Fatal(err)
	}
	startExisting(t, s)
	return s
}

// startExisting (re)starts s and registers its stop.
func startExisting(t testing.TB, s *harness.Server) {
	t.Helper()
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(90 * time.Second); err != nil {
			t.Errorf("stopping server: %v", err)
		}
		if t.Failed() {
			// k1s's own log last: CI shows the end of a failed test's output.
			t.Logf("log tail of %s:\n%s", s.ComponentLogPath(), s.ComponentTail(40))
			t.Logf("log tail of %s:\n%s", s.LogPath, s.Tail(40))
			t.Logf("errors and warnings in %s:\n%s", s.LogPath, s.Problems(20))
			t.Logf("start-up steps not finished in %s: %s", s.LogPath, s.Unfinished())
		}
	})
	if err := s.WaitReady(readyTimeout); err != nil {
		t.Fatal(err)
	}
}

// eventually retries f until it returns nil or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s: %v", what, timeout, err)
}

// snapshot maps every file below dir to its mode and content hash, so a
// test can show that a failed start changed nothing.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		v := info.Mode().String()
		if info.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			v += " " + hex.EncodeToString(sum[:]) + " " + info.ModTime().String()
		}
		out[rel] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func diffSnapshots(before, after map[string]string) []string {
	var d []string
	for k, v := range before {
		if a, ok := after[k]; !ok {
			d = append(d, "removed "+k)
		} else if a != v {
			d = append(d, "changed "+k)
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			d = append(d, "added "+k)
		}
	}
	return d
}

func mustContain(t *testing.T, got, want, what string) {
	t.Helper()
	if !strings.Contains(got, want) {
		t.Fatalf("%s: want %q in:\n%s", what, want, got)
	}
}
