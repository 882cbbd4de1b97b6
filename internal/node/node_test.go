package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/k1s-io/k1s/internal/config"
	"github.com/k1s-io/k1s/internal/executor/executortest"
	"github.com/k1s-io/k1s/internal/pipeline"
)

func TestStepOrder(t *testing.T) {
	n := New(config.Node{}, nil, &executortest.Fake{}, pipeline.NewSupervisor(nil), logrus.New())
	var names []string
	for _, s := range n.Steps() {
		names = append(names, s.Name)
	}
	want := []string{"host", "containerd", "images", "credentials", "flannel", "kubelet", "kube-proxy", "pod-cidr", "kube-proxy-sync", "pod-network", "network-policy", "cni"}
	if !slices.Equal(names, want) {
		t.Fatalf("steps %v, want %v", names, want)
	}
}

// fakeAPI answers GET of one Node, registered with a Pod CIDR and Ready
// (unless registered is false: then 404), and kube-proxy's metrics with
// one rules sync done.
func fakeAPI(t *testing.T, name string, registered bool) *httptest.Server {
	node := corev1.Node{
		TypeMeta:   metav1.TypeMeta{Kind: "Node", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.NodeSpec{PodCIDR: "10.42.7.0/24"},
		Status:     corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v1/nodes/" + name:
			if !registered {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(node)
		case "/metrics":
			fmt.Fprintln(w, `kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family="IPv4"} 1.7e+09`)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// testNode runs the real steps with a fake executor and a fake API; the
// steps that need the host (checks, helper binaries, the containerd child,
// image import) are replaced by stand-ins that start supervised
// components of the same names.
func testNode(t *testing.T, fake *executortest.Fake, registered bool) (*Node, []pipeline.Step, *pipeline.Supervisor) {
	t.Helper()
	api := fakeAPI(t, "edge-1", registered)
	cfg := config.Node{
		DataDir: t.TempDir(), RunDir: t.TempDir(),
		NodeOptions: config.NodeOptions{NodeName: "edge-1", NodeIP: "192.0.2.20"},
		Cluster: config.Cluster{ClusterCIDR: config.DefaultClusterCIDR, ServiceCIDR: config.DefaultServiceCIDR,
			ClusterDNS: config.DefaultClusterDNS, ClusterDomain: config.DefaultClusterDomain, FlannelBackend: "none"},
		APIServerURL: api.URL,
	}
	creds := func(_ context.Context, nc config.Node, dir string) error {
		fake.Record("credentials " + nc.NodeName)
		kc := fmt.Sprintf("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: %q}\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\nusers:\n- name: u\n  user: {}\n", nc.APIServerURL)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, "kubelet.kubeconfig"), []byte(kc), 0o600)
	}
	sup := pipeline.NewSupervisor(nil)
	sup.Settle = 50 * time.Millisecond
	log := logrus.New()
	log.SetOutput(io.Discard)
	n := New(cfg, creds, fake, sup, log)
	n.proxyMetrics = api.URL + "/metrics"
	var steps []pipeline.Step
	for _, s := range n.Steps() {
		switch s.Name {
		case "host", "images", "network-policy":
			s.Run = func(context.Context) error { fake.Record("step " + s.Name); return nil }
		case "containerd":
			s.Run = func(context.Context) error {
				fake.Record("start containerd")
				sup.Go("containerd", stopContainerd, func(ctx context.Context) error {
					<-ctx.Done()
					fake.Record("stop containerd")
					return nil
				})
				return nil
			}
		}
		steps = append(steps, s)
	}
	return n, steps, sup
}

func filter(events []string, prefix string) []string {
	var out []string
	for _, e := range events {
		if v, ok := strings.CutPrefix(e, prefix); ok {
			out = append(out, v)
		}
	}
	return out
}

func TestNodeStartsAndStopsInOrder(t *testing.T) {
	fake := &executortest.Fake{}
	n, steps, sup := testNode(t, fake, true)
	if err := pipeline.Run(context.Background(), logrus.New(), steps); err != nil {
		t.Fatal(err)
	}
	if n.podNet != "10.42.7.0/24" {
		t.Errorf("Pod CIDR %q, want the Node's", n.podNet)
	}
	select {
	case <-n.podCIDRKnown: // flannel, started before the kubelet, goes on
	default:
		t.Error("the Pod CIDR was found but flannel is not told")
	}
	sup.Stop(logrus.New())
	ev := fake.Events()
	if got, want := filter(ev, "start "), []string{"containerd", "kubelet", "kube-proxy"}; !slices.Equal(got, want) {
		t.Errorf("started %v, want %v", got, want)
	}
	if got, want := filter(ev, "stop "), []string{"kube-proxy", "kubelet", "containerd"}; !slices.Equal(got, want) {
		t.Errorf("stopped %v, want %v", got, want)
	}
	if !slices.Contains(ev, "credentials edge-1") {
		t.Errorf("credentials not asked for edge-1: %v", ev)
	}
	// The kubelet got the complete config: its name, IP and cluster DNS.
	kc, err := os.ReadFile(filepath.Join(n.cfg.AgentDir(), "etc", "kubelet.yaml"))
	if err != nil || !strings.Contains(string(kc), config.DefaultClusterDNS) {
		t.Errorf("kubelet config %q (%v) lacks the cluster DNS", kc, err)
	}
}

// The kubelet failing while the node waits for it to register ends the
// node's start-up with the kubelet's name; containerd is stopped.
func TestNodeFailureNamesTheKubelet(t *testing.T) {
	fake := &executortest.Fake{Fail: map[string]error{"kubelet": errors.New("failed to run Kubelet: misconfiguration")}}
	_, steps, sup := testNode(t, fake, false)
	err := pipeline.Run(context.Background(), logrus.New(), steps)
	if err == nil || !strings.Contains(err.Error(), "kubelet: kubelet: failed to run Kubelet: misconfiguration") {
		t.Fatalf("Run() = %v, want the kubelet step and component named", err)
	}
	sup.Stop(logrus.New())
	if got := filter(fake.Events(), "start "); slices.Contains(got, "kube-proxy") {
		t.Errorf("kube-proxy started after the kubelet failed: %v", got)
	}
	if got, want := filter(fake.Events(), "stop "), []string{"kubelet", "containerd"}; !slices.Equal(got, want) {
		t.Errorf("stopped %v, want %v", got, want)
	}
}
