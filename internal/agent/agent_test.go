package agent

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/k1s-io/k1s/internal/config"
	"github.com/k1s-io/k1s/internal/executor/executortest"
	"github.com/k1s-io/k1s/internal/join"
	"github.com/k1s-io/k1s/internal/pipeline"
	"github.com/k1s-io/k1s/internal/pki"
)

func quietLog() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// joinServer serves the real join endpoints of a fresh server PKI over TLS,
// handing out the given cluster settings; it returns the URL and the token.
func joinServer(t *testing.T, cluster config.Cluster) (string, string) {
	t.Helper()
	_, _, url, token := newJoinServer(t, cluster)
	return url, token
}

// newJoinServer is joinServer that also returns the server and its
// apiserver stand-in.
func newJoinServer(t *testing.T, cluster config.Cluster) (*join.Server, *fake.Clientset, string, string) {
	t.Helper()
	dir := t.TempDir()
	scfg := &config.Server{DataDir: dir, AdvertiseAddress: "192.0.2.10", BindAddress: "127.0.0.1", HTTPSPort: 6443,
		Cluster: cluster, WriteKubeconfig: filepath.Join(dir, "k1s.yaml"), WriteKubeconfigMode: "0600"}
	res, err := pki.Ensure(scfg, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := pki.ParseToken(res.Token)
	if err != nil {
		t.Fatal(err)
	}
	kube := fake.NewSimpleClientset()
	js := &join.Server{PKI: res, Secret: tok.Secret, Cluster: cluster, Log: quietLog(),
		Kube: func() (kubernetes.Interface, error) { return kube, nil }}
	js.Open()
	srv := httptest.NewUnstartedServer(js.Front(http.NotFoundHandler()))
	pair, err := tls.LoadX509KeyPair(res.Files.ServingCert(), res.Files.ServingKey())
	if err != nil {
		t.Fatal(err)
	}
	// As the apiserver: client certificates are requested, not verified.
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return js, kube, "https://" + srv.Listener.Addr().String(), res.Token
}

func testCluster() config.Cluster {
	return config.Cluster{ClusterCIDR: "10.52.0.0/16", ServiceCIDR: "10.53.0.0/16", ClusterDNS: "10.53.0.10",
		ClusterDomain: "edge.local", FlannelBackend: "host-gw"}
}

// testAgent is an agent whose node step is a stand-in that records the
// node config it was given and starts one supervised component.
func testAgent(t *testing.T, url, token string) (*agent, []pipeline.Step, *executortest.Fake, *config.Node) {
	t.Helper()
	return testAgentIn(t, t.TempDir(), url, token)
}

// testAgentIn is testAgent with the given data dir.
func testAgentIn(t *testing.T, dataDir, url, token string) (*agent, []pipeline.Step, *executortest.Fake, *config.Node) {
	t.Helper()
	cfg := &config.Agent{DataDir: dataDir, RunDir: t.TempDir(), ServerURL: url, Token: token,
		NodeOptions: config.NodeOptions{NodeName: "edge-2", NodeIP: "192.0.2.20"}}
	if err := cfg.Complete(); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	tok, err := pki.ParseToken(token)
	if err != nil {
		t.Fatal(err)
	}
	f := &executortest.Fake{}
	a := newAgent(cfg, quietLog(), f, &join.Client{URL: url, Token: tok, Warn: func(string) {}})
	a.sup.Settle = 20 * time.Millisecond
	got := &config.Node{}
	var steps []pipeline.Step
	for _, s := range a.steps() {
		name, run := s.Name, s.Run
		if name == "node" {
			run = func(ctx context.Context) error {
				*got = a.node()
				if err := a.credentials(ctx, *got, filepath.Join(got.PKIDir())); err != nil {
					return err
				}
				a.sup.Go("kubelet", time.Second, func(ctx context.Context) error { return f.Kubelet(ctx, nil) })
				return nil
			}
		}
		steps = append(steps, pipeline.Step{Name: name, Run: func(ctx context.Context) error {
			f.Record("step " + name)
			return run(ctx)
		}})
	}
	return a, steps, f, got
}

// The agent joins in a step of its own; the node is then built from the
// agent's options and the cluster settings the server sent, and its
// certificates are written.
func TestAgentJoinsThenRunsTheNode(t *testing.T) {
	url, token := joinServer(t, testCluster())
	a, steps, f, got := testAgent(t, url, token)
	runUntilKubelet(t, a, steps, f)
	if ev := f.Events(); !slices.Equal(ev, []string{"step join", "step node", "start kubelet", "stop kubelet"}) {
		t.Errorf("events %v", ev)
	}
	if got.Cluster != testCluster() {
		t.Errorf("node cluster settings %+v, want the server's %+v", got.Cluster, testCluster())
	}
	if got.NodeName != "edge-2" || got.NodeIP != "192.0.2.20" || got.APIServerURL != url {
		t.Errorf("node %+v", got)
	}
	if _, err := os.Stat(filepath.Join(got.PKIDir(), "kubelet.kubeconfig")); err != nil {
		t.Errorf("credentials not written: %v", err)
	}
}

// A refused join ends start-up with the join step named; no node starts.
func TestAgentRefusedJoinNamesTheStep(t *testing.T) {
	url, token := joinServer(t, testCluster())
	wrong := token[:strings.LastIndex(token, ":")+1] + "not-the-secret"
	a, steps, f, _ := testAgent(t, url, wrong)
	err := a.serve(context.Background(), steps)
	if err == nil || !strings.HasPrefix(err.Error(), "join: ") {
		t.Fatalf("serve() = %v, want a join error", err)
	}
	if ev := f.Events(); !slices.Equal(ev, []string{"step join"}) {
		t.Errorf("events %v, want only the join step", ev)
	}
}

// Cluster settings the agent cannot use are refused at the join, before
// the node starts.
func TestAgentRefusesInvalidClusterSettings(t *testing.T) {
	bad := testCluster()
	bad.ClusterDNS = "10.99.0.10" // outside the service CIDR
	url, token := joinServer(t, bad)
	a, steps, f, _ := testAgent(t, url, token)
	err := a.serve(context.Background(), steps)
	if err == nil || !strings.Contains(err.Error(), "--cluster-dns 10.99.0.10 is outside") {
		t.Fatalf("serve() = %v, want the server's --cluster-dns named", err)
	}
	if ev := f.Events(); slices.Contains(ev, "step node") {
		t.Errorf("node step ran: %v", ev)
	}
}

// runUntilKubelet serves a until its node's stand-in kubelet started, then
// stops it.
func runUntilKubelet(t *testing.T, a *agent, steps []pipeline.Step, f *executortest.Fake) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.serve(ctx, steps) }()
	deadline := time.Now().Add(20 * time.Second)
	for !slices.Contains(f.Events(), "start kubelet") {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("node did not start; events %v", f.Events())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve() = %v", err)
	}
}

// joinLogged runs a's join step alone and returns its log and error.
func joinLogged(a *agent) (string, error) {
	var buf strings.Builder
	l := logrus.New()
	l.SetOutput(&buf)
	a.log = l
	err := a.join(context.Background())
	return buf.String(), err
}

// A restarted agent re-authenticates with its own certificate when its
// token no longer works; once the server has forgotten the node it falls
// back to the token, and says what to do when that fails too.
func TestAgentRestartsWithItsOwnCertificate(t *testing.T) {
	js, kube, url, token := newJoinServer(t, testCluster())
	dataDir := t.TempDir()
	a, steps, f, _ := testAgentIn(t, dataDir, url, token)
	runUntilKubelet(t, a, steps, f)

	js.Secret = "rotated-secret-0123456789" // `k1s token rotate`
	a, _, _, _ = testAgentIn(t, dataDir, url, token)
	log, err := joinLogged(a)
	if err != nil || !strings.Contains(log, "as node edge-2 (192.0.2.20) with its node certificate") {
		t.Fatalf("restart after the rotation: %v\n%s", err, log)
	}

	// The Node was deleted, which deletes its password Secret.
	if err := kube.CoreV1().Secrets("kube-system").Delete(context.Background(), "edge-2.node-password.k1s", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	a, _, _, _ = testAgentIn(t, dataDir, url, token)
	log, err = joinLogged(a)
	if err == nil || !strings.Contains(err.Error(), "does not know this node any more") || !strings.Contains(err.Error(), "refused the token") ||
		!strings.Contains(err.Error(), "restart the agent with it") {
		t.Fatalf("deleted node, old token: %v, want both refusals and what to do", err)
	}
	if !strings.Contains(log, "trying the token") {
		t.Errorf("the fallback to the token is not logged:\n%s", log)
	}
	newToken := token[:strings.LastIndex(token, ":")+1] + js.Secret
	a, _, _, _ = testAgentIn(t, dataDir, url, newToken)
	if log, err := joinLogged(a); err != nil || !strings.Contains(log, "with the token") {
		t.Fatalf("deleted node, new token: %v\n%s", err, log)
	}
}
