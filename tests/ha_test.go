package tests

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/k1s-io/k1s/tests/harness"
)

// haDisable keeps the add-ons this test does not need off, on both servers
// alike (two cores run two control planes and a node here).
const haDisable = "--disable=metrics-server,ingress,dashboard,helm-controller,local-storage,servicelb"

// newHAServer prepares a control-plane server in lab host h on the shared
// datastore, on port (0: a free one).
func newHAServer(t *testing.T, h *harness.NetHost, dsn string, port int, extra ...string) *harness.Server {
	t.Helper()
	return newLabServer(t, h, port, append([]string{"--datastore-endpoint", dsn}, extra...)...)
}

// keepLogsOnFailure copies the servers' logs out of the test's temp dirs
// when the test fails, for a post-mortem: an apiserver's fatal error is
// followed by every goroutine's stack, far beyond any tail.
func keepLogsOnFailure(t *testing.T, servers ...*harness.Server) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		dir, err := os.MkdirTemp("", "k1s-ha-logs-")
		if err != nil {
			return
		}
		for i, s := range servers {
			logs, _ := filepath.Glob(filepath.Join(s.Dir, "k1s-*.log"))
			logs = append(logs, filepath.Join(s.DataDir, "logs", "components.log"))
			for _, l := range logs {
				if data, err := os.ReadFile(l); err == nil {
					_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("%d-%s", i, filepath.Base(l))), data, 0o600)
				}
			}
		}
		t.Logf("server logs kept in %s", dir)
	})
}

// kubectlVia runs kubectl with kc's credentials against server s.
func kubectlVia(kc string, s *harness.Server, args ...string) (string, error) {
	return harness.Kubectl(kc, append([]string{"--server", "https://" + s.Addr(), "--request-timeout=10s"}, args...)...)
}

// apiEndpoints lists the addresses in the kubernetes Service's endpoints.
func apiEndpoints(kc string, s *harness.Server) (string, error) {
	out, err := kubectlVia(kc, s, "get", "endpointslices", "-n", "default", "-l", "kubernetes.io/service-name=kubernetes",
		"-o", `jsonpath={range .items[*].endpoints[*]}{.addresses[0]} {end}`)
	f := strings.Fields(out)
	slices.Sort(f)
	return strings.Join(f, " "), err
}

// TestHAExternalDatastore: two servers on one PostgreSQL form one
// cluster (the second loads the first's CAs from the datastore), an agent
// reaches them through its load balancer, and either server may be
// SIGKILLed: the API answers and takes writes through the other, the
// agent stays Ready and its Pods keep serving, and the killed server
// rejoins. A server with another token is refused and writes nothing.
func TestHAExternalDatastore(t *testing.T) {
	lab := harness.NewLab(t)
	ha, hb, hag, hw := lab.AddHost(t, "sa"), lab.AddHost(t, "sb"), lab.AddHost(t, "ag"), lab.AddHost(t, "sw")
	pg := startPostgres(t, lab.GatewayIP)
	dsn := fmt.Sprintf("postgres://postgres@%s:%d/k1s?sslmode=disable", lab.GatewayIP, pg.Port)

	a := newHAServer(t, ha, dsn, 0)
	startExisting(t, a)
	if err := a.WaitLog("stored the cluster's CAs and keys in the datastore", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	tokenB, err := os.ReadFile(filepath.Join(a.DataDir, "server", "token"))
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(tokenB))
	kc := a.Kubeconfig // the admin kubeconfig of server A, used against both
	// The second server, given the token, joins: same CAs, no new cluster.
	// It starts while A's controller-manager and add-ons are still writing:
	// with the apiserver's watch cache on, that start failed (docs/ha.md).
	b := newHAServer(t, hb, dsn, a.Port, "--token", token)
	keepLogsOnFailure(t, a, b)
	joinStart := time.Now()
	startExisting(t, b)
	if err := b.WaitLog("k1s is ready", 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Logf("BENCH second server ready %s after start (PostgreSQL, control plane only)", time.Since(joinStart).Round(100*time.Millisecond))
	if err := b.WaitLog("loaded the cluster's CAs and keys from the datastore", time.Second); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"server-ca.crt", "client-ca.crt", "request-header-ca.crt", "kubelet-serving-ca.crt", "service.key"} {
		fa, _ := os.ReadFile(filepath.Join(a.DataDir, "server", "tls", f))
		fb, err := os.ReadFile(filepath.Join(b.DataDir, "server", "tls", f))
		if err != nil || len(fa) == 0 || string(fa) != string(fb) {
			t.Errorf("%s differs between the servers (err %v)", f, err)
		}
	}
	for _, s := range []*harness.Server{a, b} {
		if out, err := kubectlVia(kc, s, "get", "--raw", "/readyz"); err != nil || strings.TrimSpace(out) != "ok" {
			t.Fatalf("A's admin kubeconfig against %s: /readyz %q %v", s.Host, out, err)
		}
	}
	both := strings.Join(sortedIPs(a.Host, b.Host), " ")
	eventually(t, time.Minute, "kubernetes endpoints list both servers", func() error {
		got, err := apiEndpoints(kc, b)
		if err != nil || got != both {
			return fmt.Errorf("endpoints %q %v, want %q", got, err, both)
		}
		return nil
	})

	t.Run("wrong token refused", func(t *testing.T) { haWrongToken(t, hw, dsn) })

	// The agent joins through A and its balancer (on by default) learns B
	// from the endpoints.
	ag := startAgentWith(t, a, lab, hag, stageNetImages)
	lbState := filepath.Join(ag.DataDir, "agent", "apiservers.json")
	eventually(t, time.Minute, "the agent's load balancer knows both servers", func() error {
		data, err := os.ReadFile(lbState)
		if err != nil {
			return err
		}
		for _, h := range []string{a.Host, b.Host} {
			if !strings.Contains(string(data), h+":"+strconv.Itoa(a.Port)) {
				return fmt.Errorf("%s lacks %s: %s", lbState, h, data)
			}
		}
		return nil
	})
	nodePort := 30000 + int(time.Now().UnixNano()%2000)
	apply(t, a, fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: %s
        imagePullPolicy: Never
        command: ["sh", "-c", "mkdir -p /www && echo ha-web > /www/index.html && exec httpd -f -p 8080 -h /www"]
        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 2}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 8080, nodePort: %d}]
`, netImage, nodePort))
	webURL := fmt.Sprintf("http://%s:%d/", hag.IP, nodePort)
	eventually(t, 3*time.Minute, "web serves through the agent's NodePort", func() error { return httpIs(webURL, "ha-web") })

	haKill(t, "A", a, b, kc, ag, hag.Name, webURL, both, 2)
	haKill(t, "B", b, a, kc, ag, hag.Name, webURL, both, 3)
}

func sortedIPs(ips ...string) []string {
	slices.Sort(ips)
	return ips
}

func httpIs(url, want string) error {
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if got := strings.TrimSpace(string(body)); resp.StatusCode != 200 || got != want {
		return fmt.Errorf("HTTP %d %q, want %q", resp.StatusCode, got, want)
	}
	return nil
}

// haKill SIGKILLs victim and checks the cluster carries on through
// survivor for a minute, then restarts victim and sees it rejoin.
func haKill(t *testing.T, name string, victim, survivor *harness.Server, kc string, ag *harness.Server, node, webURL, both string, replicas int) {
	t.Helper()
	if err := syscall.Kill(victim.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	eventually(t, 30*time.Second, "server "+name+" gone", func() error {
		if done, _ := victim.Exited(); !done {
			return fmt.Errorf("still running")
		}
		return nil
	})

	// For a minute: the node's Ready condition (through the survivor) and
	// the web Pod (straight at the agent) are sampled every 2 s.
	var mu sync.Mutex
	var notReady, webFailed []string
	var samples int
	ctx, cancel := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for ctx.Err() == nil {
			at := time.Since(killed).Round(time.Second)
			out, err := kubectlVia(kc, survivor, "get", "node", node, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
			werr := httpIs(webURL, "ha-web")
			mu.Lock()
			samples++
			// An API error in the first seconds (the survivor's lease
			// takeover) is not the node's condition: only a read value counts.
			if err == nil && out != "True" {
				notReady = append(notReady, fmt.Sprintf("%s: Ready=%q", at, out))
			}
			if werr != nil {
				webFailed = append(webFailed, fmt.Sprintf("%s: %v", at, werr))
			}
			mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(2 * time.Second):
			}
		}
	}()

	// Writes succeed through the survivor, with A's admin kubeconfig.
	eventually(t, 30*time.Second, "a write through the survivor", func() error {
		_, err := kubectlVia(kc, survivor, "create", "configmap", "after-kill-"+strings.ToLower(name), "--from-literal=k=v")
		if err != nil && strings.Contains(err.Error(), "AlreadyExists") {
			return nil
		}
		return err
	})
	// The agent's kubelet still takes new work: a second replica runs.
	if out, err := kubectlVia(kc, survivor, "scale", "deployment", "web", "--replicas", strconv.Itoa(replicas)); err != nil {
		t.Fatal(out, err)
	}
	eventually(t, 90*time.Second, fmt.Sprintf("%d web Pods Running after %s died", replicas, name), func() error {
		out, err := kubectlVia(kc, survivor, "get", "pods", "-l", "app=web", "-o", `jsonpath={range .items[*]}{.status.phase} {end}`)
		if err != nil {
			return err
		}
		if strings.Count(out, "Running") != replicas {
			return fmt.Errorf("pods %q", out)
		}
		return nil
	})
	// The dead server leaves the kubernetes endpoints (its lease expires).
	eventually(t, 60*time.Second, name+" out of the kubernetes endpoints", func() error {
		got, err := apiEndpoints(kc, survivor)
		if err != nil || got != survivor.Host {
			return fmt.Errorf("endpoints %q %v", got, err)
		}
		return nil
	})
	if left := 65*time.Second - time.Since(killed); left > 0 {
		time.Sleep(left)
	}
	cancel()
	<-watched
	mu.Lock()
	t.Logf("server %s killed: %d samples over %s; node NotReady in %d, web failed in %d", name, samples, time.Since(killed).Round(time.Second), len(notReady), len(webFailed))
	if len(notReady) > 0 {
		t.Errorf("node %s was not Ready after server %s died: %v", node, name, notReady)
	}
	if len(webFailed) > 0 {
		t.Errorf("the agent's Pod stopped serving after server %s died: %v", name, webFailed)
	}
	if samples < 20 {
		t.Errorf("only %d samples in a minute", samples)
	}
	mu.Unlock()
	// The agent's balancer saw the server go (its check or a failed dial).
	if down := "apiserver load balancer: server " + victim.Addr() + " is down"; !strings.Contains(ag.Log(), down) {
		t.Errorf("the agent's log lacks %q:\n%s", down, ag.Tail(30))
	}

	// The killed server restarts on its data dir and rejoins.
	startExisting(t, victim)
	if err := victim.WaitLog("k1s is ready", 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "kubernetes endpoints list both servers again", func() error {
		got, err := apiEndpoints(kc, victim)
		if err != nil || got != both {
			return fmt.Errorf("endpoints %q %v, want %q", got, err, both)
		}
		return nil
	})
	if out, err := kubectlVia(kc, victim, "get", "configmap", "after-kill-"+strings.ToLower(name), "-o", "jsonpath={.data.k}"); err != nil || out != "v" {
		t.Errorf("the restarted %s does not see the write made while it was down: %q %v", name, out, err)
	}
}

// haWrongToken: a server with another token on the same datastore exits
// with an error naming the problem and the fix, and writes no credential.
func haWrongToken(t *testing.T, h *harness.NetHost, dsn string) {
	s := newHAServer(t, h, dsn, 0, "--token", "not-this-clusters-token-0123456789")
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop(30 * time.Second) })
	deadline := time.Now().Add(90 * time.Second)
	for {
		if done, _ := s.Exited(); done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a server with the wrong token is still running after 90 s:\n%s", s.Tail(20))
		}
		time.Sleep(200 * time.Millisecond)
	}
	_, exitErr := s.Exited()
	if exitErr == nil {
		t.Errorf("the server with the wrong token exited 0")
	}
	log := s.Log()
	for _, want := range []string{"different token", "--token"} {
		if !strings.Contains(log, want) {
			t.Errorf("the refusal does not say %q:\n%s", want, s.Tail(20))
		}
	}
	for _, p := range []string{"server/tls", "server/cred", "server/token"} {
		if _, err := os.Stat(filepath.Join(s.DataDir, p)); err == nil {
			t.Errorf("the refused server wrote %s", p)
		}
	}
	// Nothing listens where its apiserver would have.
	if c, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
		c.Close()
		t.Errorf("something answers at the refused server's %s", s.Addr())
	}
}
