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

// runAgentOnce runs `k1s agent` in h until it exits, for attempts that
// must be refused; it returns the output.
func runAgentOnce(t *testing.T, h *harness.NetHost, url, token string, extra ...string) string {
	t.Helper()
	dir := t.TempDir()
	a, err := harness.NewAgent(dir, url, token, nil, extra...)
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
	startAgent(t, s, lab, h, "--node-label=k1s-test/role=edge", "--node-taint=k1s-test/dedicated=edge:NoSchedule")

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
