package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/k1s-io/k1s/tests/harness"
	"github.com/k1s-io/k1s/tests/images"
)

// Two tags of the test image, for rollouts.
const (
	busybox  = "docker.io/k1s-test/busybox:1"
	busybox2 = "docker.io/k1s-test/busybox:2"
)

// startNode starts a server with its own node, the test busybox image in
// its air-gap folder, and waits until the node is Ready.
func startNode(t *testing.T, extra ...string) *harness.Server {
	t.Helper()
	return startNodeImages(t, false, extra...)
}

// startNodeWithAddons is startNode with k1s's air-gap bundle linked into
// the images folder too, so the built-in add-ons' Pods run.
func startNodeWithAddons(t *testing.T, extra ...string) *harness.Server {
	t.Helper()
	return startNodeImages(t, true, extra...)
}

func startNodeImages(t *testing.T, bundle bool, extra ...string) *harness.Server {
	t.Helper()
	s := newNodeServer(t, extra...)
	dir := filepath.Join(s.DataDir, "agent", "images")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if bundle {
		if err := linkBundle(dir); err != nil {
			t.Fatal(err)
		}
	}
	for _, ref := range []string{busybox, busybox2} {
		name := strings.NewReplacer("/", "_", ":", "_").Replace(ref) + ".tar"
		if err := images.Busybox(filepath.Join(dir, name), ref, "sleep", "3600"); err != nil {
			t.Fatal(err)
		}
	}
	startExisting(t, s)
	if err := s.WaitLog("k1s is ready", 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	// Delete Pods before the server stops, so the kubelet tears their
	// sandboxes down itself; k1s-killall.sh then has less to do.
	t.Cleanup(func() { _, _ = s.Kubectl("delete", "pods", "--all", "--wait=true", "--timeout=60s") })
	return s
}

func apply(t testing.TB, s *harness.Server, manifest string) {
	t.Helper()
	f := filepath.Join(s.Dir, fmt.Sprintf("manifest-%d.yaml", time.Now().UnixNano()))
	if err := os.WriteFile(f, []byte(manifest), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := s.Kubectl("apply", "-f", f); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
}

func waitPhase(t testing.TB, s *harness.Server, pod, phase string, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, "pod "+pod+" "+phase, func() error {
		out, err := s.Kubectl("get", "pod", pod, "-o", "jsonpath={.status.phase}")
		if err != nil {
			return err
		}
		if out != phase {
			return fmt.Errorf("phase %q", out)
		}
		return nil
	})
}

// TestNodeRunsPods: the server's own node turns Ready and runs real
// containers: logs, exec, and Pods that succeed or fail.
func TestNodeRunsPods(t *testing.T) {
	s := startNode(t)
	checkLogs(t, s, "k1s is ready", []string{apiserverLine, kubeletLine}, "datastore", "kube-apiserver", "controllers", "node")
	out, err := s.Kubectl("get", "nodes", "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}`)
	if err != nil || !strings.Contains(out, "=True") {
		t.Fatalf("node not Ready: %q %v", out, err)
	}

	apply(t, s, `apiVersion: v1
kind: Pod
metadata: {name: hello}
spec:
  containers:
  - name: c
    image: `+busybox+`
    imagePullPolicy: Never
    command: ["sh", "-c", "echo hello from a k1s pod; exec sleep 3600"]
---
apiVersion: v1
kind: Pod
metadata: {name: ok}
spec:
  restartPolicy: Never
  containers:
  - {name: c, image: `+busybox+`, imagePullPolicy: Never, command: ["sh", "-c", "exit 0"]}
---
apiVersion: v1
kind: Pod
metadata: {name: fails}
spec:
  restartPolicy: Never
  containers:
  - {name: c, image: `+busybox+`, imagePullPolicy: Never, command: ["sh", "-c", "exit 1"]}
`)
	waitPhase(t, s, "hello", "Running", 2*time.Minute)
	eventually(t, 30*time.Second, "kubectl logs", func() error {
		out, err := s.Kubectl("logs", "hello")
		if err != nil {
			return err
		}
		if !strings.Contains(out, "hello from a k1s pod") {
			return fmt.Errorf("logs %q", out)
		}
		return nil
	})
	out, err = s.Kubectl("exec", "hello", "--", "sh", "-c", "echo $((6*7)) from $(hostname)")
	if err != nil || strings.TrimSpace(out) != "42 from hello" {
		t.Fatalf("exec: %q %v", out, err)
	}
	ip, err := s.Kubectl("get", "pod", "hello", "-o", "jsonpath={.status.podIP}")
	if err != nil || !strings.HasPrefix(ip, "10.42.") {
		t.Fatalf("pod IP %q (want one from the cluster CIDR 10.42.0.0/16): %v", ip, err)
	}
	waitPhase(t, s, "ok", "Succeeded", 2*time.Minute)
	waitPhase(t, s, "fails", "Failed", 2*time.Minute)

	// A restart of k1s keeps the running container.
	before, err := s.Kubectl("get", "pod", "hello", "-o", "jsonpath={.status.containerStatuses[0].containerID}")
	if err != nil || before == "" {
		t.Fatalf("container ID: %q %v", before, err)
	}
	if err := s.Stop(90 * time.Second); err != nil {
		t.Fatal(err)
	}
	startExisting(t, s)
	if err := s.WaitLog("k1s is ready", 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "same container after restart", func() error {
		out, err := s.Kubectl("get", "pod", "hello", "-o", "jsonpath={.status.containerStatuses[0].containerID} {.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].ready}")
		if err != nil {
			return err
		}
		if out != before+" 0 true" {
			return fmt.Errorf("got %q, want %q", out, before+" 0 true")
		}
		return nil
	})
}
