package pki

import (
	"bytes"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRotateCAs(t *testing.T) {
	cfg := testConfig(t)
	before := mustEnsure(t, cfg, t0)
	nodeDir := filepath.Join(cfg.DataDir, "agent", "pki")
	if _, err := EnsureNode(before, nodeDir, "n1", "192.0.2.7", "https://127.0.0.1:6443", t0); err != nil {
		t.Fatal(err)
	}
	f := before.Files
	saKey, _ := os.ReadFile(f.ServiceAccountKey())
	oldCA, _ := os.ReadFile(f.ServerCA())
	oldTok, _ := os.ReadFile(cfg.TokenPath())
	later := t0.Add(time.Hour)

	r, err := RotateCAs(f.Dir, cfg.TokenPath(), later)
	if err != nil {
		t.Fatal(err)
	}
	if r.OldHash != CAHash(oldCA) || r.NewHash == r.OldHash {
		t.Errorf("hashes: old %s (want %s), new %s", r.OldHash, CAHash(oldCA), r.NewHash)
	}
	newCA, _ := os.ReadFile(f.ServerCA())
	if CAHash(newCA) != r.NewHash {
		t.Errorf("server-ca.crt hash %s, want the reported %s", CAHash(newCA), r.NewHash)
	}
	// Same secret, new hash, in the token file.
	oldSecret := strings.TrimSpace(string(oldTok))[strings.LastIndex(strings.TrimSpace(string(oldTok)), ":")+1:]
	if tok, _ := os.ReadFile(cfg.TokenPath()); strings.TrimSpace(string(tok)) != r.Token || r.Token != "K10"+r.NewHash+"::server:"+oldSecret {
		t.Errorf("token file %q, reported %q; want K10<new hash>::server:<the old secret>", tok, r.Token)
	}
	// The backup holds the old CA and token; ServiceAccount signing key kept.
	for name, want := range map[string][]byte{"server-ca.crt": oldCA, "token": oldTok, "service.key": saKey} {
		if got, err := os.ReadFile(filepath.Join(r.BackupDir, name)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("backup %s: %v, differs from the original", name, err)
		}
	}
	if got, _ := os.ReadFile(f.ServiceAccountKey()); !bytes.Equal(got, saKey) {
		t.Error("service.key changed: every Pod's ServiceAccount token would break")
	}
	for _, name := range []string{"serving-kube-apiserver.crt", "client-admin.crt"} {
		if _, err := os.Stat(filepath.Join(f.Dir, name)); err == nil {
			t.Errorf("%s signed by the old CA is still there", name)
		}
	}

	// The next start issues every leaf from the new CAs, its node's too.
	after := mustEnsure(t, cfg, later)
	if after.Token != r.Token {
		t.Errorf("Ensure after the rotation: token %q, want %q", after.Token, r.Token)
	}
	roots := func(ca *CA) *x509.CertPool { p := x509.NewCertPool(); p.AddCert(ca.Cert); return p }
	for path, ca := range map[string]*CA{f.ServingCert(): after.ServerCA, f.AdminCert(): after.ClientCA} {
		if _, err := readCert(t, path).Verify(x509.VerifyOptions{Roots: roots(ca), CurrentTime: later, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Errorf("%s does not verify against the new CA: %v", path, err)
		}
	}
	events, err := EnsureNode(after, nodeDir, "n1", "192.0.2.7", "https://127.0.0.1:6443", later)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 5 {
		t.Errorf("node events %+v, want its 5 certificates renewed", events)
	}
	for name, ca := range map[string]*CA{"client-kubelet.crt": after.ClientCA, "serving-kubelet.crt": after.KubeletServingCA} {
		if _, err := readCert(t, filepath.Join(nodeDir, name)).Verify(x509.VerifyOptions{Roots: roots(ca), CurrentTime: later, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Errorf("node %s does not verify against the new CA: %v", name, err)
		}
	}
	if got, _ := os.ReadFile(filepath.Join(nodeDir, "server-ca.crt")); CAHash(got) != r.NewHash {
		t.Error("the node's server-ca.crt is not the new CA")
	}

	// Not a server's data dir.
	if _, err := RotateCAs(t.TempDir(), cfg.TokenPath(), later); err == nil || !strings.Contains(err.Error(), "is --data-dir a k1s server's data dir") {
		t.Errorf("RotateCAs on an empty dir: %v", err)
	}
}
