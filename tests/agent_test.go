package tests

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/k1s-io/k1s/tests/harness"
	"github.com/k1s-io/k1s/tests/images"
)

// startAgent starts `k1s agent` in the lab host h, joining s, with the
// test image in its air-gap folder. When the test ends, its Pods are
// deleted, it is stopped, k1s-killall.sh runs inside its namespace, and
// nothing of it may be left.
func startAgent(t *testing.T, s *harness.Server, lab *harness.Lab, h *harness.NetHost, extra ...string) *harness.Server {
	return startAgentWith(t, s, lab, h, func(dir string) error {
		return images.Busybox(filepath.Join(dir, "busybox.tar"), busybox, "sleep", "3600")
	}, extra...)
}

// startAgentWith is startAgent with the air-gap folder filled by stage.
func startAgentWith(t testing.TB, s *harness.Server, lab *harness.Lab, h *harness.NetHost, stage func(dir string) error, extra ...string) *harness.Server {
	t.Helper()
	token, err := os.ReadFile(filepath.Join(s.DataDir, "server", "token"))
	if err != nil {
		t.Fatal(err)
	}
	return startAgentToken(t, s, lab, h, strings.TrimSpace(string(token)), stage, extra...)
}

// startAgentToken is startAgentWith joining with the given token.
func startAgentToken(t testing.TB, s *harness.Server, lab *harness.Lab, h *harness.NetHost, token string, stage func(dir string) error, extra ...string) *harness.Server {
	t.Helper()
	host := lab.GatewayIP
	if s.Host != "" {
		host = s.Host // the server runs in a lab host too
	}
	url := "https://" + net.JoinHostPort(host, strconv.Itoa(s.Port))
	a, err := harness.NewAgent(t.TempDir(), url, token, h.NetPrefix(), append([]string{"--node-name", h.Name}, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	imgDir := filepath.Join(a.DataDir, "agent", "images")
	if err := os.MkdirAll(imgDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := stage(imgDir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		out, err := a.Killall()
		if err != nil {
			t.Errorf("k1s-killall.sh for the agent: %v\n%s", err, out)
		}
		if m := harness.MountsBelow(a.Dir); len(m) > 0 {
			t.Errorf("agent mounts left: %v", m)
		}
		if out, _ := h.Run(context.Background(), "iptables-save"); strings.Contains(out, ":KUBE-") || strings.Contains(out, ":CNI-") || strings.Contains(out, ":FLANNEL-") {
			t.Errorf("iptables chains left in the agent's namespace:\n%s", out)
		}
		for _, dev := range []string{"k1s0", "flannel.1"} {
			if out, err := h.Run(context.Background(), "ip", "link", "show", dev); err == nil {
				t.Errorf("%s left in the agent's namespace: %s", dev, out)
			}
		}
	})
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := a.Stop(60 * time.Second); err != nil {
			t.Errorf("stopping agent: %v", err)
		}
		if t.Failed() {
			t.Logf("log tail of the agent %s:\n%s", a.LogPath, a.Tail(40))
			t.Logf("log tail of the agent %s:\n%s", a.ComponentLogPath(), a.ComponentTail(40))
		}
	})
	t.Cleanup(func() {
		_, _ = s.Kubectl("delete", "pods", "--all", "--field-selector", "spec.nodeName="+h.Name, "--wait=true", "--timeout=60s")
	})
	if err := a.WaitLog("k1s agent is ready", 3*time.Minute); err != nil {
		t.Fatalf("%v\n%s", err, a.Tail(30))
	}
	return a
}

// viaServer points kubectl at s: an agent's kubeconfigs name its load
// balancer on 127.0.0.1 of the agent's namespace, which the host (where
// the tests run kubectl) does not reach.
func viaServer(s *harness.Server) []string { return []string{"--server", "https://" + s.Addr()} }

// runAgentOnce runs `k1s agent` in h until it exits, for attempts that
// must be refused; it returns the output. Its balancer takes a port of its
// own: h's agent holds the default one.
func runAgentOnce(t *testing.T, h *harness.NetHost, url, token string, extra ...string) string {
	t.Helper()
	dir := t.TempDir()
	a, err := harness.NewAgent(dir, url, token, nil, append([]string{"--apiserver-lb-port", "6445"}, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	argv := append(h.NetPrefix(), harness.Bin())
	cmd := exec.CommandContext(ctx, argv[0], append(argv[1:], a.Args...)...)
	cmd.Env = harness.Env()
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("k1s agent did not give up within 90s:\n%s", out)
	}
	if err == nil {
		t.Fatalf("k1s agent exited 0, want a refusal:\n%s", out)
	}
	if _, statErr := os.Stat(filepath.Join(a.RunDir, "containerd", "containerd.sock")); statErr == nil {
		t.Errorf("a refused agent started containerd")
	}
	a.RemoveCgroupRoot()
	return string(out)
}

// TestAgentJoins: an agent in its own network namespace joins the server
// with the token, registers with its labels, taint and IP, turns Ready and
// runs a Pod the apiserver reaches (logs, exec). A wrong token, a token of
// another cluster and a node name owned by another host are refused.
func TestAgentJoins(t *testing.T) {
	lab := harness.NewLab(t)
	h := lab.AddHost(t, "agent1")
	s := startNode(t, "--tls-san", lab.GatewayIP)
	a := startAgent(t, s, lab, h, "--node-label=k1s-test/role=edge", "--node-taint=k1s-test/dedicated=edge:NoSchedule")
	checkLogs(t, a, "k1s agent is ready", []string{kubeletLine}, "join", "credentials", "kubelet", "kube-proxy")

	jp := `jsonpath={.status.conditions[?(@.type=="Ready")].status} {.status.addresses[?(@.type=="InternalIP")].address} {.metadata.labels.k1s-test/role} {.spec.taints[0].key}={.spec.taints[0].value}:{.spec.taints[0].effect}`
	want := "True " + h.IP + " edge k1s-test/dedicated=edge:NoSchedule"
	eventually(t, time.Minute, "agent node Ready", func() error {
		out, err := s.Kubectl("get", "node", h.Name, "-o", jp)
		if err != nil {
			return err
		}
		if out != want {
			return fmt.Errorf("got %q, want %q", out, want)
		}
		return nil
	})

	apply(t, s, `apiVersion: v1
kind: Pod
metadata: {name: on-agent}
spec:
  nodeSelector: {kubernetes.io/hostname: `+h.Name+`}
  tolerations: [{key: k1s-test/dedicated, operator: Exists, effect: NoSchedule}]
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: `+busybox+`
    imagePullPolicy: Never
    command: ["sh", "-c", "echo running on the agent; exec sleep 3600"]
`)
	waitPhase(t, s, "on-agent", "Running", 2*time.Minute)
	eventually(t, 30*time.Second, "logs from the agent's Pod", func() error {
		out, err := s.Kubectl("logs", "on-agent")
		if err != nil || !strings.Contains(out, "running on the agent") {
			return fmt.Errorf("logs %q %v", out, err)
		}
		return nil
	})
	out, err := s.Kubectl("exec", "on-agent", "--", "hostname")
	if err != nil || strings.TrimSpace(out) != "on-agent" {
		t.Fatalf("exec in the agent's Pod: %q %v", out, err)
	}
	podIP, _ := s.Kubectl("get", "pod", "on-agent", "-o", "jsonpath={.status.podIP}")
	if !strings.HasPrefix(podIP, "10.42.") || strings.HasPrefix(podIP, "10.42.0.") {
		t.Errorf("the agent's Pod IP %q is not from the agent's own Pod CIDR", podIP)
	}

	t.Run("no credential of the agent changes another Node", func(t *testing.T) {
		credentialsConfinedToOwnNode(t, s, a, h.Name)
	})
	t.Run("what each identity may do", func(t *testing.T) {
		identitiesMatchDocs(t, s, a, h.Name)
	})

	token, _ := os.ReadFile(filepath.Join(s.DataDir, "server", "token"))
	tok := strings.TrimSpace(string(token))
	url := "https://" + net.JoinHostPort(lab.GatewayIP, strconv.Itoa(s.Port))
	secret := tok[strings.LastIndex(tok, ":")+1:]

	t.Run("wrong token", func(t *testing.T) {
		out := runAgentOnce(t, h, url, tok[:strings.LastIndex(tok, ":")+1]+"not-the-secret", "--node-name", "intruder")
		mustContain(t, out, "refused the token", "agent output")
	})
	t.Run("CA of another cluster", func(t *testing.T) {
		out := runAgentOnce(t, h, url, "K10"+strings.Repeat("ab", 32)+"::server:"+secret, "--node-name", "intruder")
		mustContain(t, out, "does not match the token", "agent output")
	})
	t.Run("name owned by another host", func(t *testing.T) {
		out := runAgentOnce(t, h, url, tok, "--node-name", h.Name)
		mustContain(t, out, "already registered by another host", "agent output")
	})
	out, _ = s.Kubectl("get", "nodes", "-o", "name")
	if strings.Contains(out, "intruder") {
		t.Errorf("a refused agent registered a node: %s", out)
	}

	// Deleting the Node frees its name: its password Secret goes.
	pwSecret := h.Name + ".node-password.k1s"
	if _, err := s.Kubectl("-n", "kube-system", "get", "secret", pwSecret); err != nil {
		t.Fatalf("the agent's node password Secret is missing: %v", err)
	}
	if out, err := s.Kubectl("delete", "node", h.Name); err != nil {
		t.Fatalf("delete node: %v %s", err, out)
	}
	eventually(t, 30*time.Second, "password Secret of the deleted node removed", func() error {
		if _, err := s.Kubectl("-n", "kube-system", "get", "secret", pwSecret); err == nil {
			return fmt.Errorf("%s still exists", pwSecret)
		}
		return nil
	})
}

// credentialsConfinedToOwnNode tries every kubeconfig and every key (with
// its certificate) under the agent's data dir against the server's Node:
// label, taint, annotate and status patch must all be refused. A host
// taken over must not be able to evict Pods elsewhere or redirect another
// node's Pod traffic (flannel's public-ip annotation).
func credentialsConfinedToOwnNode(t *testing.T, s, a *harness.Server, agentNode string) {
	names, err := s.Kubectl("get", "nodes", "-o", "jsonpath={.items[*].metadata.name}")
	if err != nil {
		t.Fatal(err)
	}
	var other string
	for _, n := range strings.Fields(names) {
		if n != agentNode {
			other = n
		}
	}
	if other == "" {
		t.Fatalf("no node other than %s in %q", agentNode, names)
	}
	ops := [][]string{
		{"label", "node", other, "k1s-test/owned=yes", "--overwrite"},
		{"taint", "node", other, "k1s-test/evict=yes:NoExecute"},
		{"annotate", "node", other, "flannel.alpha.coreos.com/public-ip=192.0.2.66", "--overwrite"},
		{"patch", "node", other, "--subresource=status", "--type=merge", "-p", `{"metadata":{"annotations":{"flannel.alpha.coreos.com/public-ip":"192.0.2.66"}}}`},
	}
	// Each credential: a kubeconfig, or an empty kubeconfig plus flags.
	type cred struct {
		name, kubeconfig string
		flags            []string
	}
	empty := filepath.Join(t.TempDir(), "empty.kubeconfig")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var creds []cred
	err = filepath.WalkDir(a.DataDir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		switch {
		case strings.HasSuffix(path, ".kubeconfig"):
			creds = append(creds, cred{name: path, kubeconfig: path, flags: viaServer(s)})
		case strings.HasSuffix(path, ".key"):
			crt := strings.TrimSuffix(path, ".key") + ".crt"
			if _, err := os.Stat(crt); err != nil {
				return fmt.Errorf("key %s has no certificate beside it", path)
			}
			creds = append(creds, cred{name: path, kubeconfig: empty, flags: []string{"--server", "https://" + s.Addr(),
				"--certificate-authority", filepath.Join(s.DataDir, "server", "tls", "server-ca.crt"),
				"--client-certificate", crt, "--client-key", path}})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(creds) < 6 { // kubelet, kube-proxy, flannel: a kubeconfig and a key each
		t.Fatalf("found only %d credentials under %s: %v", len(creds), a.DataDir, creds)
	}
	for _, c := range creds {
		for _, op := range ops {
			out, err := harness.Kubectl(c.kubeconfig, append(append([]string{}, c.flags...), op...)...)
			if err == nil {
				t.Errorf("%s may %s node %s:\n%s", c.name, op[0], other, out)
				continue
			}
			if !strings.Contains(strings.ToLower(out), "forbidden") && !strings.Contains(out, "Unauthorized") {
				t.Errorf("%s: %s node %s failed, but not as refused: %s", c.name, op[0], other, out)
			}
		}
	}
	// The same operations are valid: the admin may do them.
	if out, err := s.Kubectl(ops[0]...); err != nil {
		t.Fatalf("admin label: %v %s", err, out)
	}
	if out, err := s.Kubectl("label", "node", other, "k1s-test/owned-"); err != nil {
		t.Fatalf("admin unlabel: %v %s", err, out)
	}
	// flannel may still publish on its own Node.
	own := filepath.Join(a.DataDir, "agent", "pki", "flannel.kubeconfig")
	if out, err := harness.Kubectl(own, append(viaServer(s), "patch", "node", agentNode, "--subresource=status", "--type=merge",
		"-p", `{"metadata":{"annotations":{"k1s-test/flannel-may":"yes"}}}`)...); err != nil {
		t.Errorf("flannel cannot patch its own node's status: %v %s", err, out)
	}
	if out, _ := s.Kubectl("get", "node", other, "-o", "jsonpath={.metadata.annotations} {.spec.taints}"); strings.Contains(out, "192.0.2.66") || strings.Contains(out, "k1s-test/evict") {
		t.Errorf("node %s was changed: %s", other, out)
	}
}
