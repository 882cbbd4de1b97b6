package tests

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/crypto/bcrypt"

	"github.com/k1s-io/k1s/tests/harness"
	"github.com/k1s-io/k1s/tests/images"
)

// authRegistry runs Debian's docker-registry (distribution) on a free
// loopback port with htpasswd basic auth for user:password, and stops it
// when the test ends. It returns the registry's host:port and a function
// that reads its log.
func authRegistry(t *testing.T, user, password string) (string, func() string) {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		t.Fatalf("docker-registry not found (apt-get install docker-registry; scripts/install-deps.sh does): %v", err)
	}
	dir := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte(user+":"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ports, err := harness.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", fmt.Sprint(ports[0]))
	cfg := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`version: 0.1
log: {level: info}
storage:
  filesystem: {rootdirectory: %s}
http:
  addr: %s
auth:
  htpasswd: {realm: k1s-test, path: %s}
`, filepath.Join(dir, "data"), addr, htpasswd)), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); logf.Close() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			out, _ := os.ReadFile(logf.Name())
			t.Logf("registry log:\n%s", tailString(string(out), 30))
		}
	})
	eventually(t, 30*time.Second, "registry answers /v2/ with 401", func() error {
		select {
		case err := <-done:
			return fmt.Errorf("docker-registry exited: %v", err)
		default:
		}
		resp, err := http.Get("http://" + addr + "/v2/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			return fmt.Errorf("GET /v2/ without credentials: %s, want 401", resp.Status)
		}
		return nil
	})
	return addr, func() string {
		out, err := os.ReadFile(logf.Name())
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
}

// TestImagePullSecrets: a Pod pulls from a registry that requires basic
// auth with the credentials of its imagePullSecrets, of either Secret type
// (kubernetes.io/dockerconfigjson and the legacy kubernetes.io/dockercfg);
// without them the pull fails and the Pod's events name the 401.
func TestImagePullSecrets(t *testing.T) {
	const user, password = "edge", "pull-s3cret"
	reg, regLog := authRegistry(t, user, password)

	// Push a test image with the credentials, as a user's CI would.
	ref := reg + "/k1s-test/private:1"
	tarPath := filepath.Join(t.TempDir(), "private.tar")
	if err := images.Busybox(tarPath, ref, "sleep", "3600"); err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(tarPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img, remote.WithAuth(&authn.Basic{Username: user, Password: password})); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	if _, err := remote.Image(tag); err == nil {
		t.Fatal("the registry serves the image without credentials: the test would prove nothing")
	}

	// The registry speaks plain HTTP: tell the node so, and nothing else
	// (no credentials in registries.yaml: they come from the Secrets).
	regFile := filepath.Join(t.TempDir(), "registries.yaml")
	if err := os.WriteFile(regFile, []byte(fmt.Sprintf("mirrors:\n  %q:\n    endpoint: [\"http://%s\"]\n", reg, reg)), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startNode(t, "--private-registry", regFile)

	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	cfgJSON, _ := json.Marshal(map[string]any{"auths": map[string]any{reg: map[string]string{"auth": auth}}})
	dockercfg, _ := json.Marshal(map[string]any{reg: map[string]string{"auth": auth}})
	apply(t, s, fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata: {name: regcred-json}
type: kubernetes.io/dockerconfigjson
data: {.dockerconfigjson: %s}
---
apiVersion: v1
kind: Secret
metadata: {name: regcred-legacy}
type: kubernetes.io/dockercfg
data: {.dockercfg: %s}
`, base64.StdEncoding.EncodeToString(cfgJSON), base64.StdEncoding.EncodeToString(dockercfg)))

	// imagePullPolicy Always: each Pod pulls, not one after the other
	// taking the image the first one left on the node.
	pod := func(podName, secret string) string {
		secrets := ""
		if secret != "" {
			secrets = "\n  imagePullSecrets: [{name: " + secret + "}]"
		}
		return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:%s
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c, image: %s, imagePullPolicy: Always}
`, podName, secrets, ref)
	}
	apply(t, s, pod("no-secret", ""))
	eventually(t, 2*time.Minute, "pod no-secret fails to pull with a 401", func() error {
		reason, err := s.Kubectl("get", "pod", "no-secret", "-o", "jsonpath={.status.containerStatuses[0].state.waiting.reason}")
		if err != nil {
			return fmt.Errorf("%v: %s", err, reason)
		}
		if reason != "ErrImagePull" && reason != "ImagePullBackOff" {
			return fmt.Errorf("waiting reason %q, want ErrImagePull or ImagePullBackOff", reason)
		}
		events, err := s.Kubectl("get", "events", "--field-selector", "involvedObject.name=no-secret", "-o", "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}")
		if err != nil {
			return err
		}
		// containerd words the registry's 401 as "authorization failed".
		if !strings.Contains(events, "ErrImagePull") || !strings.Contains(events, "authorization failed: no basic auth credentials") {
			return fmt.Errorf("events do not show ErrImagePull and the refused authorization:\n%s", events)
		}
		return nil
	})
	if log := regLog(); !strings.Contains(log, `"HEAD /v2/k1s-test/private/manifests/1 HTTP/1.1" 401`) {
		t.Errorf("the registry did not answer containerd's request with 401:\n%s", tailString(log, 10))
	}

	for _, c := range []struct{ pod, secret string }{{"with-json", "regcred-json"}, {"with-legacy", "regcred-legacy"}} {
		apply(t, s, pod(c.pod, c.secret))
		waitPhase(t, s, c.pod, "Running", 2*time.Minute)
	}
	if phase, err := s.Kubectl("get", "pod", "no-secret", "-o", "jsonpath={.status.phase}"); err != nil || phase != "Pending" {
		t.Errorf("pod no-secret is %q (%v) once the image is on the node, want Pending: Always must pull with credentials", phase, err)
	}
}
