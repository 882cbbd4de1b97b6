package tests

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/k1s-io/k1s/internal/imagebuild"
	"github.com/k1s-io/k1s/tests/harness"
	"github.com/k1s-io/k1s/tests/images"
)

// netImage is busybox plus netcheck, the tests' Go network probe.
const netImage = "docker.io/k1s-test/net:1"

var (
	netcheckOnce sync.Once
	netcheckBin  []byte
	netcheckErr  error
)

// stageNetImages writes the add-on bundle (a symlink) and the probe image
// into a node's air-gap folder.
func stageNetImages(dir string) error {
	netcheckOnce.Do(func() {
		out := filepath.Join(os.TempDir(), fmt.Sprintf("k1s-netcheck-%d", os.Getpid()))
		// The go that runs the tests builds the probe.
		goBin := "go"
		if r := runtime.GOROOT(); r != "" {
			goBin = filepath.Join(r, "bin", "go")
		}
		cmd := exec.Command(goBin, "build", "-o", out, "./images/netcheck")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			netcheckErr = fmt.Errorf("building netcheck: %v\n%s", err, b)
			return
		}
		netcheckBin, netcheckErr = os.ReadFile(out)
		os.Remove(out)
	})
	if netcheckErr != nil {
		return netcheckErr
	}
	if err := linkBundle(dir); err != nil {
		return err
	}
	return images.BusyboxWith(filepath.Join(dir, "net.tar"), netImage,
		[]imagebuild.File{{Name: "bin/netcheck", Mode: 0o755, Data: netcheckBin}}, "sleep", "3600")
}

// linkBundle links k1s's air-gap bundle (built by `make images` next to
// the binary) into an images folder.
func linkBundle(dir string) error {
	b := harness.Bundle()
	if _, err := os.Stat(b); err != nil {
		return fmt.Errorf("the add-on image bundle is missing (%v): run `make images`", err)
	}
	return os.Symlink(b, filepath.Join(dir, filepath.Base(b)))
}

// startLabServer starts a server with its node in lab host h, with the
// add-on bundle and the probe image, and cleans the host up afterwards.
func startLabServer(t testing.TB, h *harness.NetHost, extra ...string) *harness.Server {
	t.Helper()
	s := newNodeServer(t, extra...)
	s.PlaceIn(h)
	dir := filepath.Join(s.DataDir, "agent", "images")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := stageNetImages(dir); err != nil {
		t.Fatal(err)
	}
	startExisting(t, s)
	if err := s.WaitLog("k1s is ready", 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = s.Kubectl("delete", "pods", "--all", "--wait=true", "--timeout=60s") })
	return s
}

// cluster is a server and two agents, each in a lab host of its own.
type cluster struct {
	lab    *harness.Lab
	s      *harness.Server
	agents map[string]*harness.Server
	hosts  map[string]*harness.NetHost
	resolv string // the nodes' resolv.conf: the test's DNS server
}

func startCluster(t testing.TB, backend string, serverArgs ...string) *cluster {
	t.Helper()
	c := &cluster{lab: harness.NewLab(t), agents: map[string]*harness.Server{}, hosts: map[string]*harness.NetHost{}}
	for _, n := range []string{"s1", "a2", "a3"} {
		c.hosts[n] = c.lab.AddHost(t, n)
	}
	// Names outside the cluster go to the nodes' resolvers: here, a DNS
	// server of the test on the lab's gateway.
	startUpstreamDNS(t, c.lab.GatewayIP)
	c.resolv = filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(c.resolv, []byte("nameserver "+c.lab.GatewayIP+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--node-name", "s1", "--flannel-backend", backend, "--kubelet-arg=resolv-conf=" + c.resolv}, serverArgs...)
	c.s = startLabServer(t, c.hosts["s1"], args...)
	for _, n := range []string{"a2", "a3"} {
		c.agents[n] = startAgentWith(t, c.s, c.lab, c.hosts[n], stageNetImages, "--kubelet-arg=resolv-conf="+c.resolv)
	}
	eventually(t, 2*time.Minute, "three nodes Ready", func() error {
		out, err := c.s.Kubectl("get", "nodes", "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status} {end}`)
		if err != nil {
			return err
		}
		if strings.TrimSpace(out) != "a2=True a3=True s1=True" {
			return fmt.Errorf("nodes: %s", out)
		}
		return nil
	})
	return c
}

// exec runs a command in a Pod and returns its output.
func (c *cluster) exec(pod string, args ...string) (string, error) {
	return c.s.Kubectl(append([]string{"exec", pod, "--"}, args...)...)
}

// inPod retries a probe in a Pod until its output satisfies ok.
func (c *cluster) inPod(t testing.TB, what, pod string, ok func(string) error, args ...string) string {
	t.Helper()
	return c.inPodWithin(t, time.Minute, what, pod, ok, args...)
}

func (c *cluster) inPodWithin(t testing.TB, timeout time.Duration, what, pod string, ok func(string) error, args ...string) string {
	t.Helper()
	var out string
	eventually(t, timeout, what, func() error {
		var err error
		out, err = c.exec(pod, args...)
		if err != nil {
			return err
		}
		return ok(strings.TrimSpace(out))
	})
	return strings.TrimSpace(out)
}

func is(want string) func(string) error {
	return func(got string) error {
		if got != want {
			return fmt.Errorf("got %q, want %q", got, want)
		}
		return nil
	}
}

func podIP(t testing.TB, s *harness.Server, pod string) string {
	t.Helper()
	ip, err := s.Kubectl("get", "pod", pod, "-o", "jsonpath={.status.podIP}")
	if err != nil || net.ParseIP(ip) == nil {
		t.Fatalf("IP of pod %s: %q %v", pod, ip, err)
	}
	return ip
}

// webPods: an httpd on a3 behind Service web3 and a client on a2.
const webPods = `apiVersion: v1
kind: Pod
metadata: {name: srv3, labels: {app: web3, tier: web}}
spec:
  nodeName: a3
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: ` + netImage + `
    imagePullPolicy: Never
    command: ["sh", "-c", "mkdir -p /www && echo hello from $(hostname) > /www/index.html && exec httpd -f -p 8080 -h /www"]
    readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 2}
---
apiVersion: v1
kind: Pod
metadata: {name: cli2}
spec:
  nodeName: a2
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c, image: ` + netImage + `, imagePullPolicy: Never}
---
apiVersion: v1
kind: Service
metadata: {name: web3}
spec:
  selector: {app: web3}
  ports: [{port: 8080}]
`

// podToPod: a Pod on a2 reaches a Pod on a3 by IP and through its Service
// by full and short name.
func podToPod(t *testing.T, c *cluster) {
	apply(t, c.s, webPods)
	waitPhase(t, c.s, "srv3", "Running", 2*time.Minute)
	waitPhase(t, c.s, "cli2", "Running", 2*time.Minute)
	ip := podIP(t, c.s, "srv3")
	want := "hello from srv3"
	c.inPod(t, "a2 → a3 by Pod IP", "cli2", is(want), "netcheck", "get", "http://"+ip+":8080/")
	c.inPod(t, "a2 → a3 by Service FQDN", "cli2", is(want), "netcheck", "get", "http://web3.default.svc.cluster.local:8080/")
	c.inPod(t, "a2 → a3 by short Service name", "cli2", is(want), "netcheck", "get", "http://web3:8080/")
}

// TestMultiNode: three nodes (a server and two agents), each in its own
// network namespace; Pods on different nodes talk by Pod IP and Service
// name over flannel's host-gw backend (TestClusterNetworking covers vxlan
// on a cluster of its own, so the two share no cluster start twice).
func TestMultiNode(t *testing.T) {
	c := startCluster(t, "host-gw")
	podToPod(t, c)
	// host-gw: a3's Pod CIDR is routed straight to a3's address.
	cidr, _ := c.s.Kubectl("get", "node", "a3", "-o", "jsonpath={.spec.podCIDR}")
	out, err := c.hosts["a2"].Run(context.Background(), "ip", "route", "show", cidr)
	if err != nil || !strings.Contains(out, "via "+c.hosts["a3"].IP) {
		t.Errorf("host-gw: route to a3's %s on a2 = %q %v, want via %s", cidr, out, err, c.hosts["a3"].IP)
	}
}

// TestClusterNetworking: on a three-node vxlan cluster, Pods on different
// nodes talk by Pod IP and Service name, and cluster DNS,
// NodePort, LoadBalancer and Ingress all serve real traffic, and a dead
// agent's Pods stop getting traffic and are replaced elsewhere.
func TestClusterNetworking(t *testing.T) {
	c := startCluster(t, "vxlan",
		// Short enough for a test, and what the timings below are measured against.
		"--kube-controller-manager-arg=node-monitor-grace-period=20s",
		"--kube-apiserver-arg=default-not-ready-toleration-seconds=20",
		"--kube-apiserver-arg=default-unreachable-toleration-seconds=20")
	podToPod(t, c)
	if _, err := c.hosts["a2"].Run(context.Background(), "ip", "-d", "link", "show", "flannel.1"); err != nil {
		t.Errorf("vxlan backend without a flannel.1 device on a2: %v", err)
	}
	s := c.s

	t.Run("dns", func(t *testing.T) {
		apply(t, s, `apiVersion: v1
kind: Service
metadata: {name: ext}
spec: {type: ExternalName, externalName: ext.k1s-test.example}
---
apiVersion: v1
kind: Service
metadata: {name: hl}
spec:
  clusterIP: None
  selector: {app: hl}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: hl-a, labels: {app: hl}}
spec:
  nodeName: a2
  terminationGracePeriodSeconds: 1
  containers: [{name: c, image: `+netImage+`, imagePullPolicy: Never}]
---
apiVersion: v1
kind: Pod
metadata: {name: hl-b, labels: {app: hl}}
spec:
  nodeName: a3
  terminationGracePeriodSeconds: 1
  containers: [{name: c, image: `+netImage+`, imagePullPolicy: Never}]
`)
		waitPhase(t, s, "hl-a", "Running", time.Minute)
		waitPhase(t, s, "hl-b", "Running", time.Minute)
		ips := []string{podIP(t, s, "hl-a"), podIP(t, s, "hl-b")}
		sort.Strings(ips)
		c.inPod(t, "headless Service: one A record per ready Pod", "cli2", is(strings.Join(ips, "\n")), "netcheck", "lookup", "hl.default.svc.cluster.local")
		c.inPod(t, "ExternalName Service is a CNAME", "cli2", is("ext.k1s-test.example."), "netcheck", "cname", "ext.default.svc.cluster.local")
		c.inPod(t, "a name outside the cluster is forwarded to the node's resolver", "cli2", is(upstreamAnswer), "netcheck", "lookup", "ext.k1s-test.example")
		svcIP, _ := s.Kubectl("get", "svc", "web3", "-o", "jsonpath={.spec.clusterIP}")
		c.inPod(t, "Service name resolves to its ClusterIP", "cli2", is(svcIP), "netcheck", "lookup", "web3")
		// NodeHosts: k1s keeps one line per node in CoreDNS's ConfigMap; the
		// kubelet refreshes the mounted copy within its sync period (~1 min).
		eventually(t, 30*time.Second, "NodeHosts lists every node", func() error {
			out, _ := s.Kubectl("-n", "kube-system", "get", "configmap", "coredns", "-o", "jsonpath={.data.NodeHosts}")
			for _, n := range []string{"s1", "a2", "a3"} {
				if !strings.Contains(out, c.hosts[n].IP+" "+n) {
					return fmt.Errorf("NodeHosts %q lacks %s", out, n)
				}
			}
			return nil
		})
		c.inPodWithin(t, 3*time.Minute, "node names resolve (NodeHosts)", "cli2", is(c.hosts["a3"].IP), "netcheck", "lookup", "a3")
	})

	t.Run("nodeport", func(t *testing.T) {
		apply(t, s, `apiVersion: v1
kind: Service
metadata: {name: np}
spec:
  type: NodePort
  selector: {app: web3}
  ports: [{port: 8080}]
`)
		port, _ := s.Kubectl("get", "svc", "np", "-o", "jsonpath={.spec.ports[0].nodePort}")
		// From the machine (outside every node) to a node without the Pod.
		eventually(t, time.Minute, "NodePort on a2 from the host", func() error {
			body, err := httpGet("http://" + net.JoinHostPort(c.hosts["a2"].IP, port) + "/")
			if err != nil || strings.TrimSpace(body) != "hello from srv3" {
				return fmt.Errorf("%q %v", body, err)
			}
			return nil
		})
		// From another node: s1's host network to a2's NodePort.
		eventually(t, time.Minute, "NodePort on a2 from node s1", func() error {
			out, err := c.hosts["s1"].Run(context.Background(), images.BusyboxPath, "wget", "-qO-", "http://"+net.JoinHostPort(c.hosts["a2"].IP, port)+"/")
			if err != nil || strings.TrimSpace(out) != "hello from srv3" {
				return fmt.Errorf("%q %v", out, err)
			}
			return nil
		})
	})

	t.Run("loadbalancer", func(t *testing.T) {
		apply(t, s, `apiVersion: v1
kind: Service
metadata: {name: lb}
spec:
  type: LoadBalancer
  selector: {app: web3}
  ports: [{port: 8081, targetPort: 8080}]
`)
		want := []string{c.hosts["a2"].IP, c.hosts["a3"].IP, c.hosts["s1"].IP}
		sort.Strings(want)
		eventually(t, time.Minute, "LoadBalancer ingress = the node IPs", func() error {
			out, _ := s.Kubectl("get", "svc", "lb", "-o", `jsonpath={range .status.loadBalancer.ingress[*]}{.ip} {end}`)
			got := strings.Fields(out)
			sort.Strings(got)
			if strings.Join(got, " ") != strings.Join(want, " ") {
				return fmt.Errorf("ingress %v, want %v", got, want)
			}
			return nil
		})
		for _, ip := range want {
			eventually(t, time.Minute, "LoadBalancer answers on "+ip, func() error {
				body, err := httpGet("http://" + net.JoinHostPort(ip, "8081") + "/")
				if err != nil || strings.TrimSpace(body) != "hello from srv3" {
					return fmt.Errorf("%q %v", body, err)
				}
				return nil
			})
		}
		// A second Service on the same port waits, and says why.
		apply(t, s, `apiVersion: v1
kind: Service
metadata: {name: lb-second}
spec:
  type: LoadBalancer
  selector: {app: web3}
  ports: [{port: 8081, targetPort: 8080}]
`)
		eventually(t, time.Minute, "event on the second LoadBalancer Service", func() error {
			out, _ := s.Kubectl("get", "events", "--field-selector", "involvedObject.name=lb-second,reason=PortInUse", "-o", "jsonpath={.items[*].message}")
			if !strings.Contains(out, "8081") || !strings.Contains(out, "default/lb") {
				return fmt.Errorf("events %q", out)
			}
			return nil
		})
		if out, _ := s.Kubectl("get", "svc", "lb-second", "-o", "jsonpath={.status.loadBalancer.ingress}"); out != "" {
			t.Errorf("the second Service on port 8081 got ingress %s, want none (Pending)", out)
		}
		// Freeing the port hands it over.
		if out, err := s.Kubectl("delete", "svc", "lb"); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		eventually(t, time.Minute, "the waiting Service gets the port", func() error {
			out, _ := s.Kubectl("get", "svc", "lb-second", "-o", `jsonpath={.status.loadBalancer.ingress[*].ip}`)
			if len(strings.Fields(out)) != 3 {
				return fmt.Errorf("ingress %q", out)
			}
			return nil
		})
	})

	t.Run("ingress", func(t *testing.T) { testIngress(t, c) })
	t.Run("session affinity", func(t *testing.T) { testAffinity(t, c) })
	t.Run("agent dies", func(t *testing.T) { testAgentDies(t, c) })
}

func testIngress(t *testing.T, c *cluster) {
	s := c.s
	certPEM, keyPEM := selfSigned(t, "k1s-test-secure", "secure.example")
	dir := t.TempDir()
	crt, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	_ = os.WriteFile(crt, certPEM, 0o600)
	_ = os.WriteFile(key, keyPEM, 0o600)
	if out, err := s.Kubectl("create", "secret", "tls", "secure-tls", "--cert", crt, "--key", key); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	apply(t, s, `apiVersion: v1
kind: Pod
metadata: {name: srv2, labels: {app: web2, tier: web}}
spec:
  nodeName: a2
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: `+netImage+`
    imagePullPolicy: Never
    command: ["sh", "-c", "mkdir -p /www/two && echo hello from $(hostname) > /www/index.html && cp /www/index.html /www/two/index.html && exec httpd -f -p 8080 -h /www"]
    readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 2}
---
apiVersion: v1
kind: Service
metadata: {name: web2}
spec:
  selector: {app: web2}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: routes}
spec:
  tls: [{hosts: [secure.example], secretName: secure-tls}]
  rules:
  - host: a.example
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: web3, port: {number: 8080}}}}]}
  - host: b.example
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: web2, port: {name: http}}}}]}
  - host: paths.example
    http:
      paths:
      - {path: /, pathType: Exact, backend: {service: {name: web3, port: {number: 8080}}}}
      - {path: /two, pathType: Prefix, backend: {service: {name: web2, port: {number: 80}}}}
  - host: secure.example
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: web2, port: {number: 80}}}}]}
`)
	waitPhase(t, s, "srv2", "Running", time.Minute)
	node := c.hosts["s1"].IP
	get := func(scheme, host, path string) (string, error) {
		tr := &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{ServerName: host, InsecureSkipVerify: true}}
		req, _ := http.NewRequest(http.MethodGet, scheme+"://"+node+path, nil)
		req.Host = host
		resp, err := (&http.Client{Timeout: 5 * time.Second, Transport: tr}).Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b := make([]byte, 4096)
		n, _ := resp.Body.Read(b)
		if resp.StatusCode != 200 {
			return "", fmt.Errorf("%s://%s%s: %s %s", scheme, host, path, resp.Status, b[:n])
		}
		return strings.TrimSpace(string(b[:n])), nil
	}
	for _, r := range []struct{ host, path, want string }{
		{"a.example", "/", "hello from srv3"},
		{"b.example", "/", "hello from srv2"},
		{"paths.example", "/", "hello from srv3"},
		{"paths.example", "/two/", "hello from srv2"},
	} {
		eventually(t, 2*time.Minute, "Ingress http://"+r.host+r.path, func() error {
			got, err := get("http", r.host, r.path)
			if err != nil {
				return err
			}
			return is(r.want)(got)
		})
	}
	// Exact means exact: /index.html is not "/".
	if got, err := get("http", "paths.example", "/index.html"); err == nil {
		t.Errorf("Exact path / also matched /index.html: %q", got)
	}
	eventually(t, time.Minute, "Ingress TLS with the Secret's certificate", func() error {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", net.JoinHostPort(node, "443"),
			&tls.Config{ServerName: "secure.example", InsecureSkipVerify: true})
		if err != nil {
			return err
		}
		defer conn.Close()
		if cn := conn.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "k1s-test-secure" {
			return fmt.Errorf("certificate subject CN %q, want k1s-test-secure", cn)
		}
		got, err := get("https", "secure.example", "/")
		if err != nil {
			return err
		}
		return is("hello from srv2")(got)
	})
	out, _ := s.Kubectl("get", "ingressclass", "-o", `jsonpath={range .items[*]}{.metadata.name} {.metadata.annotations.ingressclass\.kubernetes\.io/is-default-class}{end}`)
	if !strings.Contains(out, "true") {
		t.Errorf("no default IngressClass: %q", out)
	}
}

// testAffinity: over srv2 (a2) and srv3 (a3), a Service with
// sessionAffinity ClientIP keeps a client on one Pod; one without spreads.
func testAffinity(t *testing.T, c *cluster) {
	apply(t, c.s, `apiVersion: v1
kind: Service
metadata: {name: sticky}
spec:
  selector: {tier: web}
  sessionAffinity: ClientIP
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: spread}
spec:
  selector: {tier: web}
  ports: [{port: 80, targetPort: 8080}]
`)
	// A shell loop in the Pod: one exec instead of twenty.
	loop := func(svc string) map[string]int {
		var seen map[string]int
		c.inPod(t, "20 requests to "+svc, "cli2", func(out string) error {
			seen = map[string]int{}
			for _, l := range strings.Split(out, "\n") {
				if l = strings.TrimSpace(l); l != "" {
					seen[l]++
				}
			}
			if n := seen["hello from srv2"] + seen["hello from srv3"]; n != 20 {
				return fmt.Errorf("%d good answers of 20: %v", n, seen)
			}
			return nil
		}, "sh", "-c", "for i in $(seq 20); do netcheck get http://"+svc+"/ || echo failed; done")
		return seen
	}
	if seen := loop("sticky"); len(seen) != 1 {
		t.Errorf("sessionAffinity ClientIP: answers from %v, want one Pod", seen)
	}
	// Both Pods answer without affinity (each request has 1/2 odds per Pod).
	if seen := loop("spread"); len(seen) != 2 {
		t.Errorf("no affinity: answers from %v, want both Pods", seen)
	}
}

// testAgentDies kills agent a3's process and records how the cluster
// notices: NodeReady, the Pod's Ready condition, the Service's endpoints,
// and the Deployment's replacement Pod.
func testAgentDies(t *testing.T, c *cluster) {
	s := c.s
	apply(t, s, `apiVersion: apps/v1
kind: Deployment
metadata: {name: mover}
spec:
  replicas: 1
  selector: {matchLabels: {app: mover}}
  template:
    metadata: {labels: {app: mover}}
    spec:
      terminationGracePeriodSeconds: 1
      affinity:
        nodeAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
          - {weight: 100, preference: {matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [a3]}]}}
      containers: [{name: c, image: `+netImage+`, imagePullPolicy: Never}]
`)
	eventually(t, 2*time.Minute, "mover Running on a3", func() error {
		out, _ := s.Kubectl("get", "pods", "-l", "app=mover", "-o", `jsonpath={range .items[*]}{.spec.nodeName}={.status.phase} {end}`)
		if strings.TrimSpace(out) != "a3=Running" {
			return fmt.Errorf("pods %q", out)
		}
		return nil
	})
	epIP := podIP(t, s, "srv3")
	killed := time.Now()
	if err := syscall.Kill(c.agents["a3"].PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	since := func() time.Duration { return time.Since(killed).Round(time.Second) }
	var notReady, podUnready, epGone, replaced time.Duration
	eventually(t, 2*time.Minute, "node a3 not Ready", func() error {
		out, _ := s.Kubectl("get", "node", "a3", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		if out == "True" {
			return fmt.Errorf("still Ready")
		}
		notReady = since()
		return nil
	})
	eventually(t, time.Minute, "Pod srv3 not Ready", func() error {
		out, _ := s.Kubectl("get", "pod", "srv3", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		if out != "False" {
			return fmt.Errorf("Ready=%q", out)
		}
		podUnready = since()
		return nil
	})
	eventually(t, time.Minute, "srv3 out of web3's ready endpoints", func() error {
		out, _ := s.Kubectl("get", "endpointslices", "-l", "kubernetes.io/service-name=web3", "-o",
			`jsonpath={range .items[*].endpoints[?(@.conditions.ready==true)]}{.addresses[0]} {end}`)
		if strings.Contains(out, epIP) {
			return fmt.Errorf("ready endpoints %q", out)
		}
		epGone = since()
		return nil
	})
	eventually(t, 3*time.Minute, "mover recreated on another node", func() error {
		out, _ := s.Kubectl("get", "pods", "-l", "app=mover", "-o", `jsonpath={range .items[*]}{.spec.nodeName}={.status.phase} {end}`)
		for _, p := range strings.Fields(out) {
			if strings.HasSuffix(p, "=Running") && !strings.HasPrefix(p, "a3=") {
				replaced = since()
				return nil
			}
		}
		return fmt.Errorf("pods %q", out)
	})
	t.Logf("agent a3 killed: node NotReady after %s, its Pod's Ready=False after %s, out of the Service's endpoints after %s, Deployment Pod Running elsewhere after %s (node-monitor-grace-period 20s, not-ready/unreachable toleration 20s)",
		notReady, podUnready, epGone, replaced)
	if notReady > 60*time.Second {
		t.Errorf("node NotReady only after %s; node-monitor-grace-period is 20s", notReady)
	}
	// The Service no longer sends traffic to the dead node's Pod: with its
	// only backend gone, web3 answers nothing.
	if out, err := c.exec("cli2", "netcheck", "get", "http://web3:8080/"); err == nil {
		t.Errorf("web3 still answered after its only Pod's node died: %q", out)
	}
}

// upstreamAnswer is the address the test's DNS server gives ext.k1s-test.example.
const upstreamAnswer = "203.0.113.7"

// startUpstreamDNS answers A queries for ext.k1s-test.example on ip:53
// (UDP) and NXDOMAIN for everything else, until the test ends.
func startUpstreamDNS(t testing.TB, ip string) {
	t.Helper()
	pc, err := net.ListenPacket("udp4", net.JoinHostPort(ip, "53"))
	if err != nil {
		t.Fatalf("test DNS server: %v", err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var p dnsmessage.Parser
			h, err := p.Start(buf[:n])
			if err != nil {
				continue
			}
			q, err := p.Question()
			if err != nil {
				continue
			}
			rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired, RecursionAvailable: true}
			known := strings.EqualFold(q.Name.String(), "ext.k1s-test.example.")
			if !known {
				rh.RCode = dnsmessage.RCodeNameError
			}
			b := dnsmessage.NewBuilder(nil, rh)
			b.EnableCompression()
			_ = b.StartQuestions()
			_ = b.Question(q)
			_ = b.StartAnswers()
			if known && q.Type == dnsmessage.TypeA {
				var a [4]byte
				copy(a[:], net.ParseIP(upstreamAnswer).To4())
				_ = b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 30}, dnsmessage.AResource{A: a})
			}
			if msg, err := b.Finish(); err == nil {
				_, _ = pc.WriteTo(msg, addr)
			}
		}
	}()
}

// selfSigned makes a certificate for host with subject CN cn.
func selfSigned(t *testing.T, cn, host string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		DNSNames: []string{host}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}
