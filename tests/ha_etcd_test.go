package tests

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/k1s-io/k1s/tests/harness"
)

// withoutArg returns args without flag (a bare boolean flag).
func withoutArg(args []string, flag string) []string {
	return slices.DeleteFunc(slices.Clone(args), func(a string) bool { return a == flag })
}

// waitExit waits for s to end on its own and returns its log.
func waitExit(t *testing.T, s *harness.Server, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if done, err := s.Exited(); done {
			if err == nil {
				t.Errorf("the server exited 0")
			}
			return s.Log()
		}
		if time.Now().After(deadline) {
			t.Fatalf("still running after %s:\n%s", timeout, s.Tail(20))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestEmbeddedEtcdClusterInit: `k1s server --cluster-init` serves the API
// from an embedded etcd member (client TLS on loopback, its own CAs, 0600
// files); after a SIGKILL it restarts on the same data without the flag
// and still holds what was written. A data dir holding SQLite data is
// refused with --cluster-init, and left as it was.
func TestEmbeddedEtcdClusterInit(t *testing.T) {
	lab := harness.NewLab(t)
	h, hs := lab.AddHost(t, "e1"), lab.AddHost(t, "sq")

	s, err := harness.NewServer(t.TempDir(), "--cluster-init", haDisable)
	if err != nil {
		t.Fatal(err)
	}
	s.PlaceIn(h)
	keepLogsOnFailure(t, s)
	began := time.Now()
	startExisting(t, s)
	t.Logf("BENCH --cluster-init server ready in %s (control plane only)", time.Since(began).Round(100*time.Millisecond))
	for _, want := range []string{"embedded etcd member", "ready in", "stored the cluster's CAs and keys in the datastore", "run on the server holding Lease kube-system/k1s-controllers"} {
		// /readyz answers before the later steps log.
		if err := s.WaitLog(want, 30*time.Second); err != nil {
			t.Error(err)
		}
	}
	server := filepath.Join(s.DataDir, "server")
	if _, err := os.Stat(filepath.Join(server, "db", "etcd", "member")); err != nil {
		t.Errorf("no etcd member data: %v", err)
	}
	if _, err := os.Stat(filepath.Join(server, "db", "state.db")); err == nil {
		t.Error("a SQLite database was made as well")
	}
	tlsFiles, _ := filepath.Glob(filepath.Join(server, "tls", "etcd", "*"))
	if len(tlsFiles) != 10 {
		t.Errorf("tls/etcd holds %d files, want 10 (2 CAs, serving, client, peer; cert and key each): %v", len(tlsFiles), tlsFiles)
	}
	for _, f := range tlsFiles {
		if st, err := os.Stat(f); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v %v, want 0600", f, st.Mode().Perm(), err)
		}
	}
	kc := s.Kubeconfig
	if out, err := kubectlVia(kc, s, "create", "configmap", "on-etcd", "--from-literal=k=v"); err != nil {
		t.Fatal(out, err)
	}
	// Clients on loopback only; peers on the advertise address.
	if c, err := net.DialTimeout("tcp", net.JoinHostPort(h.IP, "2379"), 2*time.Second); err == nil {
		c.Close()
		t.Errorf("the etcd client port answers on %s", h.IP)
	}
	if c, err := net.DialTimeout("tcp", net.JoinHostPort(h.IP, "2380"), 2*time.Second); err != nil {
		t.Errorf("the etcd peer port does not answer on %s: %v", h.IP, err)
	} else {
		c.Close()
	}

	if err := syscall.Kill(s.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "server gone", func() error {
		if done, _ := s.Exited(); !done {
			return os.ErrDeadlineExceeded
		}
		return nil
	})
	s.Args = withoutArg(s.Args, "--cluster-init")
	restarted := time.Now()
	startExisting(t, s)
	t.Logf("BENCH restart on etcd data (no --cluster-init) ready in %s", time.Since(restarted).Round(100*time.Millisecond))
	if !strings.Contains(s.Log(), "embedded etcd member") {
		t.Errorf("the restart without --cluster-init did not use the embedded etcd:\n%s", s.Tail(20))
	}
	if out, err := kubectlVia(kc, s, "get", "configmap", "on-etcd", "-o", "jsonpath={.data.k}"); err != nil || out != "v" {
		t.Errorf("after SIGKILL and restart: configmap %q %v, want v", out, err)
	}

	t.Run("SQLite data dir refused", func(t *testing.T) {
		q, err := harness.NewServer(t.TempDir(), haDisable)
		if err != nil {
			t.Fatal(err)
		}
		q.PlaceIn(hs)
		startExisting(t, q)
		if err := q.Stop(60 * time.Second); err != nil {
			t.Fatal(err)
		}
		before := snapshot(t, q.DataDir)
		q.Args = append(q.Args, "--cluster-init")
		if err := q.Start(); err != nil {
			t.Fatal(err)
		}
		log := waitExit(t, q, 30*time.Second)
		for _, want := range []string{"cannot convert SQLite to etcd", "without --cluster-init", "state.db"} {
			if !strings.Contains(log, want) {
				t.Errorf("the refusal does not say %q:\n%s", want, q.Tail(20))
			}
		}
		if _, err := os.Stat(filepath.Join(q.DataDir, "server", "db", "etcd")); err == nil {
			t.Error("the refused server made an etcd dir")
		}
		after := snapshot(t, q.DataDir)
		for p, v := range before {
			if !strings.HasPrefix(p, "server") {
				continue
			}
			if after[p] != v {
				t.Errorf("%s changed in the refused start", p)
			}
		}
	})
}
