package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/k1s-io/k1s/tests/harness"
)

// TestBadInput: each mistake gets a clear error and a non-zero exit, and the
// existing data dir of a previous run is left exactly as it was.
func TestBadInput(t *testing.T) {
	s := startServer(t)
	if _, err := s.Kubectl("create", "configmap", "keep-me", "--from-literal=a=b"); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(90 * time.Second); err != nil {
		t.Fatal(err)
	}
	// The log is the record of every run, failed ones included: it may grow.
	before := withoutLogs(snapshot(t, s.DataDir))

	badYAML := filepath.Join(s.Dir, "bad.yaml")
	if err := os.WriteFile(badYAML, []byte("data-dir: /tmp/x\ntls-san: [a, b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	unknownKey := filepath.Join(s.Dir, "unknown.yaml")
	if err := os.WriteFile(unknownKey, []byte("cluster-cidr: 10.42.0.0/16\nno-such-key: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	deadPort, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	// s.Args carry the data dir, ports and kubeconfig of the previous run.
	cases := []struct {
		name  string
		extra []string
		want  string
	}{
		{"unknown flag", []string{"--no-such-flag"}, "flag provided but not defined: -no-such-flag"},
		{"invalid cluster CIDR", []string{"--cluster-cidr", "10.42.0.0/33"}, `invalid --cluster-cidr "10.42.0.0/33"`},
		{"service CIDR with host bits", []string{"--service-cidr", "10.43.0.1/16"}, "did you mean 10.43.0.0/16"},
		{"config file syntax error", []string{"--config", badYAML}, "bad.yaml: not valid YAML"},
		{"config file unknown key", []string{"--config", unknownKey}, `line 2: unknown key "no-such-key"`},
		{"bad kubeconfig mode", []string{"--write-kubeconfig-mode", "999"}, "invalid --write-kubeconfig-mode"},
		{"scheduler port out of range", []string{"--kube-scheduler-port", "70000"}, "invalid --kube-scheduler-port 70000"},
		{"kubelet arg without value", []string{"--kubelet-arg", "max-pods"}, `invalid --kubelet-arg "max-pods"`},
		{"node name too long for its password Secret", []string{"--node-name", longNodeName}, "at most 235 are allowed"},
		{"short token", []string{"--token", "K10" + strings.Repeat("ab", 32) + "::server:short-secret"}, "the secret is 12 characters, at least 16 are needed"},
		{"unreachable datastore", []string{"--datastore-endpoint", fmt.Sprintf("postgres://k1s:secret@127.0.0.1:%d/k1s", deadPort), "--datastore-connect-timeout", "3s"}, "not reachable within 3s"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, err := harness.Run(60*time.Second, append(append([]string{}, s.Args...), c.extra...)...)
			if err != nil {
				t.Fatal(err)
			}
			if code == 0 {
				t.Fatalf("exit code 0, want failure; output:\n%s", out)
			}
			mustContain(t, out, c.want, "error message")
			if d := diffSnapshots(before, withoutLogs(snapshot(t, s.DataDir))); len(d) > 0 {
				t.Fatalf("data dir changed: %v\n%s", d, out)
			}
		})
	}
	t.Run("credentials are not printed", func(t *testing.T) {
		_, out, _ := harness.Run(60*time.Second, append(append([]string{}, s.Args...),
			"--datastore-endpoint", fmt.Sprintf("postgres://k1s:hunter2@127.0.0.1:%d/k1s", deadPort), "--datastore-connect-timeout", "2s")...)
		if strings.Contains(out, "hunter2") {
			t.Fatalf("datastore password appears in output:\n%s", out)
		}
	})

	t.Run("data dir is a file", func(t *testing.T) {
		file := filepath.Join(s.Dir, "a-file")
		if err := os.WriteFile(file, []byte("precious"), 0o600); err != nil {
			t.Fatal(err)
		}
		args := append(append([]string{}, s.Args...), "--data-dir", file)
		code, out, err := harness.Run(30*time.Second, args...)
		if err != nil || code == 0 {
			t.Fatalf("exit %d %v, want failure:\n%s", code, err, out)
		}
		mustContain(t, out, "is a file, not a directory", "error message")
		if b, _ := os.ReadFile(file); string(b) != "precious" {
			t.Fatalf("file content changed to %q", b)
		}
	})

	t.Run("second server on a data dir in use", func(t *testing.T) {
		startExisting(t, s)
		tls := snapshot(t, filepath.Join(s.DataDir, "server", "tls"))
		other, err := harness.NewServer(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		// Same data dir, its own ports and kubeconfig.
		args := append(append([]string{}, other.Args...), "--data-dir", s.DataDir)
		code, out, err := harness.Run(30*time.Second, args...)
		if err != nil || code == 0 {
			t.Fatalf("exit %d %v, want failure:\n%s", code, err, out)
		}
		mustContain(t, out, "is in use by another k1s server or agent (PID "+strconv.Itoa(s.PID())+")", "error message")
		if d := diffSnapshots(tls, snapshot(t, filepath.Join(s.DataDir, "server", "tls"))); len(d) > 0 {
			t.Fatalf("TLS material changed: %v", d)
		}
		if _, err := os.Stat(other.Kubeconfig); err == nil {
			t.Fatalf("refused server wrote a kubeconfig")
		}
		if code, body, err := s.Get("/readyz", true); err != nil || code != 200 {
			t.Fatalf("first server no longer ready: %d %s %v", code, body, err)
		}
		if out, err := s.Kubectl("get", "configmap", "keep-me", "-o", "jsonpath={.data.a}"); err != nil || out != "b" {
			t.Fatalf("configmap from the first run: %q %v", out, err)
		}
	})
}

// longNodeName is a valid DNS subdomain of 240 characters: the Node could
// exist, but <name>.node-password.k1s could not.
var longNodeName = strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 48)

// TestAgentBadInput: `k1s agent` refuses missing or malformed flags before
// it touches anything, and says what to give.
func TestAgentBadInput(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	base := []string{"agent", "--config", cfg, "--data-dir", data, "--run-dir", filepath.Join(dir, "run")}
	cases := []struct {
		name  string
		extra []string
		want  string
	}{
		{"no server", []string{"--token", "abc"}, "--server is required"},
		{"server not https", []string{"--server", "http://10.0.0.1:6443", "--token", "abc"}, `invalid --server "http://10.0.0.1:6443"`},
		{"no token", []string{"--server", "https://10.0.0.1:6443"}, "--token is required"},
		{"malformed K10 token", []string{"--server", "https://10.0.0.1:6443", "--token", "K10abc::server:x"}, "malformed CA hash"},
		{"bad node label", []string{"--server", "https://10.0.0.1:6443", "--token", "abc", "--node-label", "no-equals"}, `invalid --node-label "no-equals"`},
		{"bad node taint effect", []string{"--server", "https://10.0.0.1:6443", "--token", "abc", "--node-taint", "a=b:Sometimes"}, `effect "Sometimes"`},
		{"bad node IP", []string{"--server", "https://10.0.0.1:6443", "--token", "abc", "--node-ip", "10.0.0.300"}, `invalid --node-ip "10.0.0.300"`},
		{"node name too long", []string{"--server", "https://10.0.0.1:6443", "--token", "abc", "--node-name", longNodeName}, "invalid --node-name: 240 characters"},
		{"bare secret without --insecure-skip-ca-check", []string{"--server", "https://10.0.0.1:6443", "--token", "0123456789abcdef0123"}, "or accept the risk with --insecure-skip-ca-check"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, err := harness.Run(30*time.Second, append(append([]string{}, base...), c.extra...)...)
			if err != nil {
				t.Fatal(err)
			}
			if code == 0 {
				t.Fatalf("exit code 0, want failure; output:\n%s", out)
			}
			mustContain(t, out, c.want, "error message")
			if _, err := os.Stat(data); err == nil {
				t.Errorf("a refused agent created its data dir")
			}
		})
	}
}

// withoutLogs drops <data-dir>/logs from a snapshot of a data dir.
func withoutLogs(snap map[string]string) map[string]string {
	for k := range snap {
		if k == "logs" || strings.HasPrefix(k, "logs"+string(filepath.Separator)) {
			delete(snap, k)
		}
	}
	return snap
}
