package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestInventoryDescribesEachCertificate(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	tls, node := t.TempDir(), t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	write := func(dir, name string, tmpl *x509.Certificate) {
		tmpl.SerialNumber = big.NewInt(int64(len(name)))
		tmpl.NotBefore = now.Add(-time.Hour)
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(tls, "server-ca.crt", &x509.Certificate{Subject: pkix.Name{CommonName: "ca"}, IsCA: true, BasicConstraintsValid: true, NotAfter: now.Add(3650 * 24 * time.Hour)})
	write(tls, "serving-kube-apiserver.crt", &x509.Certificate{Subject: pkix.Name{CommonName: "kube-apiserver"}, DNSNames: []string{"kubernetes"},
		IPAddresses: []net.IP{net.ParseIP("10.43.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, NotAfter: now.Add(365 * 24 * time.Hour)})
	write(node, "client-kubelet.crt", &x509.Certificate{Subject: pkix.Name{CommonName: "system:node:n1", Organization: []string{"system:nodes"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, NotAfter: now.Add(10*24*time.Hour + time.Hour)})
	if err := os.WriteFile(filepath.Join(node, "client-kubelet.key"), []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}

	got, err := Inventory(now, tls, node, filepath.Join(t.TempDir(), "missing"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("%d certificates, want 3: %+v", len(got), got)
	}
	byName := map[string]CertInfo{}
	for _, c := range got {
		byName[filepath.Base(c.Path)] = c
	}
	if c := byName["server-ca.crt"]; c.Kind != "ca" || c.DaysLeft != 3650 {
		t.Errorf("CA: %+v", c)
	}
	if c := byName["serving-kube-apiserver.crt"]; c.Kind != "serving" || !slices.Equal(c.SANs, []string{"kubernetes", "10.43.0.1"}) || c.DaysLeft != 365 {
		t.Errorf("serving: %+v", c)
	}
	if c := byName["client-kubelet.crt"]; c.Kind != "client" || c.Subject != "CN=system:node:n1,O=system:nodes" || c.DaysLeft != 10 {
		t.Errorf("client: %+v", c)
	}

	if err := os.WriteFile(filepath.Join(node, "broken.crt"), []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Inventory(now, node); err == nil {
		t.Error("a .crt without a certificate was not reported")
	}
}
