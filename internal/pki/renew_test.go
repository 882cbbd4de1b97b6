package pki

import (
	"bytes"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clientcmd "k8s.io/client-go/tools/clientcmd"

	"github.com/k1s-io/k1s/internal/config"
)

func TestSelect(t *testing.T) {
	valid := []string{"b", "a", "c"}
	all, err := Select(valid, nil)
	if err != nil || len(all) != 3 || !all["a"] || !all["b"] || !all["c"] {
		t.Errorf("Select(no names) = %v, %v; want every valid name", all, err)
	}
	some, err := Select(valid, []string{"a", "c.crt"})
	if err != nil || len(some) != 2 || !some["a"] || !some["c"] {
		t.Errorf("Select(a, c.crt) = %v, %v; want a and c", some, err)
	}
	_, err = Select(valid, []string{"a", "kubelet", "x"})
	if err == nil || !strings.Contains(err.Error(), `unknown --service "kubelet", "x"`) || !strings.Contains(err.Error(), "valid names are a, b, c") {
		t.Errorf("Select(unknown) error = %v; want the unknown names and the sorted valid ones", err)
	}
}

func TestDue(t *testing.T) {
	for _, c := range []struct {
		left time.Duration
		want string
	}{
		{200 * 24 * time.Hour, ""},
		{RenewBefore + time.Hour, ""},
		{RenewBefore - 24*time.Hour, "expires in 119 days"},
		{time.Hour, "expires in 0 days"},
		{-time.Hour, "expired "},
	} {
		cert := &x509.Certificate{NotAfter: t0.Add(c.left)}
		got := Due(cert, t0)
		if (c.want == "" && got != "") || !strings.HasPrefix(got, c.want) {
			t.Errorf("Due with %s left = %q, want %q", c.left, got, c.want)
		}
	}
}

func renewConfig(t *testing.T) *config.Server {
	cfg := testConfig(t)
	cfg.NodeName, cfg.NodeIP = "n1", "192.0.2.10"
	return cfg
}

func fileBytes(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func crtFiles(t *testing.T, dirs ...string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, d := range dirs {
		paths, _ := filepath.Glob(filepath.Join(d, "*.crt"))
		keys, _ := filepath.Glob(filepath.Join(d, "*.key"))
		for _, p := range append(paths, keys...) {
			out[p] = fileBytes(t, p)
		}
	}
	return out
}

func changedFiles(before, after map[string][]byte) []string {
	var out []string
	for p, b := range after {
		if !bytes.Equal(before[p], b) {
			out = append(out, filepath.Base(p))
		}
	}
	slices.Sort(out)
	return out
}

// A running server's check renews nothing while the leaves are young, and
// every leaf (the server's and its node's) once fewer than RenewBefore
// remain, keeping keys and CAs, and puts the new admin certificate in the
// kubeconfig that inlines it.
func TestRenewerCheck(t *testing.T) {
	cfg := renewConfig(t)
	res := mustEnsure(t, cfg, t0)
	nc := cfg.Node()
	if _, err := EnsureNode(res, nc.PKIDir(), "n1", "192.0.2.10", nc.APIServerURL, t0); err != nil {
		t.Fatal(err)
	}
	rn := &Renewer{Cfg: cfg, PKI: res}
	before := crtFiles(t, cfg.TLSDir(), nc.PKIDir())
	if ev, err := rn.Check(t0.Add(30 * 24 * time.Hour)); err != nil || len(ev) != 0 {
		t.Fatalf("Check a month in = %+v, %v; want nothing renewed", ev, err)
	}
	if c := changedFiles(before, crtFiles(t, cfg.TLSDir(), nc.PKIDir())); len(c) != 0 {
		t.Fatalf("files changed with nothing due: %v", c)
	}
	admin := fileBytes(t, cfg.WriteKubeconfig)

	later := t0.Add(LeafValidity - RenewBefore + 24*time.Hour)
	ev, err := rn.Check(later)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ev {
		names = append(names, e.Name)
		if e.Action != "renewed" || !strings.HasPrefix(e.Reason, "expires in") {
			t.Errorf("event %+v", e)
		}
	}
	want := append(ServerLeafNames(), NodeLeafNames...)
	slices.Sort(names)
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("renewed %v, want %v", names, want)
	}
	var wantChanged []string
	for _, n := range want {
		wantChanged = append(wantChanged, n+".crt")
	}
	slices.Sort(wantChanged)
	if c := changedFiles(before, crtFiles(t, cfg.TLSDir(), nc.PKIDir())); !slices.Equal(c, wantChanged) {
		t.Errorf("changed files %v, want only the leaf certificates %v (keys and CAs kept)", c, wantChanged)
	}
	for _, n := range []string{"serving-kube-apiserver.crt", "client-admin.crt"} {
		if c := readCert(t, filepath.Join(cfg.TLSDir(), n)); c.NotAfter.Sub(later) < LeafValidity-time.Hour {
			t.Errorf("%s not after %s, want a year after %s", n, c.NotAfter, later)
		}
	}
	if bytes.Equal(admin, fileBytes(t, cfg.WriteKubeconfig)) {
		t.Error("the admin kubeconfig still inlines the old certificate")
	}
	if !bytes.Contains(fileBytes(t, cfg.WriteKubeconfig), []byte("client-certificate-data")) {
		t.Error("admin kubeconfig no longer inlines its certificate")
	}
}

// Rotate reissues exactly the named certificates, like they were (subject,
// names), with the same key, and leaves everything else alone.
// TestRenewerCheckEtcd: the embedded etcd member's leaves are renewed by
// the periodic check too, not only at start; its CAs are kept.
func TestRenewerCheckEtcd(t *testing.T) {
	cfg := renewConfig(t)
	cfg.DisableAgent = true
	cfg.ClusterInit = true
	cfg.AdvertiseAddress = "192.0.2.10"
	res := mustEnsure(t, cfg, t0)
	ef := EtcdFiles{Dir: cfg.EtcdTLSDir()}
	if _, err := EnsureEtcd(ef, net.ParseIP(cfg.AdvertiseAddress), t0); err != nil {
		t.Fatal(err)
	}
	before := crtFiles(t, ef.Dir)
	rn := &Renewer{Cfg: cfg, PKI: res}
	if ev, err := rn.Check(t0.Add(30 * 24 * time.Hour)); err != nil || len(ev) != 0 {
		t.Fatalf("Check a month in = %+v, %v; want nothing renewed", ev, err)
	}
	ev, err := rn.Check(t0.Add(LeafValidity - RenewBefore + 24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var etcd []string
	for _, e := range ev {
		if strings.HasPrefix(e.Name, "etcd ") {
			etcd = append(etcd, e.Name+" "+e.Action)
		}
	}
	slices.Sort(etcd)
	if want := []string{"etcd client renewed", "etcd peer renewed", "etcd serving renewed"}; !slices.Equal(etcd, want) {
		t.Errorf("etcd events %v, want %v", etcd, want)
	}
	if c := changedFiles(before, crtFiles(t, ef.Dir)); !slices.Equal(c, []string{"client.crt", "peer.crt", "serving.crt"}) {
		t.Errorf("changed files in %s: %v; want the three leaf certificates only (CAs kept)", ef.Dir, c)
	}
}

func TestRotateOnlyNamed(t *testing.T) {
	cfg := renewConfig(t)
	res := mustEnsure(t, cfg, t0)
	nc := cfg.Node()
	nodeDir := nc.PKIDir()
	if _, err := EnsureNode(res, nodeDir, "n1", "192.0.2.10", "https://127.0.0.1:6443", t0); err != nil {
		t.Fatal(err)
	}
	before := crtFiles(t, cfg.TLSDir(), nodeDir)
	oldServing := readCert(t, NodeFiles{Dir: nodeDir}.ServingCert())
	now := t0.Add(time.Hour)

	ev, err := Rotate(cfg.TLSDir(), nodeDir, map[string]bool{"serving-kubelet": true}, now)
	if err != nil || len(ev) != 1 || ev[0].Name != "serving-kubelet" || ev[0].Reason != "rotation asked for" {
		t.Fatalf("Rotate(serving-kubelet) = %+v, %v", ev, err)
	}
	ev, err = Rotate(cfg.TLSDir(), cfg.TLSDir(), map[string]bool{"client-admin": true, "not-here": true}, now)
	if err != nil || len(ev) != 1 || ev[0].Name != "client-admin" {
		t.Fatalf("Rotate(client-admin) = %+v, %v", ev, err)
	}
	if c := changedFiles(before, crtFiles(t, cfg.TLSDir(), nodeDir)); !slices.Equal(c, []string{"client-admin.crt", "serving-kubelet.crt"}) {
		t.Errorf("changed %v, want only client-admin.crt and serving-kubelet.crt", c)
	}
	got := readCert(t, NodeFiles{Dir: nodeDir}.ServingCert())
	if got.SerialNumber.Cmp(oldServing.SerialNumber) == 0 || !got.NotBefore.Equal(now.Add(-time.Hour)) {
		t.Errorf("serving-kubelet not reissued at %s: serial %v, not before %s", now, got.SerialNumber, got.NotBefore)
	}
	if got.Subject.CommonName != "n1" || !slices.Equal(got.DNSNames, oldServing.DNSNames) || len(got.IPAddresses) != 2 ||
		!slices.Equal(got.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
		t.Errorf("reissued serving-kubelet %s %v %v %v, want it like the old one", got.Subject, got.DNSNames, got.IPAddresses, got.ExtKeyUsage)
	}
	pool := x509.NewCertPool()
	pool.AddCert(res.KubeletServingCA.Cert)
	if _, err := got.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, DNSName: "n1"}); err != nil {
		t.Errorf("reissued serving-kubelet not from the kubelet-serving CA: %v", err)
	}
	admin := readCert(t, cfg.TLSDir()+"/client-admin.crt")
	if admin.Subject.CommonName != AdminUser || !slices.Equal(admin.Subject.Organization, []string{AdminGroup}) {
		t.Errorf("reissued admin is %s", admin.Subject)
	}
}

func TestRotateNeedsTheServersCAs(t *testing.T) {
	_, err := Rotate(t.TempDir(), t.TempDir(), map[string]bool{"client-kubelet": true}, t0)
	if err == nil || !strings.Contains(err.Error(), "server-ca") || !strings.Contains(err.Error(), "is this a k1s server's data dir") {
		t.Errorf("Rotate without CAs = %v", err)
	}
}

// After the admin certificate is rotated, the kubeconfig that inlines it
// gets the new one; a kubeconfig with other credentials is left alone.
func TestRefreshInlined(t *testing.T) {
	cfg := renewConfig(t)
	res := mustEnsure(t, cfg, t0)
	f := res.Files
	other := filepath.Join(t.TempDir(), "other.yaml")
	data, err := kubeconfig("https://127.0.0.1:6443", "sched", res.ServerCA.CertPEM, "", f.path("client-kube-scheduler.crt"), f.path("client-kube-scheduler.key"), true)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(other, data, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := Rotate(f.Dir, f.Dir, map[string]bool{"client-admin": true}, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	newCert := fileBytes(t, f.AdminCert())
	for _, c := range []struct {
		path string
		want bool
	}{{cfg.WriteKubeconfig, true}, {cfg.WriteKubeconfig, false}, {other, false}, {filepath.Join(t.TempDir(), "missing"), false}} {
		got, err := RefreshInlined(c.path, f.AdminCert(), f.AdminKey())
		if err != nil || got != c.want {
			t.Errorf("RefreshInlined(%s) = %v, %v; want %v", c.path, got, err, c.want)
		}
	}
	kc, err := clientcmd.LoadFromFile(cfg.WriteKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, ai := range kc.AuthInfos {
		if !bytes.Equal(ai.ClientCertificateData, newCert) {
			t.Error("admin kubeconfig does not hold the rotated certificate")
		}
	}
	if fi, err := os.Stat(other); err != nil || fi.Mode().Perm() != 0o640 || !bytes.Equal(fileBytes(t, other), data) {
		t.Errorf("other kubeconfig changed: %v", err)
	}
}
