package tests

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/k1s-io/k1s/tests/harness"
)

// checkIntervalEnv shortens how often a running k1s checks its
// certificates (k1s's test-only setting, pki.CheckIntervalEnv).
const checkIntervalEnv = "K1S_TEST_CERT_CHECK_INTERVAL"

// TestCertificateRenewalWhileRunning: leaf certificates that near expiry
// are renewed by the running server (its own and its node's), the new
// apiserver certificate is served without a restart, and the node stays
// Ready with its kubelet still renewing its lease. `k1s certificate
// rotate --service serving-kubelet` replaces only that file, and the
// kubelet serves the new certificate; an unknown name is refused with
// the valid ones listed.
func TestCertificateRenewalWhileRunning(t *testing.T) {
	s := newNodeServer(t)
	s.Prefix = []string{"env", checkIntervalEnv + "=3s"}
	startExisting(t, s)
	if err := s.WaitLog("k1s is ready", 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	node, err := s.Kubectl("get", "nodes", "-o", "jsonpath={.items[0].metadata.name}")
	if err != nil || node == "" {
		t.Fatalf("node name: %q %v", node, err)
	}
	tlsDir := filepath.Join(s.DataDir, "server", "tls")
	pkiDir := filepath.Join(s.DataDir, "agent", "pki")
	apiserver := net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
	original := readCertFile(t, filepath.Join(tlsDir, "serving-kube-apiserver.crt"))
	if got := servedCert(t, apiserver); !got.Equal(original) {
		t.Fatalf("the apiserver serves serial %v, the file holds %v", got.SerialNumber, original.SerialNumber)
	}

	// Two leaves with 9 days left, signed by their CAs with their own keys,
	// as they would be 356 days after they were issued.
	forced := map[string]*x509.Certificate{
		filepath.Join(tlsDir, "serving-kube-apiserver.crt"): shortLived(t, filepath.Join(tlsDir, "serving-kube-apiserver.crt"), filepath.Join(tlsDir, "server-ca")),
		filepath.Join(pkiDir, "client-kubelet.crt"):         shortLived(t, filepath.Join(pkiDir, "client-kubelet.crt"), filepath.Join(tlsDir, "client-ca")),
	}
	renewedAt := time.Now()
	for path, short := range forced {
		eventually(t, time.Minute, "renewal of "+filepath.Base(path), func() error {
			c := readCertFile(t, path)
			if c.Equal(short) || time.Until(c.NotAfter) < 300*24*time.Hour {
				return fmt.Errorf("%s still expires %s", path, c.NotAfter)
			}
			return nil
		})
		name := strings.TrimSuffix(filepath.Base(path), ".crt")
		mustContain(t, s.Log(), "certificate "+name+" renewed (expires in 9 days)", "k1s log")
	}
	renewed := readCertFile(t, filepath.Join(tlsDir, "serving-kube-apiserver.crt"))
	if renewed.Equal(original) {
		t.Fatal("the apiserver's certificate file was not replaced")
	}
	eventually(t, 2*time.Minute, "the apiserver serving the renewed certificate", func() error {
		if got := servedCert(t, apiserver); !got.Equal(renewed) {
			return fmt.Errorf("served serial %v, want the renewed %v", got.SerialNumber, renewed.SerialNumber)
		}
		return nil
	})
	eventually(t, time.Minute, "node "+node+" Ready and its lease renewed after the renewal", func() error {
		return readyWithLeaseAfter(s, node, renewedAt)
	})

	t.Run("rotate one", func(t *testing.T) {
		kubelet := "127.0.0.1:10250"
		servingFile := filepath.Join(pkiDir, "serving-kubelet.crt")
		before := keyAndCertFiles(t, tlsDir, pkiDir)
		old := readCertFile(t, servingFile)
		code, out, err := harness.Run(30*time.Second, "certificate", "rotate", "--service", "serving-kubelet", "--data-dir", s.DataDir)
		if err != nil || code != 0 {
			t.Fatalf("certificate rotate --service serving-kubelet: exit %d %v\n%s", code, err, out)
		}
		mustContain(t, out, "renewed "+servingFile, "rotate output")
		after := keyAndCertFiles(t, tlsDir, pkiDir)
		var changed []string
		for p, b := range after {
			if !bytes.Equal(before[p], b) {
				changed = append(changed, p)
			}
		}
		if len(changed) != 1 || changed[0] != servingFile || len(after) != len(before) {
			t.Fatalf("rotate changed %v, want only %s", changed, servingFile)
		}
		now := readCertFile(t, servingFile)
		if now.Equal(old) || now.Subject.CommonName != old.Subject.CommonName {
			t.Fatalf("serving-kubelet after rotate: %s serial %v (before %v)", now.Subject, now.SerialNumber, old.SerialNumber)
		}
		eventually(t, 2*time.Minute, "the kubelet serving the rotated certificate", func() error {
			if got := servedCert(t, kubelet); !got.Equal(now) {
				return fmt.Errorf("kubelet serves serial %v, want %v", got.SerialNumber, now.SerialNumber)
			}
			return nil
		})
		if err := nodeReady(s, node); err != nil {
			t.Error(err)
		}

		code, out, err = harness.Run(30*time.Second, "certificate", "rotate", "--service", "kubelet", "--data-dir", s.DataDir)
		if err != nil || code == 0 {
			t.Fatalf("certificate rotate --service kubelet: exit %d %v, want a failure\n%s", code, err, out)
		}
		mustContain(t, out, `unknown --service "kubelet": valid names are client-admin, client-auth-proxy, client-flannel`, "rotate output")
		if again := keyAndCertFiles(t, tlsDir, pkiDir); !sameFiles(after, again) {
			t.Error("a refused rotate changed files")
		}
	})
}

// TestAgentCertificateRenewal: an agent (in a lab host) renews a node
// certificate forced near expiry through the join endpoint, with its node
// certificate, while running: its kubelet serves the new certificate and
// the node stays Ready. `k1s certificate rotate --service client-flannel`
// on the agent's data dir replaces that pair only.
func TestAgentCertificateRenewal(t *testing.T) {
	lab := harness.NewLab(t)
	h := lab.AddHost(t, "agent1")
	s := startNode(t, "--tls-san", lab.GatewayIP)
	a := startAgent(t, s, lab, h)
	// Again with the short check interval (the harness passes no K1S_*).
	if err := a.Stop(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	a.Prefix = append(h.NetPrefix(), "env", checkIntervalEnv+"=3s")
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	if err := a.WaitLog("k1s agent is ready", 3*time.Minute); err != nil {
		t.Fatalf("%v\n%s", err, a.Tail(30))
	}
	tlsDir := filepath.Join(s.DataDir, "server", "tls")
	pkiDir := filepath.Join(a.DataDir, "agent", "pki")
	serving := filepath.Join(pkiDir, "serving-kubelet.crt")
	kubelet := net.JoinHostPort(h.IP, "10250")
	renewedAt := time.Now()
	short := shortLived(t, serving, filepath.Join(tlsDir, "kubelet-serving-ca"))
	var renewed *x509.Certificate
	eventually(t, time.Minute, "renewal of the agent's serving-kubelet", func() error {
		renewed = readCertFile(t, serving)
		if renewed.Equal(short) || time.Until(renewed.NotAfter) < 300*24*time.Hour {
			return fmt.Errorf("still expires %s", renewed.NotAfter)
		}
		return nil
	})
	// The line follows the file write: poll, or a quick check misses it.
	const line = "certificate serving-kubelet renewed (expires in 9 days, from the server with its node certificate)"
	eventually(t, 30*time.Second, "the agent's log saying "+line, func() error {
		if !strings.Contains(a.Log(), line) {
			return fmt.Errorf("not in the agent's log yet")
		}
		return nil
	})
	eventually(t, 2*time.Minute, "the agent's kubelet serving the renewed certificate", func() error {
		if got := servedCert(t, kubelet); !got.Equal(renewed) {
			return fmt.Errorf("kubelet serves serial %v, want %v", got.SerialNumber, renewed.SerialNumber)
		}
		return nil
	})
	eventually(t, time.Minute, "node "+h.Name+" Ready with its lease renewed after the renewal", func() error {
		return readyWithLeaseAfter(s, h.Name, renewedAt)
	})

	before := keyAndCertFiles(t, pkiDir)
	code, out, err := harness.Run(60*time.Second, "certificate", "rotate", "--service", "client-flannel", "--data-dir", a.DataDir)
	if err != nil || code != 0 {
		t.Fatalf("certificate rotate on the agent: exit %d %v\n%s", code, err, out)
	}
	after := keyAndCertFiles(t, pkiDir)
	var changed []string
	for p, b := range after {
		if !bytes.Equal(before[p], b) {
			changed = append(changed, filepath.Base(p))
		}
	}
	slices.Sort(changed)
	if !slices.Equal(changed, []string{"client-flannel.crt", "client-flannel.key"}) || len(after) != len(before) {
		t.Errorf("rotate on the agent changed %v, want only the client-flannel pair", changed)
	}
	if err := nodeReady(s, h.Name); err != nil {
		t.Error(err)
	}
}

// readyWithLeaseAfter: node is Ready and its kubelet renewed its lease
// after at.
func readyWithLeaseAfter(s *harness.Server, node string, at time.Time) error {
	if err := nodeReady(s, node); err != nil {
		return err
	}
	out, err := s.Kubectl("get", "lease", "-n", "kube-node-lease", node, "-o", "jsonpath={.spec.renewTime}")
	if err != nil {
		return err
	}
	renew, err := time.Parse(time.RFC3339Nano, out)
	if err != nil {
		return err
	}
	if !renew.After(at) {
		return fmt.Errorf("lease renewed last at %s, not after %s", renew, at)
	}
	return nil
}

func readCertFile(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s holds no PEM", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

// servedCert is the certificate a TLS server at addr presents.
func servedCert(t *testing.T, addr string) *x509.Certificate {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // only reads the certificate
	if err != nil {
		t.Fatalf("TLS handshake with %s: %v", addr, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

// shortLived replaces the certificate at path with one like it (subject,
// names, usages, key) that expires in 9 days, signed by the CA whose
// files are ca.crt and ca.key; it returns the new certificate.
func shortLived(t *testing.T, path, ca string) *x509.Certificate {
	t.Helper()
	old := readCertFile(t, path)
	caCert := readCertFile(t, ca+".crt")
	keyPEM, err := os.ReadFile(ca + ".key")
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		t.Fatalf("%s.key holds no PEM", ca)
	}
	caKey, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil {
		t.Fatalf("%s.key: %v", ca, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      old.Subject, DNSNames: old.DNSNames, IPAddresses: old.IPAddresses,
		NotBefore: time.Now().Add(-356 * 24 * time.Hour), NotAfter: time.Now().Add(9*24*time.Hour + time.Hour),
		KeyUsage: old.KeyUsage, ExtKeyUsage: old.ExtKeyUsage,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, old.PublicKey, crypto.Signer(caKey))
	if err != nil {
		t.Fatal(err)
	}
	tmp := path + ".test-tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

// keyAndCertFiles maps every .crt and .key file in dirs to its content.
func keyAndCertFiles(t *testing.T, dirs ...string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, d := range dirs {
		for _, ext := range []string{"*.crt", "*.key"} {
			paths, err := filepath.Glob(filepath.Join(d, ext))
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range paths {
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				out[p] = b
			}
		}
	}
	return out
}

func sameFiles(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for p, v := range a {
		if !bytes.Equal(v, b[p]) {
			return false
		}
	}
	return true
}
