package pki

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	clientcmd "k8s.io/client-go/tools/clientcmd"

	"github.com/k1s-io/k1s/internal/config"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func testConfig(t *testing.T) *config.Server {
	t.Helper()
	return &config.Server{
		DataDir:          t.TempDir(),
		AdvertiseAddress: "192.0.2.10",
		BindAddress:      "0.0.0.0",
		HTTPSPort:        6443,
		Cluster: config.Cluster{
			ServiceCIDR:   "10.43.0.0/16",
			ClusterCIDR:   "10.42.0.0/16",
			ClusterDNS:    "10.43.0.10",
			ClusterDomain: "cluster.local",
		},
		WriteKubeconfig:     filepath.Join(t.TempDir(), "k1s.yaml"),
		WriteKubeconfigMode: "0600",
	}
}

func mustEnsure(t *testing.T, cfg *config.Server, now time.Time) *Result {
	t.Helper()
	res, err := Ensure(cfg, now)
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	return res
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := decodeCert(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

// snapshot returns the content of every regular file under the given roots.
func snapshot(t *testing.T, roots ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, root := range roots {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			out[p] = string(b)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// changed lists the files whose content differs between two snapshots.
func changed(a, b map[string]string) []string {
	var out []string
	for p, v := range b {
		if old, ok := a[p]; !ok || old != v {
			out = append(out, filepath.Base(p))
		}
	}
	for p := range a {
		if _, ok := b[p]; !ok {
			out = append(out, filepath.Base(p)+" (removed)")
		}
	}
	slices.Sort(out)
	return out
}

var leafNames = []string{
	"serving-kube-apiserver", "client-admin", "client-kube-scheduler",
	"client-kube-controller-manager", "client-kube-apiserver", "client-auth-proxy",
	"serving-kube-scheduler", "serving-kube-controller-manager",
}

func TestEnsureCreatesCAs(t *testing.T) {
	cfg := testConfig(t)
	res := mustEnsure(t, cfg, t0)
	for _, name := range []string{"server-ca", "client-ca", "request-header-ca", "kubelet-serving-ca"} {
		c := readCert(t, filepath.Join(res.Files.Dir, name+".crt"))
		if !c.IsCA || !c.BasicConstraintsValid {
			t.Errorf("%s: IsCA=%v BasicConstraintsValid=%v", name, c.IsCA, c.BasicConstraintsValid)
		}
		if c.KeyUsage&x509.KeyUsageCertSign == 0 {
			t.Errorf("%s: no cert-sign key usage", name)
		}
		if !c.NotAfter.Equal(t0.Add(CAValidity)) {
			t.Errorf("%s: NotAfter = %v, want %v (10 years)", name, c.NotAfter, t0.Add(CAValidity))
		}
		if !c.NotBefore.Before(t0) {
			t.Errorf("%s: NotBefore %v is not before issue time %v", name, c.NotBefore, t0)
		}
		if !strings.HasPrefix(c.Subject.CommonName, "k1s-"+name+"@") {
			t.Errorf("%s: CN = %q", name, c.Subject.CommonName)
		}
		if err := c.CheckSignatureFrom(c); err != nil {
			t.Errorf("%s is not self-signed: %v", name, err)
		}
		st, err := os.Stat(filepath.Join(res.Files.Dir, name+".key"))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s.key mode = %o, want 600", name, st.Mode().Perm())
		}
	}
	if res.Files.Dir != filepath.Join(cfg.DataDir, "server", "tls") {
		t.Errorf("TLS dir = %q", res.Files.Dir)
	}
	// Four CAs, eight leaves and the service-account key.
	if len(res.Events) != 13 {
		t.Errorf("first Ensure reported %d events, want 13: %+v", len(res.Events), res.Events)
	}
	for _, ev := range res.Events {
		if ev.Action != "created" {
			t.Errorf("first Ensure event %+v, want created", ev)
		}
	}
	if _, err := os.Stat(res.Files.ServiceAccountKey()); err != nil {
		t.Errorf("service-account key: %v", err)
	}
}

func TestEnsureLeafSubjectsAndUsages(t *testing.T) {
	cfg := testConfig(t)
	res := mustEnsure(t, cfg, t0)
	dir := res.Files.Dir
	for _, tc := range []struct {
		name, ca, cn string
		orgs         []string
		usage        x509.ExtKeyUsage
	}{
		{"serving-kube-apiserver", "server-ca", "kube-apiserver", nil, x509.ExtKeyUsageServerAuth},
		{"client-admin", "client-ca", "system:admin", []string{"system:masters"}, x509.ExtKeyUsageClientAuth},
		{"client-kube-scheduler", "client-ca", "system:kube-scheduler", nil, x509.ExtKeyUsageClientAuth},
		{"client-kube-controller-manager", "client-ca", "system:kube-controller-manager", nil, x509.ExtKeyUsageClientAuth},
		{"client-kube-apiserver", "client-ca", "kube-apiserver", nil, x509.ExtKeyUsageClientAuth},
		{"client-auth-proxy", "request-header-ca", "system:auth-proxy", nil, x509.ExtKeyUsageClientAuth},
		{"serving-kube-scheduler", "server-ca", "kube-scheduler", nil, x509.ExtKeyUsageServerAuth},
		{"serving-kube-controller-manager", "server-ca", "kube-controller-manager", nil, x509.ExtKeyUsageServerAuth},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := readCert(t, filepath.Join(dir, tc.name+".crt"))
			ca := readCert(t, filepath.Join(dir, tc.ca+".crt"))
			if c.Subject.CommonName != tc.cn {
				t.Errorf("CN = %q, want %q", c.Subject.CommonName, tc.cn)
			}
			if !slices.Equal(c.Subject.Organization, tc.orgs) {
				t.Errorf("O = %q, want %q", c.Subject.Organization, tc.orgs)
			}
			if c.IsCA {
				t.Error("leaf is a CA")
			}
			if !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{tc.usage}) {
				t.Errorf("ExtKeyUsage = %v, want [%v]", c.ExtKeyUsage, tc.usage)
			}
			if !c.NotAfter.Equal(t0.Add(LeafValidity)) {
				t.Errorf("NotAfter = %v, want %v (1 year)", c.NotAfter, t0.Add(LeafValidity))
			}
			pool := x509.NewCertPool()
			pool.AddCert(ca)
			if _, err := c.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{tc.usage}}); err != nil {
				t.Errorf("does not verify under %s: %v", tc.ca, err)
			}
			keyPEM, err := os.ReadFile(filepath.Join(dir, tc.name+".key"))
			if err != nil {
				t.Fatal(err)
			}
			key, err := decodeKey(keyPEM)
			if err != nil {
				t.Fatal(err)
			}
			if !publicKeysEqual(c.PublicKey, key.Public()) {
				t.Error("key file does not match the certificate")
			}
		})
	}
}

func TestEnsureServingSANs(t *testing.T) {
	cfg := testConfig(t)
	cfg.ClusterDomain = "corp.internal"
	cfg.TLSSANs = []string{"k1s.example.com", "203.0.113.7", "2001:db8::7", ""}
	res := mustEnsure(t, cfg, t0)
	c := readCert(t, res.Files.ServingCert())

	for _, d := range []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
		"kubernetes.default.svc.corp.internal", "k1s.example.com"} {
		if !slices.Contains(c.DNSNames, d) {
			t.Errorf("DNS SANs %q lack %q", c.DNSNames, d)
		}
	}
	if slices.Contains(c.DNSNames, "kubernetes.default.svc.cluster.local") {
		t.Errorf("DNS SANs %q use the default domain instead of --cluster-domain", c.DNSNames)
	}
	if slices.Contains(c.DNSNames, "") || slices.Contains(c.DNSNames, "203.0.113.7") {
		t.Errorf("DNS SANs %q hold an empty name or an IP", c.DNSNames)
	}
	for _, ip := range []string{"127.0.0.1", "192.0.2.10", "10.43.0.1", "203.0.113.7", "2001:db8::7"} {
		if !slices.ContainsFunc(c.IPAddresses, net.ParseIP(ip).Equal) {
			t.Errorf("IP SANs %v lack %s", c.IPAddresses, ip)
		}
	}
	if slices.ContainsFunc(c.IPAddresses, net.IPv4zero.Equal) {
		t.Errorf("IP SANs %v contain the unspecified bind address", c.IPAddresses)
	}
	if err := c.VerifyHostname("192.0.2.10"); err != nil {
		t.Errorf("VerifyHostname(advertise address): %v", err)
	}
	if err := c.VerifyHostname("kubernetes.default.svc.corp.internal"); err != nil {
		t.Errorf("VerifyHostname(service name): %v", err)
	}
	// No duplicates even though 127.0.0.1 could come from several sources.
	seen := map[string]bool{}
	for _, ip := range c.IPAddresses {
		if seen[ip.String()] {
			t.Errorf("IP SAN %s appears twice", ip)
		}
		seen[ip.String()] = true
	}
}

func TestEnsureServingSANsIncludeSpecificBindAddress(t *testing.T) {
	cfg := testConfig(t)
	cfg.BindAddress = "192.0.2.20"
	res := mustEnsure(t, cfg, t0)
	c := readCert(t, res.Files.ServingCert())
	if !slices.ContainsFunc(c.IPAddresses, net.ParseIP("192.0.2.20").Equal) {
		t.Errorf("IP SANs %v lack the bind address", c.IPAddresses)
	}
}

func TestEnsureKubeconfigs(t *testing.T) {
	cfg := testConfig(t)
	cfg.WriteKubeconfigMode = "0640"
	res := mustEnsure(t, cfg, t0)
	caPEM, err := os.ReadFile(res.Files.ServerCA())
	if err != nil {
		t.Fatal(err)
	}
	adminCert, err := os.ReadFile(res.Files.AdminCert())
	if err != nil {
		t.Fatal(err)
	}

	st, err := os.Stat(cfg.WriteKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o640 {
		t.Errorf("%s mode = %o, want 640", cfg.WriteKubeconfig, st.Mode().Perm())
	}
	kc, err := clientcmd.LoadFromFile(cfg.WriteKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	ctx := kc.Contexts[kc.CurrentContext]
	if ctx == nil {
		t.Fatalf("no current context in %s", cfg.WriteKubeconfig)
	}
	cl, user := kc.Clusters[ctx.Cluster], kc.AuthInfos[ctx.AuthInfo]
	if cl == nil || user == nil {
		t.Fatalf("context %+v points at a missing cluster or user", ctx)
	}
	if cl.Server != "https://127.0.0.1:6443" {
		t.Errorf("server = %q", cl.Server)
	}
	if string(cl.CertificateAuthorityData) != string(caPEM) || string(user.ClientCertificateData) != string(adminCert) {
		t.Error("written kubeconfig does not embed the server CA and the admin certificate")
	}
	if cl.CertificateAuthority != "" || user.ClientCertificate != "" {
		t.Error("written kubeconfig refers to files; it must be self-contained")
	}

	for path, cert := range map[string]string{
		res.Files.AdminKubeconfig():      res.Files.AdminCert(),
		res.Files.SchedulerKubeconfig():  filepath.Join(res.Files.Dir, "client-kube-scheduler.crt"),
		res.Files.ControllerKubeconfig(): filepath.Join(res.Files.Dir, "client-kube-controller-manager.crt"),
	} {
		kc, err := clientcmd.LoadFromFile(path)
		if err != nil {
			t.Fatal(err)
		}
		ctx := kc.Contexts[kc.CurrentContext]
		if ctx == nil || kc.AuthInfos[ctx.AuthInfo] == nil || kc.Clusters[ctx.Cluster] == nil {
			t.Fatalf("%s: broken context", path)
		}
		if got := kc.AuthInfos[ctx.AuthInfo].ClientCertificate; got != cert {
			t.Errorf("%s: client-certificate = %q, want %q", path, got, cert)
		}
		if got := kc.Clusters[ctx.Cluster].CertificateAuthority; got != res.Files.ServerCA() {
			t.Errorf("%s: certificate-authority = %q", path, got)
		}
		if st, err := os.Stat(path); err != nil {
			t.Error(err)
		} else if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %o, want 600", path, st.Mode().Perm())
		}
	}
}

func TestEnsureTwiceChangesNothing(t *testing.T) {
	cfg := testConfig(t)
	cfg.TLSSANs = []string{"k1s.example.com"}
	first := mustEnsure(t, cfg, t0)
	before := snapshot(t, cfg.DataDir, filepath.Dir(cfg.WriteKubeconfig))
	if len(before) < 20 {
		t.Fatalf("only %d files after Ensure", len(before))
	}

	second := mustEnsure(t, cfg, t0.Add(24*time.Hour))
	after := snapshot(t, cfg.DataDir, filepath.Dir(cfg.WriteKubeconfig))
	if diff := changed(before, after); len(diff) != 0 {
		t.Errorf("second Ensure changed %q", diff)
	}
	if len(second.Events) != 0 {
		t.Errorf("second Ensure reported %+v, want nothing", second.Events)
	}
	if second.Token != first.Token {
		t.Errorf("token changed: %q then %q", first.Token, second.Token)
	}
}

func TestEnsureChmodsUnchangedKubeconfig(t *testing.T) {
	cfg := testConfig(t)
	mustEnsure(t, cfg, t0)
	cfg.WriteKubeconfigMode = "0644"
	mustEnsure(t, cfg, t0)
	st, err := os.Stat(cfg.WriteKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o644 {
		t.Errorf("mode = %o after changing --write-kubeconfig-mode, want 644", st.Mode().Perm())
	}
}

func TestEnsureRenewsExpiringLeavesKeepsCAs(t *testing.T) {
	cfg := testConfig(t)
	mustEnsure(t, cfg, t0)
	dir := cfg.TLSDir()
	before := snapshot(t, dir)

	// 121 days left: nothing to do yet.
	early := t0.Add(LeafValidity - RenewBefore - 24*time.Hour)
	if res := mustEnsure(t, cfg, early); len(res.Events) != 0 {
		t.Fatalf("Ensure with 121 days left reported %+v, want nothing", res.Events)
	}
	if diff := changed(before, snapshot(t, dir)); len(diff) != 0 {
		t.Fatalf("Ensure with 121 days left changed %q", diff)
	}

	// 119 days left: every leaf is renewed, no CA is touched.
	later := t0.Add(LeafValidity - RenewBefore + 24*time.Hour)
	res := mustEnsure(t, cfg, later)
	var renewed []string
	for _, ev := range res.Events {
		if ev.Action != "renewed" || !strings.Contains(ev.Reason, "expires in 119 days") {
			t.Errorf("event %+v, want renewed because it expires in 119 days", ev)
		}
		renewed = append(renewed, ev.Name)
	}
	slices.Sort(renewed)
	want := slices.Sorted(slices.Values(leafNames))
	if !slices.Equal(renewed, want) {
		t.Errorf("renewed %q, want %q", renewed, want)
	}

	after := snapshot(t, dir)
	for _, name := range []string{"server-ca", "client-ca", "request-header-ca", "kubelet-serving-ca"} {
		for _, ext := range []string{".crt", ".key"} {
			p := filepath.Join(dir, name+ext)
			if before[p] != after[p] {
				t.Errorf("%s%s changed on leaf renewal", name, ext)
			}
		}
	}
	if p := filepath.Join(dir, "service.key"); before[p] != after[p] {
		t.Error("service.key changed on leaf renewal")
	}
	for _, name := range leafNames {
		crt := filepath.Join(dir, name+".crt")
		if before[crt] == after[crt] {
			t.Errorf("%s.crt not rewritten", name)
		}
		if key := filepath.Join(dir, name+".key"); before[key] != after[key] {
			t.Errorf("%s.key changed: renewal should keep the key", name)
		}
		c := readCert(t, crt)
		if !c.NotAfter.Equal(later.Add(LeafValidity)) {
			t.Errorf("%s: NotAfter = %v, want %v", name, c.NotAfter, later.Add(LeafValidity))
		}
	}
	// The renewed set is stable again.
	if res := mustEnsure(t, cfg, later); len(res.Events) != 0 {
		t.Errorf("Ensure after renewal reported %+v", res.Events)
	}
}

func TestEnsureNewTLSSANReissuesOnlyServingCert(t *testing.T) {
	cfg := testConfig(t)
	cfg.TLSSANs = []string{"a.example.com"}
	mustEnsure(t, cfg, t0)
	dir := cfg.TLSDir()
	before := snapshot(t, dir)

	cfg.TLSSANs = append(cfg.TLSSANs, "b.example.com", "198.51.100.4")
	res := mustEnsure(t, cfg, t0.Add(time.Hour))
	if len(res.Events) != 1 || res.Events[0].Name != "serving-kube-apiserver" || res.Events[0].Action != "renewed" ||
		!strings.Contains(res.Events[0].Reason, "b.example.com") {
		t.Fatalf("events %+v, want only serving-kube-apiserver renewed for the new name", res.Events)
	}
	if diff := changed(before, snapshot(t, dir)); !slices.Equal(diff, []string{"serving-kube-apiserver.crt"}) {
		t.Errorf("changed files %q, want only serving-kube-apiserver.crt", diff)
	}
	c := readCert(t, filepath.Join(dir, "serving-kube-apiserver.crt"))
	if !slices.Contains(c.DNSNames, "a.example.com") || !slices.Contains(c.DNSNames, "b.example.com") {
		t.Errorf("DNS SANs %q", c.DNSNames)
	}
	if !slices.ContainsFunc(c.IPAddresses, net.ParseIP("198.51.100.4").Equal) {
		t.Errorf("IP SANs %v lack the new address", c.IPAddresses)
	}

	// A new IP alone is also noticed.
	cfg.TLSSANs = append(cfg.TLSSANs, "198.51.100.5")
	res = mustEnsure(t, cfg, t0.Add(2*time.Hour))
	if len(res.Events) != 1 || !strings.Contains(res.Events[0].Reason, "198.51.100.5") {
		t.Errorf("events %+v, want the serving cert renewed for 198.51.100.5", res.Events)
	}
}

func TestEnsureRefusesToReplaceDamagedCA(t *testing.T) {
	cfg := testConfig(t)
	res := mustEnsure(t, cfg, t0)
	keyBefore, err := os.ReadFile(res.Files.ServerCAKey())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(res.Files.ServerCA()); err != nil {
		t.Fatal(err)
	}
	_, err = Ensure(cfg, t0)
	if err == nil || !strings.Contains(err.Error(), "server-ca") {
		t.Fatalf("Ensure with server-ca.crt missing = %v, want an error naming server-ca", err)
	}
	if _, err := os.Stat(res.Files.ServerCA()); !os.IsNotExist(err) {
		t.Error("Ensure recreated server-ca.crt next to the old key")
	}
	if keyAfter, _ := os.ReadFile(res.Files.ServerCAKey()); string(keyAfter) != string(keyBefore) {
		t.Error("server-ca.key was replaced")
	}
}

func TestEnsureRenewsLeafWithMismatchedKey(t *testing.T) {
	cfg := testConfig(t)
	res := mustEnsure(t, cfg, t0)
	// Put the scheduler's key under the admin certificate.
	other, err := os.ReadFile(filepath.Join(res.Files.Dir, "client-kube-scheduler.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(res.Files.AdminKey(), other, 0o600); err != nil {
		t.Fatal(err)
	}
	res = mustEnsure(t, cfg, t0)
	if len(res.Events) != 1 || res.Events[0].Name != "client-admin" || res.Events[0].Reason != "key does not match" {
		t.Fatalf("events %+v, want client-admin renewed because the key does not match", res.Events)
	}
	c := readCert(t, res.Files.AdminCert())
	keyPEM, _ := os.ReadFile(res.Files.AdminKey())
	key, err := decodeKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !publicKeysEqual(c.PublicKey, key.Public()) {
		t.Error("renewed admin certificate does not match its key")
	}
	if string(keyPEM) == string(other) {
		t.Error("renewed admin cert reuses the scheduler's key")
	}
}

var tokenRE = regexp.MustCompile(`^K10([0-9a-f]{64})::server:(\S+)$`)

func caHashOf(t *testing.T, res *Result) string {
	t.Helper()
	pemBytes, err := os.ReadFile(res.Files.ServerCA())
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(pemBytes)
	return hex.EncodeToString(sum[:])
}

func TestTokenFormatAndReuse(t *testing.T) {
	cfg := testConfig(t)
	res := mustEnsure(t, cfg, t0)
	m := tokenRE.FindStringSubmatch(res.Token)
	if m == nil {
		t.Fatalf("token %q does not match K10<hash>::server:<secret>", res.Token)
	}
	if m[1] != caHashOf(t, res) {
		t.Errorf("token hash %s, want sha256 of server-ca.crt %s", m[1], caHashOf(t, res))
	}
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(m[2]) {
		t.Errorf("generated secret %q, want 32 hex digits", m[2])
	}
	data, err := os.ReadFile(cfg.TokenPath())
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != res.Token+"\n" {
		t.Errorf("token file = %q, want %q", data, res.Token+"\n")
	}
	if st, _ := os.Stat(cfg.TokenPath()); st.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %o, want 600", st.Mode().Perm())
	}
	if again := mustEnsure(t, cfg, t0); again.Token != res.Token {
		t.Errorf("token not reused: %q then %q", res.Token, again.Token)
	}
	// Another data dir gets another CA, hence another token.
	if other := mustEnsure(t, testConfig(t), t0); other.Token == res.Token {
		t.Error("two clusters got the same token")
	}
}

func TestTokenGivenSecret(t *testing.T) {
	cfg := testConfig(t)
	cfg.Token = "my-secret"
	res := mustEnsure(t, cfg, t0)
	if want := "K10" + caHashOf(t, res) + "::server:my-secret"; res.Token != want {
		t.Fatalf("token = %q, want %q", res.Token, want)
	}
	// Later runs without --token keep the stored secret.
	cfg.Token = ""
	if again := mustEnsure(t, cfg, t0); again.Token != res.Token {
		t.Errorf("token without --token = %q, want the stored %q", again.Token, res.Token)
	}
	// The full token of this cluster is accepted as --token too.
	cfg.Token = res.Token
	if again := mustEnsure(t, cfg, t0); again.Token != res.Token {
		t.Errorf("token with its own K10 token = %q, want %q", again.Token, res.Token)
	}
	// A new secret replaces the stored one.
	cfg.Token = "rotated"
	if again := mustEnsure(t, cfg, t0); !strings.HasSuffix(again.Token, "::server:rotated") {
		t.Errorf("token = %q, want the secret rotated", again.Token)
	}
}

// A --token that `k1s token rotate` retired does not come back when the
// server restarts with it still in its unit file or config file.
func TestRetiredTokenIsNotRevived(t *testing.T) {
	cfg := testConfig(t)
	cfg.Token = "first-secret-0123456"
	mustEnsure(t, cfg, t0)
	// What `k1s token rotate` does: a new token file, the old one retired.
	cfg.Token = "second-secret-012345"
	second := mustEnsure(t, cfg, t0).Token
	if err := RetireToken(cfg.TokenPath(), "first-secret-0123456", "second-secret-012345"); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(RetiredTokensPath(cfg.TokenPath())); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("retired list: %v, %v; want mode 600", st, err)
	}
	cfg.Token = "first-secret-0123456"
	res := mustEnsure(t, cfg, t0)
	if res.Token != second {
		t.Errorf("restart with the retired token: token = %q, want the current %q", res.Token, second)
	}
	kept := false
	for _, ev := range res.Events {
		kept = kept || (ev.Name == "server token" && ev.Action == "kept" && strings.Contains(ev.Reason, "retired") && strings.Contains(ev.Reason, cfg.TokenPath()))
	}
	if !kept {
		t.Errorf("events %+v: want one saying the retired --token is ignored and where the current one is", res.Events)
	}
	// Rotated back to the first: it is current again, so --token may name it.
	if err := RetireToken(cfg.TokenPath(), "second-secret-012345", "first-secret-0123456"); err != nil {
		t.Fatal(err)
	}
	if res := mustEnsure(t, cfg, t0); !strings.HasSuffix(res.Token, "::server:first-secret-0123456") {
		t.Errorf("token = %q, want the first secret, current again", res.Token)
	}
	// A new secret that was never retired still replaces the stored one.
	cfg.Token = "third-secret-0123456"
	if res := mustEnsure(t, cfg, t0); !strings.HasSuffix(res.Token, "::server:third-secret-0123456") {
		t.Errorf("token = %q, want the new third secret", res.Token)
	}
}

func TestTokenForeignCARefused(t *testing.T) {
	cfg := testConfig(t)
	res := mustEnsure(t, cfg, t0)
	stored, _ := os.ReadFile(cfg.TokenPath())

	foreign := "K10" + strings.Repeat("ab", 32) + "::server:secret"
	cfg.Token = foreign
	_, err := Ensure(cfg, t0)
	if err == nil || !strings.Contains(err.Error(), "different cluster CA") {
		t.Fatalf("Ensure with a foreign token = %v, want a different-CA error", err)
	}
	if !strings.Contains(err.Error(), "abababababab") || !strings.Contains(err.Error(), caHashOf(t, res)[:12]) {
		t.Errorf("error %q should name both hash prefixes", err)
	}
	if after, _ := os.ReadFile(cfg.TokenPath()); string(after) != string(stored) {
		t.Error("refused token overwrote the stored one")
	}
}

func TestTokenDamagedFile(t *testing.T) {
	cfg := testConfig(t)
	mustEnsure(t, cfg, t0)
	if err := os.WriteFile(cfg.TokenPath(), []byte("two words\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Ensure(cfg, t0)
	if err == nil || !strings.Contains(err.Error(), cfg.TokenPath()) {
		t.Errorf("Ensure with a damaged token file = %v, want an error naming it", err)
	}
}

func TestParseToken(t *testing.T) {
	hash := strings.Repeat("0123456789abcdef", 4)
	for _, tc := range []struct {
		in   string
		want Token
	}{
		{"secret", Token{User: "server", Secret: "secret"}},
		{"  secret\n", Token{User: "server", Secret: "secret"}},
		{"K10nocolons", Token{User: "server", Secret: "K10nocolons"}},
		{"abc::def", Token{User: "server", Secret: "abc::def"}},
		{"K10" + hash + "::server:s3cret", Token{CAHash: hash, User: "server", Secret: "s3cret"}},
		{"K10" + hash + "::node:a:b", Token{CAHash: hash, User: "node", Secret: "a:b"}},
	} {
		got, err := ParseToken(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseToken(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	// String round-trips a full token.
	full := "K10" + hash + "::server:s3cret"
	if p, _ := ParseToken(full); p.String() != full {
		t.Errorf("String() = %q, want %q", p.String(), full)
	}

	for _, tc := range []struct{ in, want string }{
		{"", "empty"},
		{"   \n", "empty"},
		{"two words", "white space"},
		{"tab\tsep", "white space"},
		{"K10" + hash[:63] + "::server:x", "CA hash"},
		{"K10" + hash + "0::server:x", "CA hash"},
		{"K10" + strings.Repeat("zz", 32) + "::server:x", "CA hash"},
		{"K10::server:x", "CA hash"},
		{"K10" + hash + "::server", "malformed"},
		{"K10" + hash + "::server:", "malformed"},
		{"K10" + hash + ":::secret", "malformed"},
		{"K10" + hash + "::", "malformed"},
	} {
		if got, err := ParseToken(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseToken(%q) = %+v, %v; want an error containing %q", tc.in, got, err, tc.want)
		}
	}
}

func TestCAHash(t *testing.T) {
	// sha256("") is a well-known constant.
	if got := CAHash(nil); got != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Errorf("CAHash(nil) = %s", got)
	}
	if CAHash([]byte("a")) == CAHash([]byte("a\n")) {
		t.Error("CAHash ignores trailing bytes")
	}
}

// A node serving certificate from before the kubelet-serving CA (signed by
// the server CA) is re-issued by the new CA on the next start.
func TestEnsureNodeMovesServingCertToKubeletServingCA(t *testing.T) {
	cfg := testConfig(t)
	res := mustEnsure(t, cfg, t0)
	dir := t.TempDir()
	old := &leaf{name: "serving-kubelet", ca: res.ServerCA, cn: "n1", server: true, dnsNames: []string{"n1", "localhost"},
		ips: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("192.0.2.7")}}
	if _, err := ensureLeaf(dir, old, false, t0); err != nil {
		t.Fatal(err)
	}
	events, err := EnsureNode(res, dir, "n1", "192.0.2.7", "https://127.0.0.1:6443", t0)
	if err != nil {
		t.Fatal(err)
	}
	renewed := false
	for _, ev := range events {
		renewed = renewed || (ev.Name == "serving-kubelet" && ev.Action == "renewed")
	}
	if !renewed {
		t.Errorf("serving-kubelet from the server CA was not renewed: %+v", events)
	}
	c := readCert(t, NodeFiles{Dir: dir}.ServingCert())
	for _, ca := range []struct {
		ca   *CA
		want bool
	}{{res.KubeletServingCA, true}, {res.ServerCA, false}} {
		pool := x509.NewCertPool()
		pool.AddCert(ca.ca.Cert)
		_, err := c.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: t0, DNSName: "n1"})
		if (err == nil) != ca.want {
			t.Errorf("serving-kubelet under %s: err = %v", ca.ca.Cert.Subject.CommonName, err)
		}
	}
}
