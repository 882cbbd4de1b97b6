package etcd

import (
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"

	"github.com/k1s-io/k1s/internal/config"
	"github.com/k1s-io/k1s/internal/pki"
)

func testConfig(t *testing.T) *config.Server {
	return &config.Server{DataDir: t.TempDir(), AdvertiseAddress: "192.0.2.7"}
}

func TestMemberConfigNewCluster(t *testing.T) {
	cfg := testConfig(t)
	ec, err := MemberConfig(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ec.Dir != filepath.Join(cfg.DataDir, "server", "db", "etcd") {
		t.Errorf("Dir = %s", ec.Dir)
	}
	if len(ec.ListenClientUrls) != 1 || ec.ListenClientUrls[0].String() != "https://127.0.0.1:2379" || ec.AdvertiseClientUrls[0].String() != "https://127.0.0.1:2379" {
		t.Errorf("client URLs %v %v, want https://127.0.0.1:2379 only", ec.ListenClientUrls, ec.AdvertiseClientUrls)
	}
	if len(ec.ListenPeerUrls) != 1 || ec.ListenPeerUrls[0].String() != "https://192.0.2.7:2380" || ec.AdvertisePeerUrls[0].String() != "https://192.0.2.7:2380" {
		t.Errorf("peer URLs %v %v, want https://192.0.2.7:2380", ec.ListenPeerUrls, ec.AdvertisePeerUrls)
	}
	if !strings.HasSuffix(ec.Name, "-192.0.2.7") {
		t.Errorf("Name %q does not end in the advertise address", ec.Name)
	}
	if ec.ClusterState != embed.ClusterStateFlagNew || ec.InitialCluster != ec.Name+"=https://192.0.2.7:2380" {
		t.Errorf("new cluster: state %s, initial cluster %q", ec.ClusterState, ec.InitialCluster)
	}
	tlsDir := filepath.Join(cfg.DataDir, "server", "tls", "etcd")
	c, p := ec.ClientTLSInfo, ec.PeerTLSInfo
	if !c.ClientCertAuth || !p.ClientCertAuth {
		t.Error("client certificates are not required on both sides")
	}
	for got, want := range map[string]string{
		c.TrustedCAFile: "server-ca.crt", c.CertFile: "serving.crt", c.KeyFile: "serving.key",
		p.TrustedCAFile: "peer-ca.crt", p.CertFile: "peer.crt", p.KeyFile: "peer.key",
	} {
		if got != filepath.Join(tlsDir, want) {
			t.Errorf("TLS file %s, want %s in %s", got, want, tlsDir)
		}
	}
	if err := ec.Validate(); err != nil {
		t.Errorf("etcd rejects the config: %v", err)
	}
}

// TestMemberConfigClusterReset: --cluster-reset forces a new cluster once;
// after the marker is written, not again.
func TestMemberConfigClusterReset(t *testing.T) {
	cfg := testConfig(t)
	if ec, _ := MemberConfig(cfg, nil); ec.ForceNewCluster {
		t.Error("ForceNewCluster without --cluster-reset")
	}
	cfg.Snapshots.ClusterReset = true
	if ec, _ := MemberConfig(cfg, nil); !ec.ForceNewCluster {
		t.Error("no ForceNewCluster with --cluster-reset")
	}
	if err := os.MkdirAll(cfg.EtcdDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(resetMarker(cfg), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if ec, _ := MemberConfig(cfg, nil); ec.ForceNewCluster {
		t.Error("ForceNewCluster again after a reset was done")
	}
}

func TestMemberConfigJoin(t *testing.T) {
	cfg := testConfig(t)
	ic := "a-192.0.2.1=https://192.0.2.1:2380," + Name(cfg) + "=https://192.0.2.7:2380"
	ec, err := MemberConfig(cfg, &Join{InitialCluster: ic})
	if err != nil {
		t.Fatal(err)
	}
	if ec.ClusterState != embed.ClusterStateFlagExisting || ec.InitialCluster != ic {
		t.Errorf("join: state %s, initial cluster %q", ec.ClusterState, ec.InitialCluster)
	}
	if err := ec.Validate(); err != nil {
		t.Errorf("etcd rejects the config: %v", err)
	}
}

// TestEnsureEtcdCerts: two CAs, certificates that chain to the right one
// with the right uses and addresses, every file 0600, and a second run
// changes nothing.
func TestEnsureEtcdCerts(t *testing.T) {
	f := pki.EtcdFiles{Dir: filepath.Join(t.TempDir(), "tls", "etcd")}
	ip := net.ParseIP("192.0.2.7")
	events, err := pki.EnsureEtcd(f, ip, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 5 {
		t.Errorf("first run: %d events, want 5 (2 CAs, 3 certificates): %v", len(events), events)
	}
	load := func(p string) *x509.Certificate {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		c, err := pki.ParseCert(data)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	pool := func(p string) *x509.CertPool {
		cp := x509.NewCertPool()
		cp.AddCert(load(p))
		return cp
	}
	verify := func(cert, ca string, use x509.ExtKeyUsage, host string) {
		t.Helper()
		c := load(cert)
		if _, err := c.Verify(x509.VerifyOptions{Roots: pool(ca), KeyUsages: []x509.ExtKeyUsage{use}, DNSName: host}); err != nil {
			t.Errorf("%s under %s for %v %q: %v", filepath.Base(cert), filepath.Base(ca), use, host, err)
		}
	}
	verify(f.ServingCert(), f.ServerCA(), x509.ExtKeyUsageServerAuth, "127.0.0.1")
	verify(f.ServingCert(), f.ServerCA(), x509.ExtKeyUsageClientAuth, "") // the gateway's
	verify(f.ClientCert(), f.ServerCA(), x509.ExtKeyUsageClientAuth, "")
	verify(f.PeerCert(), f.PeerCA(), x509.ExtKeyUsageServerAuth, "192.0.2.7")
	verify(f.PeerCert(), f.PeerCA(), x509.ExtKeyUsageClientAuth, "")
	// A peer certificate does not pass for a client of the member, nor the
	// other way round.
	if _, err := load(f.PeerCert()).Verify(x509.VerifyOptions{Roots: pool(f.ServerCA()), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("the peer certificate verifies under the etcd server CA")
	}
	if _, err := load(f.ClientCert()).Verify(x509.VerifyOptions{Roots: pool(f.PeerCA()), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("the client certificate verifies under the etcd peer CA")
	}
	entries, err := os.ReadDir(f.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 10 {
		t.Errorf("%d files in %s, want 10", len(entries), f.Dir)
	}
	for _, e := range entries {
		info, _ := e.Info()
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", e.Name(), info.Mode().Perm())
		}
	}
	if again, err := pki.EnsureEtcd(f, ip, time.Now()); err != nil || len(again) != 0 {
		t.Errorf("second run: %v %v, want nothing done", again, err)
	}
}
