package tests

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/k1s-io/k1s/tests/harness"
	"github.com/k1s-io/k1s/tests/images"
)

// clusterRoot is where `k1s cluster` keeps its clusters' state.
const clusterRoot = "/var/lib/k1s-cluster"

// clusterHostState lists what `k1s cluster` may create on the host:
// network namespaces, links, iptables rules (filter and nat), mounts,
// top-level cgroup dirs, cluster state dirs and CNI cache entries. Two
// equal lists mean the host is as it was.
func clusterHostState(t testing.TB) []string {
	t.Helper()
	var s []string
	add := func(kind string, lines string) {
		for _, l := range strings.Split(lines, "\n") {
			if l = strings.TrimSpace(l); l != "" {
				s = append(s, kind+" "+l)
			}
		}
	}
	must := func(name string, args ...string) string {
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v: %s", name, args, err, out)
		}
		return string(out)
	}
	add("netns", must("ip", "netns", "list"))
	for _, l := range strings.Split(must("ip", "-o", "link"), "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			s = append(s, "link "+strings.TrimSuffix(f[1], ":"))
		}
	}
	add("iptables", must("iptables", "-w", "-S"))
	add("iptables-nat", must("iptables", "-w", "-t", "nat", "-S"))
	mounts, _ := os.ReadFile("/proc/self/mounts")
	for _, l := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			s = append(s, "mount "+f[1])
		}
	}
	cg, _ := filepath.Glob("/sys/fs/cgroup/*/*/")
	for _, d := range cg {
		s = append(s, "cgroup "+d)
	}
	ents, _ := os.ReadDir(clusterRoot)
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".") {
			s = append(s, "state "+e.Name())
		}
	}
	cni, _ := os.ReadDir("/var/lib/cni/results")
	for _, e := range cni {
		s = append(s, "cni "+e.Name())
	}
	slices.Sort(s)
	return s
}

// diffState is what is only in before (-) or only in after (+).
func diffState(before, after []string) []string {
	var d []string
	for _, x := range before {
		if !slices.Contains(after, x) {
			d = append(d, "- "+x)
		}
	}
	for _, x := range after {
		if !slices.Contains(before, x) {
			d = append(d, "+ "+x)
		}
	}
	return d
}

// k1sCluster runs `k1s cluster args…` and returns its exit code and output.
func k1sCluster(t testing.TB, timeout time.Duration, args ...string) (int, string) {
	t.Helper()
	code, out, err := harness.Run(timeout, append([]string{"cluster"}, args...)...)
	if err != nil {
		t.Fatalf("k1s cluster %v: %v\n%s", args, err, out)
	}
	return code, out
}

// createCluster creates a cluster and deletes it when the test ends (a
// failed delete fails the test).
func createCluster(t testing.TB, name string, args ...string) string {
	t.Helper()
	t.Cleanup(func() {
		if _, err := os.Stat(filepath.Join(clusterRoot, name)); err != nil {
			return
		}
		if code, out := k1sCluster(t, 3*time.Minute, "delete", name); code != 0 {
			t.Errorf("k1s cluster delete %s: exit %d\n%s", name, code, out)
		}
	})
	code, out := k1sCluster(t, 4*time.Minute, append([]string{"create", name}, args...)...)
	if code != 0 {
		for _, log := range clusterLogs(name) {
			t.Logf("%s ends:\n%s", log, tailFile(log, 30))
		}
		t.Fatalf("k1s cluster create %s %v: exit %d\n%s", name, args, code, out)
	}
	return out
}

func clusterLogs(name string) []string {
	m, _ := filepath.Glob(filepath.Join(clusterRoot, name, "nodes", "*", "k1s.log"))
	return m
}

func tailFile(path string, n int) string {
	b, _ := os.ReadFile(path)
	return tailString(string(b), n)
}

// TestClusterRefusals: what `k1s cluster create` refuses, and that a
// refusal leaves nothing behind.
func TestClusterRefusals(t *testing.T) {
	before := clusterHostState(t)
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"two servers", []string{"create", "r1", "--servers", "2"}, "2 servers: want 1, or 3 for an HA control plane"},
		{"unknown field", []string{"create", "r1", "--config", write("bad.yaml", "nodes:\n- name: a\n  role: agent\n  lables: {x: y}\n")}, `unknown field "lables"`},
		{"subnet taken", []string{"create", "r1", "--config", write("lo.yaml", "subnet: 127.0.0.0/24\n")}, "subnet 127.0.0.0/24 is taken: it overlaps 127.0.0.0/8"},
		{"bad name", []string{"create", "R_1"}, `cluster name "R_1"`},
		{"bad port", []string{"create", "r1", "-p", "8080"}, "want HOSTPORT:PORT"},
		{"no cluster", []string{"delete", "r-none"}, `no such cluster "r-none"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := k1sCluster(t, time.Minute, tc.args...)
			if code == 0 || !strings.Contains(out, tc.want) {
				t.Fatalf("want a failure with %q, got exit %d:\n%s", tc.want, code, out)
			}
		})
	}
	t.Run("not root", func(t *testing.T) {
		cmd := exec.Command(harness.Bin(), "cluster", "create", "r1")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "k1s cluster needs root") {
			t.Fatalf("want a refusal naming root, got %v:\n%s", err, out)
		}
	})
	t.Run("no ip", func(t *testing.T) {
		empty := t.TempDir()
		cmd := exec.Command(harness.Bin(), "cluster", "create", "r1")
		cmd.Env = harness.Env("PATH=" + empty)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "needs the ip command") || !strings.Contains(string(out), "iproute2") {
			t.Fatalf("want a refusal naming ip, got %v:\n%s", err, out)
		}
	})
	if d := diffState(before, clusterHostState(t)); len(d) > 0 {
		t.Fatalf("refused creates changed the host:\n%s", strings.Join(d, "\n"))
	}
}

// TestClusterMultiNode: a 1-server + 2-agent cluster with a port mapping
// and a second cluster beside it. All nodes Ready; a loaded image runs on
// every node; a Deployment spread over the three nodes answers through
// the port mapping from the host; the clusters do not see each other;
// delete leaves the host as it was.
func TestClusterMultiNode(t *testing.T) {
	before := clusterHostState(t)
	defer func() {
		if d := diffState(before, clusterHostState(t)); len(d) > 0 {
			t.Errorf("host changed by the clusters:\n%s", strings.Join(d, "\n"))
		}
	}()
	ports, err := harness.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	hostPort := ports[0]
	dir := t.TempDir()
	kc := filepath.Join(dir, "c1.yaml")
	start := time.Now()
	out := createCluster(t, "t-c1", "--agents", "2", "--wait", "150s", "--kubeconfig", kc, "-p", fmt.Sprintf("%d:30080@agent-1", hostPort))
	t.Logf("create 1 server + 2 agents --wait: %.1f s\n%s", time.Since(start).Seconds(), out)
	if fi, err := os.Stat(kc); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("kubeconfig %s: %v %v, want mode 0600", kc, fi, err)
	}
	if fi, err := os.Stat(filepath.Join(clusterRoot, "t-c1", "token")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v, want mode 0600", fi, err)
	}
	nodes, err := harness.Kubectl(kc, "get", "nodes", "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status} {end}`)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(nodes); !slices.Equal(sortedCopy(got), []string{"agent-1=True", "agent-2=True", "server=True"}) {
		t.Fatalf("nodes: %q", nodes)
	}
	// The token is on no node's command line.
	token, err := os.ReadFile(filepath.Join(clusterRoot, "t-c1", "token"))
	if err != nil || len(strings.TrimSpace(string(token))) < 16 {
		t.Fatalf("token: %q %v", token, err)
	}
	var st struct{ Procs map[string]struct{ PID int } }
	if b, err := os.ReadFile(filepath.Join(clusterRoot, "t-c1", "state.json")); err != nil || json.Unmarshal(b, &st) != nil || len(st.Procs) != 3 {
		t.Fatalf("state.json: %v %+v", err, st)
	}
	for node, p := range st.Procs {
		cl, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.PID))
		if err != nil || !strings.Contains(string(cl), "--token-file") {
			t.Fatalf("node %s (PID %d) is not running k1s with --token-file: %q %v", node, p.PID, cl, err)
		}
		if strings.Contains(string(cl), strings.TrimSpace(string(token))) {
			t.Fatalf("node %s has the token on its command line", node)
		}
	}
	if code, out := k1sCluster(t, time.Minute, "create", "t-c1"); code == 0 || !strings.Contains(out, `cluster "t-c1" exists already`) {
		t.Fatalf("a second create of t-c1: exit %d\n%s", code, out)
	}

	// The second cluster, beside the first, merged into a kubeconfig
	// that holds another cluster already.
	kc2 := filepath.Join(dir, "merged.yaml")
	if err := os.WriteFile(kc2, []byte("apiVersion: v1\nkind: Config\nclusters:\n- name: other\n  cluster: {server: 'https://other.invalid:6443'}\ncontexts:\n- name: other\n  context: {cluster: other}\ncurrent-context: other\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	createCluster(t, "t-c2", "--wait", "150s", "--kubeconfig", kc2, "--merge")
	if cur, err := harness.Kubectl(kc2, "config", "current-context"); err != nil || strings.TrimSpace(cur) != "k1s-t-c2" {
		t.Fatalf("merged kubeconfig's current context: %q %v", cur, err)
	}
	if code, out := k1sCluster(t, time.Minute, "kubeconfig", "t-c1"); code != 0 || !strings.Contains(out, "server: https://10.220.") || !strings.Contains(out, "k1s-t-c1") {
		t.Fatalf("k1s cluster kubeconfig t-c1: exit %d\n%s", code, out)
	}
	_, listOut := k1sCluster(t, time.Minute, "list")
	var subnets []string
	for _, l := range strings.Split(listOut, "\n") {
		if f := strings.Fields(l); len(f) >= 5 && strings.HasPrefix(f[0], "t-c") {
			if f[1] != "created" || (f[0] == "t-c1" && f[2] != "3/3") || (f[0] == "t-c2" && f[2] != "1/1") {
				t.Errorf("list line: %s", l)
			}
			subnets = append(subnets, f[3])
		}
	}
	if len(subnets) != 2 || subnets[0] == subnets[1] {
		t.Fatalf("want two clusters with their own subnets:\n%s", listOut)
	}
	if n2, err := harness.Kubectl(kc2, "get", "nodes", "-o", "name"); err != nil || strings.TrimSpace(n2) != "node/server" {
		t.Fatalf("cluster 2 nodes: %q %v", n2, err)
	}
	c1Server := strings.Split(strings.TrimPrefix(mustServer(t, kc), "https://"), ":")[0]
	// From cluster 1's agent the server answers; from cluster 2's server it must not.
	if code, out := k1sCluster(t, time.Minute, "exec", "t-c1", "agent-2", "--", "timeout", "3", "bash", "-c", "echo > /dev/tcp/"+c1Server+"/6443"); code != 0 {
		t.Fatalf("cluster 1's agent cannot reach its server %s:6443: %s", c1Server, out)
	}
	if code, out := k1sCluster(t, time.Minute, "exec", "t-c2", "server", "--", "timeout", "3", "bash", "-c", "echo > /dev/tcp/"+c1Server+"/6443"); code == 0 {
		t.Fatalf("cluster 2's server reaches cluster 1's server %s:6443: %s", c1Server, out)
	}

	// load: a local image, then a Deployment with one Pod per node.
	img := filepath.Join(dir, "web.tar")
	const ref = "docker.io/k1s-test/web:1"
	if err := images.Busybox(img, ref, "sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"); err != nil {
		t.Fatal(err)
	}
	if code, out := k1sCluster(t, 2*time.Minute, "load", "t-c1", img); code != 0 || strings.Count(out, "loaded web.tar into node") != 3 {
		t.Fatalf("load: exit %d\n%s", code, out)
	}
	manifest := filepath.Join(dir, "web.yaml")
	if err := os.WriteFile(manifest, []byte(`
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: web}}}
      containers:
      - {name: web, image: `+ref+`, imagePullPolicy: Never, ports: [{containerPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080, nodePort: 30080}]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := harness.Kubectl(kc, "apply", "-f", manifest); err != nil {
		t.Fatal(out)
	}
	if out, err := harness.Kubectl(kc, "rollout", "status", "deployment/web", "--timeout=120s"); err != nil {
		pods, perr := harness.Kubectl(kc, "get", "pods", "-o", "wide")
		events, eerr := harness.Kubectl(kc, "get", "events", "-A", "--sort-by=.lastTimestamp")
		t.Fatalf("%s\npods (%v):\n%s\nevents (%v):\n%s", out, perr, pods, eerr, events)
	}
	placed, err := harness.Kubectl(kc, "get", "pods", "-l", "app=web", "-o", `jsonpath={range .items[*]}{.spec.nodeName} {end}`)
	if err != nil {
		t.Fatal(err)
	}
	if got := sortedCopy(strings.Fields(placed)); !slices.Equal(got, []string{"agent-1", "agent-2", "server"}) {
		t.Fatalf("pods on nodes %v, want one on each", got)
	}
	// Through the port mapping from the host: every Pod answers.
	seen := map[string]bool{}
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	eventually(t, 60*time.Second, "all three Pods answering on 127.0.0.1:"+fmt.Sprint(hostPort), func() error {
		resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/", hostPort))
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		seen[strings.TrimSpace(string(b))] = true
		if len(seen) < 3 {
			return fmt.Errorf("answers so far: %v", seen)
		}
		return nil
	})

	for _, name := range []string{"t-c1", "t-c2"} {
		start := time.Now()
		if code, out := k1sCluster(t, 3*time.Minute, "delete", name); code != 0 {
			t.Fatalf("delete %s: exit %d\n%s", name, code, out)
		}
		t.Logf("delete %s: %.1f s", name, time.Since(start).Seconds())
	}
	if _, err := os.Stat(kc); err == nil {
		t.Errorf("delete left the kubeconfig %s", kc)
	}
	if ctxs, err := harness.Kubectl(kc2, "config", "get-contexts", "-o", "name"); err != nil || strings.TrimSpace(ctxs) != "other" {
		t.Errorf("after delete the merged kubeconfig should hold only 'other': %q %v", ctxs, err)
	}
}

func mustServer(t *testing.T, kc string) string {
	t.Helper()
	out, err := harness.Kubectl(kc, "config", "view", "-o", "jsonpath={.clusters[0].cluster.server}")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	slices.Sort(c)
	return c
}

// TestClusterCrashedCreate: a create killed while its nodes start is
// cleaned up by delete.
func TestClusterCrashedCreate(t *testing.T) {
	before := clusterHostState(t)
	kc := filepath.Join(t.TempDir(), "crash.yaml")
	cmd := exec.Command(harness.Bin(), "cluster", "create", "t-crash", "--agents", "1", "--wait", "120s", "--kubeconfig", kc, "-p", "18099:30080")
	cmd.Env = harness.Env()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if _, err := os.Stat(filepath.Join(clusterRoot, "t-crash")); err == nil {
			_, _ = k1sCluster(t, 3*time.Minute, "delete", "t-crash")
		}
	})
	// Killed once the server runs and the agent may be starting.
	eventually(t, 60*time.Second, "the server's token", func() error {
		_, err := os.Stat(filepath.Join(clusterRoot, "t-crash", "nodes", "server", "data", "server", "token"))
		return err
	})
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	time.Sleep(2 * time.Second)
	if d := diffState(before, clusterHostState(t)); len(d) == 0 {
		t.Fatal("the killed create left nothing: the test did not kill it mid-way")
	}
	code, out := k1sCluster(t, 3*time.Minute, "list")
	if code != 0 || !strings.Contains(out, "t-crash") || !strings.Contains(out, "creating") {
		t.Fatalf("list should show t-crash as creating:\n%s", out)
	}
	if code, out := k1sCluster(t, 3*time.Minute, "delete", "t-crash"); code != 0 {
		t.Fatalf("delete after a killed create: exit %d\n%s", code, out)
	}
	if d := diffState(before, clusterHostState(t)); len(d) > 0 {
		t.Fatalf("delete after a killed create left:\n%s", strings.Join(d, "\n"))
	}
}

// TestClusterHA: `create --servers 3 --agents 1 --wait`: three servers on
// one embedded etcd and an agent, all Ready, each server's node labelled
// control-plane; with server-1 (the one the kubeconfig names) SIGKILLed,
// the API still takes writes through server-2, the agent stays Ready and
// its Pod keeps answering through a port mapping; delete leaves the host
// as it was.
func TestClusterHA(t *testing.T) {
	before := clusterHostState(t)
	// A cleanup, registered first so it runs last: after createCluster's
	// delete, also when the test fails.
	t.Cleanup(func() {
		if d := diffState(before, clusterHostState(t)); len(d) > 0 {
			t.Errorf("host changed by the cluster:\n%s", strings.Join(d, "\n"))
		}
	})
	dir := t.TempDir()
	kc := filepath.Join(dir, "ha.yaml")
	cfg := filepath.Join(dir, "cluster.yaml")
	if err := os.WriteFile(cfg, []byte("serverArgs: [--disable=ingress]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ports, err := harness.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	out := createCluster(t, "t-ha", "--servers", "3", "--agents", "1", "--wait", "180s", "--kubeconfig", kc, "--config", cfg,
		"-p", fmt.Sprintf("%d:30081@agent-1", ports[0]))
	if !strings.Contains(out, "all 4 nodes Ready") {
		t.Fatalf("create output:\n%s", out)
	}
	t.Logf("create --servers 3 --agents 1:\n%s", out)
	// A web Pod on the agent, reached from the host through the mapping.
	img := filepath.Join(dir, "web.tar")
	const ref = "docker.io/k1s-test/web:1"
	if err := images.Busybox(img, ref, "sh", "-c", "mkdir -p /www && echo ha-web > /www/index.html && exec httpd -f -p 8080 -h /www"); err != nil {
		t.Fatal(err)
	}
	if code, out := k1sCluster(t, 2*time.Minute, "load", "t-ha", img); code != 0 {
		t.Fatalf("load: exit %d\n%s", code, out)
	}
	manifest := filepath.Join(dir, "web.yaml")
	if err := os.WriteFile(manifest, []byte(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      nodeSelector: {kubernetes.io/hostname: agent-1}
      containers:
      - {name: web, image: `+ref+`, imagePullPolicy: Never, ports: [{containerPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080, nodePort: 30081}]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := harness.Kubectl(kc, "apply", "-f", manifest); err != nil {
		t.Fatal(out)
	}
	web := fmt.Sprintf("http://127.0.0.1:%d/", ports[0])
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	get := func() error {
		resp, err := client.Get(web)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if strings.TrimSpace(string(b)) != "ha-web" {
			return fmt.Errorf("%s answered %q", web, b)
		}
		return nil
	}
	eventually(t, 2*time.Minute, "the agent's web Pod answering through the port mapping", get)
	eventually(t, 30*time.Second, "three servers' nodes labelled control-plane", func() error {
		got, err := harness.Kubectl(kc, "get", "nodes", "-o", "jsonpath={range .items[*]}{.metadata.name}={.metadata.labels.node-role\\.kubernetes\\.io/control-plane} {end}")
		if err != nil {
			return err
		}
		if want := "agent-1= server-1=true server-2=true server-3=true"; strings.TrimSpace(got) != want {
			return fmt.Errorf("nodes %q, want %q", got, want)
		}
		return nil
	})
	var st struct{ Procs map[string]struct{ PID int } }
	b, err := os.ReadFile(filepath.Join(clusterRoot, "t-ha", "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	pid := st.Procs["server-1"].PID
	if pid <= 0 {
		t.Fatalf("no PID for server-1 in state.json: %s", b)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The host's kubeconfig names server-1; server-2 is the next address.
	via2 := []string{"--server", strings.Replace(mustServer(t, kc), ".2:", ".3:", 1)}
	eventually(t, 60*time.Second, "a write through server-2 with server-1 dead", func() error {
		_, err := harness.Kubectl(kc, append(via2, "create", "configmap", "after-kill", "--from-literal=k=v")...)
		return err
	})
	eventually(t, 90*time.Second, "agent-1 Ready after server-1 died", func() error {
		out, err := harness.Kubectl(kc, append(via2, "get", "node", "agent-1", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)...)
		if err != nil || out != "True" {
			return fmt.Errorf("%q %v", out, err)
		}
		return nil
	})
	// For a minute, longer than the node controller's grace period, so a
	// node cut off from the API would be NotReady by the end.
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(5 * time.Second) {
		if err := get(); err != nil {
			t.Fatalf("the agent's Pod stopped answering with server-1 dead: %v", err)
		}
	}
	if out, err := harness.Kubectl(kc, append(via2, "get", "node", "agent-1", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)...); err != nil || out != "True" {
		t.Fatalf("agent-1 not Ready a minute after server-1 died: %q %v", out, err)
	}
	if code, out := k1sCluster(t, 3*time.Minute, "delete", "t-ha"); code != 0 {
		t.Fatalf("delete: exit %d\n%s", code, out)
	}
}

// BenchmarkClusterCreate: `k1s cluster create --agents 2 --wait` until
// every node is Ready and CoreDNS answers (target ≤ 30 s on 2 cores),
// then delete.
func BenchmarkClusterCreate(b *testing.B) {
	var creates, deletes []time.Duration
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("bench-%d", i)
		kc := filepath.Join(b.TempDir(), "kc.yaml")
		start := time.Now()
		createCluster(b, name, "--agents", "2", "--wait", "120s", "--kubeconfig", kc)
		creates = append(creates, time.Since(start))
		start = time.Now()
		if code, out := k1sCluster(b, 3*time.Minute, "delete", name); code != 0 {
			b.Fatalf("delete: exit %d\n%s", code, out)
		}
		deletes = append(deletes, time.Since(start))
	}
	var r strings.Builder
	fmt.Fprintf(&r, "\n## k1s cluster create (`go test -run '^$' -bench BenchmarkClusterCreate -benchtime 3x ./tests/`)\n\n")
	fmt.Fprintf(&r, "`k1s cluster create NAME --agents 2 --wait 120s`: a server and two agents, each in a network namespace, until all three Nodes are Ready and CoreDNS answers a lookup; then `k1s cluster delete NAME`. Measured on %s, %d runs.\n\n", time.Now().UTC().Format("2006-01-02"), len(creates))
	r.WriteString("| measure | runs | worst | target | |\n|---|---|---|---|---|\n")
	fmt.Fprintf(&r, "| create → all Ready + DNS | %s | %.1f s | ≤ 30 s | %s |\n", secs(creates), pct(creates, 100).Seconds(), met(pct(creates, 100) <= 30*time.Second))
	fmt.Fprintf(&r, "| delete | %s | %.1f s | | |\n", secs(deletes), pct(deletes, 100).Seconds())
	benchReport(b, r.String())
}

func secs(d []time.Duration) string {
	var s []string
	for _, x := range d {
		s = append(s, fmt.Sprintf("%.1f s", x.Seconds()))
	}
	return strings.Join(s, ", ")
}
