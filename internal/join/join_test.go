package join

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/k1s-io/k1s/internal/config"
	"github.com/k1s-io/k1s/internal/pki"
)

type fixture struct {
	joins atomic.Int32 // requests that reached the join endpoint
	res   *pki.Result
	tok   pki.Token
	url   string
	kube  *fake.Clientset
	js    *Server
}

// newFixture serves the join endpoints with the real PKI of a fresh server
// over TLS; every other path answers 418, to show it passed through.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	cfg := &config.Server{
		DataDir: t.TempDir(), AdvertiseAddress: "192.0.2.10", BindAddress: "127.0.0.1", HTTPSPort: 6443,
		Cluster:         config.Cluster{ServiceCIDR: "10.43.0.0/16", ClusterCIDR: "10.42.0.0/16", ClusterDNS: "10.43.0.10", ClusterDomain: "cluster.local"},
		WriteKubeconfig: filepath.Join(t.TempDir(), "k1s.yaml"), WriteKubeconfigMode: "0600",
	}
	res, err := pki.Ensure(cfg, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := pki.ParseToken(res.Token)
	if err != nil {
		t.Fatal(err)
	}
	kube := fake.NewSimpleClientset()
	log := logrus.New()
	log.SetOutput(io.Discard)
	js := &Server{PKI: res, Secret: tok.Secret, Log: log,
		Cluster: cfg.Cluster,
		Kube:    func() (kubernetes.Interface, error) { return kube, nil }}
	js.Open()
	f := &fixture{kube: kube, res: res, tok: tok, js: js}
	front := js.Front(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
	}))
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == JoinPath {
			f.joins.Add(1)
		}
		front.ServeHTTP(w, r)
	}))
	pair, err := tls.LoadX509KeyPair(res.Files.ServingCert(), res.Files.ServingKey())
	if err != nil {
		t.Fatal(err)
	}
	// As the apiserver: client certificates are requested, not verified.
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	f.url = "https://127.0.0.1:" + port
	return f
}

func (f *fixture) join(t *testing.T, tok pki.Token, name, password string) (*Response, error) {
	t.Helper()
	c := &Client{URL: f.url, Token: tok}
	return c.Join(context.Background(), Request{NodeName: name, NodeIP: "192.0.2.20", Password: password})
}

func parseCert(t *testing.T, data []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatal("no PEM block")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestJoinIssuesNodeCredentials(t *testing.T) {
	f := newFixture(t)
	resp, err := f.join(t, f.tok, "edge-1", strings.Repeat("a", 32))
	if err != nil {
		t.Fatalf("join: %v", err)
	}
	if resp.ClusterDNS != "10.43.0.10" || resp.ClusterCIDR != "10.42.0.0/16" || resp.ClusterDomain != "cluster.local" {
		t.Errorf("cluster settings: %+v", resp)
	}
	clientPool := x509.NewCertPool()
	clientPool.AddCert(f.res.ClientCA.Cert)
	kubelet := parseCert(t, resp.Certs.KubeletCert)
	if kubelet.Subject.CommonName != "system:node:edge-1" || len(kubelet.Subject.Organization) != 1 || kubelet.Subject.Organization[0] != "system:nodes" {
		t.Errorf("kubelet client subject = %v", kubelet.Subject)
	}
	if _, err := kubelet.Verify(x509.VerifyOptions{Roots: clientPool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("kubelet client cert not valid under the client CA: %v", err)
	}
	proxy := parseCert(t, resp.Certs.ProxyCert)
	if proxy.Subject.CommonName != "system:kube-proxy" {
		t.Errorf("kube-proxy subject = %v", proxy.Subject)
	}
	serving := parseCert(t, resp.Certs.ServingCert)
	servingPool := x509.NewCertPool()
	servingPool.AddCert(f.res.KubeletServingCA.Cert)
	if _, err := serving.Verify(x509.VerifyOptions{Roots: servingPool, DNSName: "edge-1"}); err != nil {
		t.Errorf("serving cert: %v", err)
	}
	// Only the apiserver trusts the kubelet-serving CA: under the server CA,
	// which clients and Pods trust, a node's certificate is worthless.
	serverPool := x509.NewCertPool()
	serverPool.AddCert(f.res.ServerCA.Cert)
	if _, err := serving.Verify(x509.VerifyOptions{Roots: serverPool, DNSName: "edge-1"}); err == nil {
		t.Errorf("a node's serving certificate is valid under the server CA")
	}
	if err := serving.VerifyHostname("192.0.2.20"); err != nil {
		t.Errorf("serving cert lacks the node IP: %v", err)
	}
	if _, err := tls.X509KeyPair(resp.Certs.KubeletCert, resp.Certs.KubeletKey); err != nil {
		t.Errorf("kubelet key does not match its certificate: %v", err)
	}
	if _, err := f.kube.CoreV1().Secrets("kube-system").Get(context.Background(), "edge-1.node-password.k1s", metav1.GetOptions{}); err != nil {
		t.Errorf("node password Secret: %v", err)
	}
	// The same host joins again (a restart).
	if _, err := f.join(t, f.tok, "edge-1", strings.Repeat("a", 32)); err != nil {
		t.Errorf("rejoin of the same host: %v", err)
	}
}

func TestJoinRefusesSecondHostWithSameName(t *testing.T) {
	f := newFixture(t)
	if _, err := f.join(t, f.tok, "edge-1", strings.Repeat("a", 32)); err != nil {
		t.Fatal(err)
	}
	_, err := f.join(t, f.tok, "edge-1", strings.Repeat("b", 32))
	if err == nil || !IsPermanent(err) || !strings.Contains(err.Error(), "already registered by another host") {
		t.Fatalf("second host with the same name: err = %v", err)
	}
}

func TestJoinRefusesWrongToken(t *testing.T) {
	f := newFixture(t)
	bad := f.tok
	bad.Secret = "not-the-secret"
	_, err := f.join(t, bad, "edge-1", strings.Repeat("a", 32))
	if err == nil || !IsPermanent(err) || !strings.Contains(err.Error(), "refused the token") {
		t.Fatalf("wrong token: err = %v", err)
	}
	if l, _ := f.kube.CoreV1().Secrets("kube-system").List(context.Background(), metav1.ListOptions{}); len(l.Items) != 0 {
		t.Errorf("a refused join left %d Secrets", len(l.Items))
	}
}

func TestJoinRefusesCAMismatch(t *testing.T) {
	f := newFixture(t)
	other := f.tok
	other.CAHash = strings.Repeat("0", 64)
	_, err := f.join(t, other, "edge-1", strings.Repeat("a", 32))
	if err == nil || !IsPermanent(err) || !strings.Contains(err.Error(), "does not match the token") {
		t.Fatalf("CA mismatch: err = %v", err)
	}
	if n := f.joins.Load(); n != 0 {
		t.Errorf("the token's secret was sent to an untrusted server (%d join requests)", n)
	}
}

func TestFrontPassesOtherPathsThrough(t *testing.T) {
	f := newFixture(t)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := hc.Get(f.url + "/api/v1/nodes")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTeapot {
		t.Errorf("/api/v1/nodes answered %d, want the apiserver's handler (418)", resp.StatusCode)
	}
	resp, err = hc.Get(f.url + CACertsPath)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if pki.CAHash(body) != f.tok.CAHash {
		t.Errorf("/cacerts does not hash to the token's CA hash")
	}
}

func TestDeletedNodeFreesItsName(t *testing.T) {
	kube := fake.NewSimpleClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "edge-1"}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := ClaimNodeName(ctx, kube, "edge-1", strings.Repeat("a", 32)); err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	done := make(chan error, 1)
	go func() { done <- ReleaseDeletedNodeNames(ctx, kube, log) }()
	// Give the informer time to list the Node before it is deleted.
	time.Sleep(500 * time.Millisecond)
	if err := kube.CoreV1().Nodes().Delete(ctx, "edge-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := kube.CoreV1().Secrets("kube-system").Get(ctx, "edge-1.node-password.k1s", metav1.GetOptions{})
		if err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the password Secret of a deleted Node is still there")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := ClaimNodeName(ctx, kube, "edge-1", strings.Repeat("b", 32)); err != nil {
		t.Fatalf("another host cannot take the freed name: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
