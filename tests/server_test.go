package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/k1s-io/k1s/tests/harness"
)

// TestServerLifecycle: an empty data dir becomes a working control plane;
// a restart keeps the state, the CA and keys, and the old kubeconfig.
func TestServerLifecycle(t *testing.T) {
	s := startServer(t)
	checkLogs(t, s, "k1s is ready", []string{apiserverLine}, "datastore", "kube-apiserver", "controllers")

	out, err := s.Kubectl("get", "--raw", "/readyz")
	if err != nil || strings.TrimSpace(out) != "ok" {
		t.Fatalf("kubectl get --raw /readyz = %q, %v", out, err)
	}
	out, err = s.Kubectl("get", "ns", "-o", "jsonpath={.items[*].metadata.name}")
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"default", "kube-system", "kube-public", "kube-node-lease"} {
		if !strings.Contains(" "+out+" ", " "+ns+" ") {
			t.Errorf("namespace %s missing from %q", ns, out)
		}
	}

	// The kubectl symlink is the same multicall binary.
	link := filepath.Join(s.Dir, "kubectl")
	if err := os.Symlink(harness.Bin(), link); err != nil {
		t.Fatal(err)
	}
	if b, err := execOut(link, "--kubeconfig", s.Kubeconfig, "get", "ns", "default", "-o", "name"); err != nil || strings.TrimSpace(b) != "namespace/default" {
		t.Fatalf("kubectl via symlink: %q %v", b, err)
	}

	if _, err := s.Kubectl("create", "deployment", "web", "--image=busybox", "--replicas=3"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "ReplicaSet with 3 Pending pods", func() error {
		rs, err := s.Kubectl("get", "rs", "-l", "app=web", "-o", "jsonpath={.items[*].status.replicas}")
		if err != nil {
			return err
		}
		if strings.TrimSpace(rs) != "3" {
			return fmt.Errorf("replicaset replicas %q", rs)
		}
		phases, err := s.Kubectl("get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].status.phase}")
		if err != nil {
			return err
		}
		if f := strings.Fields(phases); len(f) != 3 || strings.Count(phases, "Pending") != 3 {
			return fmt.Errorf("pod phases %q", phases)
		}
		return nil
	})

	// Identity material must survive a restart untouched.
	tlsDir := filepath.Join(s.DataDir, "server", "tls")
	before := snapshot(t, tlsDir)
	token, err := os.ReadFile(filepath.Join(s.DataDir, "server", "token"))
	if err != nil {
		t.Fatal(err)
	}
	oldKubeconfig := filepath.Join(s.Dir, "old-kubeconfig.yaml")
	copyFile(t, s.Kubeconfig, oldKubeconfig)

	if err := s.Stop(90 * time.Second); err != nil {
		t.Fatalf("clean stop: %v", err)
	}
	mustContain(t, s.Log(), "datastore closed", "shutdown log")

	// A restore that loosened modes: keys, the token and the data dir
	// readable by others. The restart makes them private again, and says so.
	loosened := []string{filepath.Join(tlsDir, "server-ca.key"), filepath.Join(s.DataDir, "server", "token"),
		filepath.Join(s.DataDir, "server", "cred", "admin.kubeconfig")}
	for _, p := range loosened {
		if err := os.Chmod(p, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(s.DataDir, 0o755); err != nil {
		t.Fatal(err)
	}

	startExisting(t, s)
	if err := s.WaitLog("k1s is ready", 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, p := range loosened {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s after restart: %v %v, want mode 0600", p, st.Mode().Perm(), err)
		}
		mustContain(t, s.Log(), p+" was readable by others (mode 0644): changed to 0600", "restart log")
	}
	if st, err := os.Stat(s.DataDir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("data dir after restart: %v %v, want 0700", st.Mode().Perm(), err)
	}
	if d := diffSnapshots(before, snapshot(t, tlsDir)); len(d) > 0 {
		t.Errorf("restart changed TLS material: %v", d)
	}
	if token2, _ := os.ReadFile(filepath.Join(s.DataDir, "server", "token")); string(token2) != string(token) {
		t.Errorf("join token changed on restart: %q -> %q", token, token2)
	}
	out, err = harness.Kubectl(oldKubeconfig, "get", "deployment", "web", "-o", "jsonpath={.spec.replicas}")
	if err != nil || out != "3" {
		t.Fatalf("deployment via old kubeconfig after restart: %q %v", out, err)
	}
}

// TestSecurity: anonymous requests are refused, a ServiceAccount without
// RoleBindings is forbidden, the admin is allowed.
func TestSecurity(t *testing.T) {
	s := startServer(t)
	code, _, err := s.Get("/api/v1/namespaces/default/secrets", false)
	if err != nil {
		t.Fatal(err)
	}
	if code != 401 && code != 403 {
		t.Errorf("anonymous GET secrets: HTTP %d, want 401 or 403", code)
	}
	if _, err := s.Kubectl("create", "serviceaccount", "nobody"); err != nil {
		t.Fatal(err)
	}
	tok, err := s.Kubectl("create", "token", "nobody")
	if err != nil {
		t.Fatal(err)
	}
	code, body, err := s.Request("/api/v1/namespaces/default/secrets", false, strings.TrimSpace(tok))
	if err != nil {
		t.Fatal(err)
	}
	if code != 403 {
		t.Errorf("ServiceAccount GET secrets: HTTP %d %s, want 403", code, body)
	}
	mustContain(t, body, "system:serviceaccount:default:nobody", "403 body names the ServiceAccount")
	code, _, err = s.Get("/api/v1/namespaces/default/secrets", true)
	if err != nil || code != 200 {
		t.Errorf("admin GET secrets: HTTP %d %v, want 200", code, err)
	}
}

// TestVersion: the CLI and the running apiserver report the same Kubernetes version.
func TestVersion(t *testing.T) {
	code, out, err := harness.Run(10*time.Second, "--version")
	if err != nil || code != 0 {
		t.Fatalf("k1s --version: %d %v %s", code, err, out)
	}
	mustContain(t, out, "k1s version v", "--version")
	mustContain(t, out, "kubernetes v1.37.2", "--version")

	s := startServer(t)
	_, body, err := s.Get("/version", true)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, body, `"gitVersion": "v1.37.2"`, "/version")
}
