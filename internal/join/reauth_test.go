package join

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io/fs"
	"math/big"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/k1s-io/k1s/internal/pki"
)

var (
	passA = strings.Repeat("a", 32)
	passB = strings.Repeat("b", 32)
)

// joined joins node with the token and writes its credentials as an agent
// does; it returns their dir.
func (f *fixture) joined(t *testing.T, node, password string) string {
	t.Helper()
	resp, err := f.join(t, f.tok, node, password)
	if err != nil {
		t.Fatalf("join %s: %v", node, err)
	}
	dir := t.TempDir()
	if err := pki.WriteNode(dir, &resp.Certs, f.url); err != nil {
		t.Fatal(err)
	}
	return dir
}

func (f *fixture) rejoin(id *Identity, node, password string) (*Response, error) {
	c := &Client{URL: f.url, Token: f.tok}
	return c.Rejoin(context.Background(), Request{NodeName: node, NodeIP: "192.0.2.20", Password: password}, id)
}

// forged is a client certificate for cn signed by ca (a fresh CA if nil).
func forged(t *testing.T, ca *pki.CA, cn string, orgs []string, notAfter time.Time) tls.Certificate {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	if ca == nil {
		k := newKey()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "k1s-client-ca"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		ca = &pki.CA{Cert: c, Key: k}
	}
	k := newKey()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn, Organization: orgs},
		NotBefore: notAfter.Add(-48 * time.Hour), NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, k.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
}

// A joined node re-authenticates with its certificate and password after
// the server token changed, and gets fresh certificates for itself.
func TestRejoinWithNodeCertificate(t *testing.T) {
	f := newFixture(t)
	dir := f.joined(t, "edge-1", passA)
	id, err := LoadIdentity(dir, "edge-1", f.tok, time.Now())
	if err != nil {
		t.Fatalf("LoadIdentity: %v", err)
	}
	old, _ := x509.ParseCertificate(id.Cert.Certificate[0])
	f.js.Secret = "rotated-secret-0123456789" // as after `k1s token rotate`
	if _, err := f.join(t, f.tok, "edge-1", passA); err == nil || !strings.Contains(err.Error(), "refused the token") {
		t.Fatalf("the old token after the rotation: %v, want a refusal", err)
	}
	resp, err := f.rejoin(id, "edge-1", passA)
	if err != nil {
		t.Fatalf("rejoin with the node certificate: %v", err)
	}
	kubelet := parseCert(t, resp.Certs.KubeletCert)
	if kubelet.Subject.CommonName != "system:node:edge-1" {
		t.Errorf("re-issued kubelet certificate is %q's", kubelet.Subject.CommonName)
	}
	if kubelet.SerialNumber.Cmp(old.SerialNumber) == 0 {
		t.Errorf("re-auth did not issue a fresh certificate (serial %v again)", old.SerialNumber)
	}
	if left := time.Until(kubelet.NotAfter); left < pki.LeafValidity-2*time.Hour {
		t.Errorf("re-issued kubelet certificate has only %s left", left)
	}
	if resp.ClusterDNS != "10.43.0.10" {
		t.Errorf("cluster settings missing: %+v", resp.Cluster)
	}
}

// The server's decision on a request made with a client certificate.
func TestRejoinRefusals(t *testing.T) {
	f := newFixture(t)
	dir := f.joined(t, "edge-1", passA)
	f.joined(t, "edge-3", passB)
	id, err := LoadIdentity(dir, "edge-1", f.tok, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	withCert := func(c tls.Certificate) *Identity { return &Identity{Node: "edge-1", Cert: c, ServerCA: id.ServerCA} }
	resp, err := f.join(t, f.tok, "edge-1", passA)
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := tls.X509KeyPair(resp.Certs.ProxyCert, resp.Certs.ProxyKey)
	if err != nil {
		t.Fatal(err)
	}
	nodes := []string{"system:nodes"}
	for _, c := range []struct {
		name, node, password string
		id                   *Identity
		want                 string
		unknown              bool
	}{
		{"other node", "edge-3", passB, id, `the client certificate is node "edge-1"'s: it cannot join as node "edge-3"`, false},
		{"new node", "edge-9", passA, id, `it cannot join as node "edge-9"`, false},
		{"wrong password", "edge-1", passB, id, `wrong node password for node "edge-1"`, false},
		{"unknown CA", "edge-1", passA, withCert(forged(t, nil, "system:node:edge-1", nodes, time.Now().Add(time.Hour))), "not valid here (x509: certificate signed by unknown authority", false},
		{"expired", "edge-1", passA, withCert(forged(t, f.res.ClientCA, "system:node:edge-1", nodes, time.Now().Add(-time.Minute))), "not valid here (x509: certificate has expired", false},
		{"not a node's", "edge-1", passA, withCert(proxy), `client certificate "system:kube-proxy" is not a node's`, false},
		{"node name without the group", "edge-1", passA, withCert(forged(t, f.res.ClientCA, "system:node:edge-1", nil, time.Now().Add(time.Hour))), "is not a node's", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			f.js.limiter().sources = map[string]*source{} // each case on its own
			_, err := f.rejoin(c.id, c.node, c.password)
			var refused *CertRefused
			if !errors.As(err, &refused) || refused.Unknown != c.unknown || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want a refusal of the certificate with %q", err, c.want)
			}
			if f.js.limiter().sources["127.0.0.1"].failures != 1 {
				t.Errorf("the refusal did not count toward the throttle")
			}
		})
	}
	// Nothing was claimed for another name on the way.
	if _, err := f.kube.CoreV1().Secrets("kube-system").Get(context.Background(), passwordSecretName("edge-9"), metav1.GetOptions{}); err == nil {
		t.Errorf("a refused re-auth claimed edge-9")
	}

	t.Run("node deleted", func(t *testing.T) {
		f.js.limiter().sources = map[string]*source{}
		if err := f.kube.CoreV1().Secrets("kube-system").Delete(context.Background(), passwordSecretName("edge-1"), metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		_, err := f.rejoin(id, "edge-1", passA)
		var refused *CertRefused
		if !errors.As(err, &refused) || !refused.Unknown || !strings.Contains(err.Error(), `node "edge-1" is not registered`) {
			t.Fatalf("got %v, want 'unknown node'", err)
		}
		if s := f.js.limiter().sources["127.0.0.1"]; s == nil || s.failures != 0 {
			t.Errorf("an unknown node with a valid certificate counted as a guess: %+v", s)
		}
		if _, err := f.kube.CoreV1().Secrets("kube-system").Get(context.Background(), passwordSecretName("edge-1"), metav1.GetOptions{}); err == nil {
			t.Errorf("re-auth re-created the deleted node's password Secret")
		}
	})
}

// Wrong passwords with a node certificate throttle the source like wrong
// tokens do.
func TestRejoinThrottled(t *testing.T) {
	f := newFixture(t)
	dir := f.joined(t, "edge-1", passA)
	id, err := LoadIdentity(dir, "edge-1", f.tok, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for i := range maxFailures {
		if _, err := f.rejoin(id, "edge-1", passB); !strings.Contains(fmtErr(err), "wrong node password") {
			t.Fatalf("attempt %d: %v", i+1, err)
		}
	}
	_, err = f.rejoin(id, "edge-1", passA)
	if WaitHint(err) == 0 || !strings.Contains(fmtErr(err), "too many failed joins") {
		t.Fatalf("right password while throttled: %v, want 429", err)
	}
	if _, err := f.join(t, f.tok, "edge-1", passA); WaitHint(err) == 0 {
		t.Fatalf("token while throttled: %v, want 429", err)
	}
}

func fmtErr(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// The agent uses its certificate only when it is this node's, unexpired,
// and from the cluster the token pins.
func TestLoadIdentity(t *testing.T) {
	f := newFixture(t)
	if _, err := LoadIdentity(t.TempDir(), "edge-1", f.tok, time.Now()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("never joined: %v, want not-exist", err)
	}
	dir := f.joined(t, "edge-1", passA)
	if _, err := LoadIdentity(dir, "edge-1", f.tok, time.Now()); err != nil {
		t.Fatalf("joined: %v", err)
	}
	if _, err := LoadIdentity(dir, "edge-1", pki.Token{Secret: "bare"}, time.Now()); err != nil {
		t.Errorf("a token without a CA hash: %v", err)
	}
	other := f.tok
	other.CAHash = strings.Repeat("0", 64)
	for _, c := range []struct {
		name, node string
		tok        pki.Token
		now        time.Time
		want       string
	}{
		{"renamed", "edge-2", f.tok, time.Now(), `is "system:node:edge-1"'s, not node "edge-2"'s`},
		{"expired", "edge-1", f.tok, time.Now().Add(pki.LeafValidity + time.Hour), "expired"},
		{"another cluster", "edge-1", other, time.Now(), "not the CA the token pins"},
	} {
		if _, err := LoadIdentity(dir, c.node, c.tok, c.now); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}
