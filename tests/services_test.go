package tests

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestServices: kube-proxy in both modes k1s supports makes a ClusterIP
// and a NodePort answer from the host, a Pod reaches itself through its
// own Service, a hostPort answers on the node IP, and a deleted Service
// stops answering.
func TestServices(t *testing.T) {
	for _, mode := range []string{"iptables", "nftables"} {
		t.Run(mode, func(t *testing.T) { testServices(t, mode) })
	}
}

// httpGet opens a new connection each time: a kept-alive one could outlive
// the rules being tested (and on some networks a gateway answers for any
// address, so a connection made before kube-proxy's rules would stick).
func httpGet(url string) (string, error) {
	c := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", url, resp.Status)
	}
	return string(b), nil
}

func testServices(t *testing.T, mode string) {
	s := startNode(t, "--kube-proxy-arg=proxy-mode="+mode)
	t.Cleanup(func() {
		if t.Failed() { // kube-proxy's own account of its rules
			for _, l := range strings.Split(s.ComponentLog(), "\n") {
				if strings.Contains(l, "proxier.go") || strings.Contains(l, "kube-proxy") {
					t.Log(l)
				}
			}
		}
	})
	if mode == "nftables" {
		out, err := execOut("nft", "list", "tables")
		if err != nil || !strings.Contains(out, "kube-proxy") {
			t.Fatalf("kube-proxy made no nftables table in nftables mode: %q %v", out, err)
		}
	}
	apply(t, s, `apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: `+busybox+`
    imagePullPolicy: Never
    command: ["sh", "-c", "mkdir -p /www && echo hello from $(hostname) > /www/index.html && exec httpd -f -p 8080 -h /www"]
    ports: [{containerPort: 8080, hostPort: 18080}]
    readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-np}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
`)
	waitFor(t, s, 2*time.Minute, "web Ready", []string{"pod", "web", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`}, equals("True"))
	clusterIP := get(t, s, "svc", "web", "-o", "jsonpath={.spec.clusterIP}")
	nodePort := get(t, s, "svc", "web-np", "-o", "jsonpath={.spec.ports[0].nodePort}")
	nodeIP := get(t, s, "nodes", "-o", `jsonpath={.items[0].status.addresses[?(@.type=="InternalIP")].address}`)

	for _, c := range []struct{ what, url string }{
		{"ClusterIP from the host", "http://" + net.JoinHostPort(clusterIP, "80") + "/"},
		{"NodePort on the node IP", "http://" + net.JoinHostPort(nodeIP, nodePort) + "/"},
		{"hostPort on the node IP", "http://" + net.JoinHostPort(nodeIP, "18080") + "/"},
	} {
		eventually(t, 30*time.Second, c.what, func() error {
			body, err := httpGet(c.url)
			if err != nil {
				return err
			}
			if strings.TrimSpace(body) != "hello from web" {
				return fmt.Errorf("%s answered %q", c.url, body)
			}
			return nil
		})
	}
	// A Pod reaching itself through its Service needs hairpin traffic on
	// the bridge to pass through kube-proxy's rules.
	out, err := s.Kubectl("exec", "web", "--", "wget", "-q", "-O-", "http://"+clusterIP+"/")
	if err != nil || strings.TrimSpace(out) != "hello from web" {
		t.Errorf("Pod to its own Service: %q %v", out, err)
	}

	if out, err := s.Kubectl("delete", "svc", "web"); err != nil {
		t.Fatalf("delete svc: %v %s", err, out)
	}
	eventually(t, 30*time.Second, "the deleted Service stops answering", func() error {
		if _, err := httpGet("http://" + net.JoinHostPort(clusterIP, "80") + "/"); err == nil {
			return fmt.Errorf("%s still answers", clusterIP)
		}
		return nil
	})
}
