package server

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/k1s-io/k1s/internal/config"
	"github.com/k1s-io/k1s/internal/executor/executortest"
	"github.com/k1s-io/k1s/internal/pipeline"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// testConfig is a complete server config on a real SQLite file in a temp
// dir, with loopback ports of its own.
func testConfig(t *testing.T) *config.Server {
	t.Helper()
	dir := t.TempDir()
	cfg := &config.Server{
		DataDir: filepath.Join(dir, "data"), BindAddress: "127.0.0.1", HTTPSPort: freePort(t), AdvertiseAddress: "192.0.2.10",
		Cluster: config.Cluster{ClusterCIDR: config.DefaultClusterCIDR, ServiceCIDR: config.DefaultServiceCIDR,
			ClusterDNS: config.DefaultClusterDNS, ClusterDomain: config.DefaultClusterDomain, FlannelBackend: config.DefaultFlannelBackend},
		Datastore: config.Datastore{ConnectTimeout: config.DefaultDatastoreWait, CompactInterval: config.DefaultCompactInterval,
			CompactTimeout: config.DefaultCompactTimeout, CompactMinRetain: config.DefaultCompactRetain, CompactBatchSize: config.DefaultCompactBatch},
		Snapshots:       config.Snapshots{Schedule: config.DefaultSnapshotSchedule, Retention: config.DefaultSnapshotRetention},
		WriteKubeconfig: filepath.Join(dir, "k1s.yaml"), SchedulerPort: freePort(t), ControllerPort: freePort(t),
		NodeOptions: config.NodeOptions{NodeName: "s1", NodeIP: "192.0.2.10"},
	}
	if err := cfg.Complete(); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func quietLog() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// harness runs the server's real steps with a fake executor. The steps
// that need a real apiserver to answer (RBAC, add-ons, node names, the
// node) are replaced by stand-ins that start supervised components of the
// same names, so start and stop order can be checked end to end.
type harness struct {
	fake  *executortest.Fake
	r     *run
	steps []pipeline.Step
	ready chan struct{}
}

func newHarness(t *testing.T) *harness {
	h := &harness{fake: &executortest.Fake{}, ready: make(chan struct{})}
	h.r = newRun(testConfig(t), quietLog(), h.fake)
	h.r.claimName = func(context.Context) error { h.fake.Record("claim node name"); return nil }
	standIns := map[string][]string{
		"rbac":              nil,
		"node-name-release": {"node-name-release"},
		"addons":            {"deploy", "nodehosts", "servicelb"},
		"node-prepare":      {"containerd"},
		"node-join":         {"flannel", "kubelet", "kube-proxy"},
		"node":              nil,
		"cert-renewal":      {"cert-renewal"},
	}
	for _, s := range h.r.steps() {
		name, run := s.Name, s.Run
		if comps, ok := standIns[name]; ok {
			run = func(context.Context) error {
				for _, c := range comps {
					h.fake.Record("start " + c) // here, not in the goroutine, to keep Go's order
					h.r.sup.Go(c, time.Second, func(ctx context.Context) error {
						<-ctx.Done()
						h.fake.Record("stop " + c)
						return nil
					})
				}
				return nil
			}
		}
		h.steps = append(h.steps, pipeline.Step{Name: name, Run: func(ctx context.Context) error {
			h.fake.Record("step " + name)
			err := run(ctx)
			if name == "node" {
				close(h.ready)
			}
			return err
		}})
	}
	return h
}

// events returns the recorded events that start with prefix, without it.
func (h *harness) events(prefix string) []string {
	var out []string
	for _, e := range h.fake.Events() {
		if v, ok := strings.CutPrefix(e, prefix); ok {
			out = append(out, v)
		}
	}
	return out
}

// waitEvents polls until the stand-ins have recorded n start events.
func waitStarted(t *testing.T, h *harness, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(h.events("start ")) < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %v started", h.events("start "))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestServerStepOrderAndShutdownOrder(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.r.serve(ctx, h.steps) }()
	select {
	case <-h.ready:
	case err := <-done:
		t.Fatalf("serve ended during start-up: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatalf("start-up did not finish; events %v", h.fake.Events())
	}
	waitStarted(t, h, 12)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve() after cancel = %v, want nil", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("shutdown did not finish")
	}

	wantSteps := []string{"datastore", "pki", "node-prepare", "kube-apiserver", "rbac", "node-name-release", "node-join", "kube-apiserver-ready", "controllers", "addons", "node", "cert-renewal"}
	if got := h.events("step "); !slices.Equal(got, wantSteps) {
		t.Errorf("steps %v, want %v", got, wantSteps)
	}
	// The stand-in of node-join starts the node's components at once; the
	// real one runs them beside the steps from kube-apiserver-ready to
	// addons.
	wantStart := []string{"containerd", "kube-apiserver", "node-name-release", "flannel", "kubelet", "kube-proxy",
		"kube-scheduler", "kube-controller-manager", "deploy", "nodehosts", "servicelb", "cert-renewal"}
	if got := h.events("start "); !slices.Equal(got, wantStart) {
		t.Errorf("started %v, want %v", got, wantStart)
	}
	wantStop := slices.Clone(wantStart)
	slices.Reverse(wantStop)
	if got := h.events("stop "); !slices.Equal(got, wantStop) {
		t.Errorf("stopped %v, want the reverse of the start order %v", got, wantStop)
	}
	// The datastore is closed last: its socket is gone once serve returned.
	if _, err := net.Dial("unix", h.r.cfg.KineSocket()); err == nil {
		t.Error("kine still answers after shutdown")
	}
}

// A component that fails during start-up ends start-up with an error that
// names it, and what was started is stopped in reverse.
func TestServerStartupFailureNamesTheComponent(t *testing.T) {
	h := newHarness(t)
	h.fake.Fail = map[string]error{"kube-controller-manager": errors.New("unknown flag --bogus")}
	done := make(chan error, 1)
	go func() { done <- h.r.serve(context.Background(), h.steps) }()
	var err error
	select {
	case err = <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("serve did not return; events %v", h.fake.Events())
	}
	if err == nil || !strings.Contains(err.Error(), "controllers: kube-controller-manager: unknown flag --bogus") {
		t.Fatalf("serve() = %v, want the controller-manager named", err)
	}
	if got := h.events("step "); slices.Contains(got, "addons") || slices.Contains(got, "node") {
		t.Errorf("steps after the failure ran: %v", got)
	}
	// The node joined before the controllers started: it is stopped too.
	if got, want := h.events("stop "), []string{"kube-controller-manager", "kube-scheduler", "kube-proxy", "kubelet", "flannel",
		"node-name-release", "kube-apiserver", "containerd"}; !slices.Equal(got, want) {
		t.Errorf("stopped %v, want %v", got, want)
	}
}

// A component failing after start-up ends the server with its name; the
// earliest-started of two failing together is the one named.
func TestServerFailureAfterReadyNamesTheCause(t *testing.T) {
	h := newHarness(t)
	release := make(chan struct{})
	h.fake.Hold = map[string]<-chan struct{}{"kube-apiserver": release, "kube-scheduler": release}
	h.fake.Fail = map[string]error{"kube-apiserver": errors.New("etcd gone"), "kube-scheduler": errors.New("lost the apiserver")}
	done := make(chan error, 1)
	go func() { done <- h.r.serve(context.Background(), h.steps) }()
	select {
	case <-h.ready:
	case err := <-done:
		t.Fatalf("serve ended during start-up: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("start-up did not finish")
	}
	close(release)
	select {
	case err := <-done:
		if err == nil || err.Error() != "kube-apiserver: etcd gone" {
			t.Fatalf("serve() = %v, want the apiserver's failure", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("serve did not return after two components failed")
	}
}
