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
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return "https://" + srv.Listener.Addr().String(), res.Token
}

func testCluster() config.Cluster {
	return config.Cluster{ClusterCIDR: "10.52.0.0/16", ServiceCIDR: "10.53.0.0/16", ClusterDNS: "10.53.0.10",
		ClusterDomain: "edge.local", FlannelBackend: "host-gw"}
}

// testAgent is an agent whose node step is a stand-in that records the
// node config it was given and starts one supervised component.
func testAgent(t *testing.T, url, token string) (*agent, []pipeline.Step, *executortest.Fake, *config.Node) {
	t.Helper()
	cfg := &config.Agent{DataDir: t.TempDir(), RunDir: t.TempDir(), ServerURL: url, Token: token,
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
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.serve(ctx, steps) }()
	deadline := time.Now().Add(20 * time.Second)
	for !slices.Contains(f.Events(), "start kubelet") {
		if time.Now().After(deadline) {
			t.Fatalf("node did not start; events %v", f.Events())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve() = %v", err)
	}
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
