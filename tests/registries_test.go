package tests

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/k1s-io/k1s/tests/harness"
)

// recorder is a stand-in registry: it answers 404 to everything and
// remembers what was asked, to show where containerd pulls from and with
// which credentials.
type recorder struct {
	mu   sync.Mutex
	seen []string
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.seen = append(r.seen, req.Method+" "+req.URL.Path+" auth="+req.Header.Get("Authorization"))
	r.mu.Unlock()
	http.NotFound(w, req)
}

func (r *recorder) requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

// TestPrivateRegistries: a mirror with credentials in registries.yaml is
// where containerd pulls docker.io images from, with those credentials,
// and `k1s crictl` talks to the node's containerd. A broken registries.yaml
// stops the node with an error naming the file and line.
func TestPrivateRegistries(t *testing.T) {
	// First, alone on the host (its cleanup runs k1s-killall.sh).
	t.Run("broken registries.yaml", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "registries.yaml")
		if err := os.WriteFile(bad, []byte("mirrors:\n  docker.io:\n    endpoints: [\"https://x\"]\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		b := newNodeServer(t, "--private-registry", bad)
		if err := b.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Stop(30 * time.Second) })
		eventually(t, 2*time.Minute, "k1s exits on a broken registries.yaml", func() error {
			if done, err := b.Exited(); !done || err == nil {
				return fmt.Errorf("done=%v err=%v", done, err)
			}
			return nil
		})
		mustContain(t, b.Log(), `line 3: unknown key "endpoints"`, "error names the line and key")
		mustContain(t, b.Log(), bad, "error names the file")
	})

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	srv := &http.Server{Handler: rec}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })

	dir := t.TempDir()
	regFile := filepath.Join(dir, "registries.yaml")
	reg := fmt.Sprintf(`mirrors:
  docker.io:
    endpoint: ["http://%s"]
configs:
  "%s":
    auth: {username: edge, password: s3cret}
`, l.Addr(), l.Addr())
	if err := os.WriteFile(regFile, []byte(reg), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startNode(t, "--private-registry", regFile)

	crictl := func(args ...string) (string, error) {
		return execOutEnv([]string{"CONTAINER_RUNTIME_ENDPOINT=unix://" + s.ContainerdSocket()}, harness.Bin(), append([]string{"crictl"}, args...)...)
	}
	out, err := crictl("pull", "docker.io/k1s-test/absent:1")
	if err == nil {
		t.Fatalf("pulling from a registry that has nothing succeeded: %s", out)
	}
	wantAuth := "Basic " + base64.StdEncoding.EncodeToString([]byte("edge:s3cret"))
	got := rec.requests()
	found := false
	for _, r := range got {
		if strings.Contains(r, "/v2/k1s-test/absent/manifests/1") && strings.HasSuffix(r, "auth="+wantAuth) {
			found = true
		}
	}
	if !found {
		t.Fatalf("the mirror did not get the manifest request with the configured credentials; it saw %q", got)
	}
	// crictl reaches the node's containerd: the sandbox image is there.
	out, err = crictl("images")
	if err != nil || !strings.Contains(out, "k1s-io/pause") {
		t.Errorf("k1s crictl images: %q %v", out, err)
	}
}
