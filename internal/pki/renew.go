package pki

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	clientcmd "k8s.io/client-go/tools/clientcmd"

	"github.com/k1s-io/k1s/internal/config"
)

// NodeLeafNames are a node's leaf certificates (file base names in its pki
// dir), on a server's own node and on an agent alike.
var NodeLeafNames = []string{"client-kubelet", "serving-kubelet", "client-kube-proxy", "client-flannel", "client-network-policy"}

// ServerLeafNames are the server's leaf certificates (file base names in
// its tls dir).
func ServerLeafNames() []string {
	var out []string
	for _, l := range serverLeaves(map[string]*CA{}, nil, nil) {
		out = append(out, l.name)
	}
	return out
}

// Select turns the names a user asked to rotate into a set; no names means
// every one of valid. An unknown name is an error that lists the valid ones.
func Select(valid, want []string) (map[string]bool, error) {
	out := map[string]bool{}
	if len(want) == 0 {
		for _, v := range valid {
			out[v] = true
		}
		return out, nil
	}
	var unknown []string
	for _, w := range want {
		w = strings.TrimSuffix(strings.TrimSpace(w), ".crt")
		if !slices.Contains(valid, w) {
			unknown = append(unknown, fmt.Sprintf("%q", w))
			continue
		}
		out[w] = true
	}
	if len(unknown) > 0 {
		sorted := slices.Clone(valid)
		sort.Strings(sorted)
		return nil, fmt.Errorf("unknown --service %s: valid names are %s", strings.Join(unknown, ", "), strings.Join(sorted, ", "))
	}
	return out, nil
}

// Due says why a leaf certificate should be renewed now ("" if it should
// not): fewer than RenewBefore left, or already expired.
func Due(cert *x509.Certificate, now time.Time) string {
	left := cert.NotAfter.Sub(now)
	if left <= 0 {
		return "expired " + cert.NotAfter.UTC().Format(time.RFC3339)
	}
	if left < RenewBefore {
		return fmt.Sprintf("expires in %d days", int(left.Hours()/24))
	}
	return ""
}

// DueIn lists the certificates among names in dir that are due (see Due),
// with the reason; a missing or unreadable one is due too.
func DueIn(dir string, names []string, now time.Time) (map[string]string, error) {
	out := map[string]string{}
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(dir, n+".crt"))
		if errors.Is(err, fs.ErrNotExist) {
			out[n] = "missing"
			continue
		}
		if err != nil {
			return nil, err
		}
		cert, err := decodeCert(data)
		if err != nil {
			out[n] = "unreadable"
			continue
		}
		if why := Due(cert, now); why != "" {
			out[n] = why
		}
	}
	return out, nil
}

// Renewer renews a running server's leaf certificates and its own node's.
// It holds the CAs the server started with: CAs never change here.
type Renewer struct {
	Cfg *config.Server
	PKI *Result
}

// Check renews every leaf of the server (and of its own node, unless
// --disable-agent; and of its embedded etcd member) that Ensure and
// EnsureEtcd would renew at start: fewer than
// RenewBefore left, or no longer what the configuration asks for. Keys
// are kept. The kubeconfigs are rewritten if a certificate they hold
// changed (the admin kubeconfig inlines its certificate).
func (r *Renewer) Check(now time.Time) ([]Event, error) {
	f := r.PKI.Files
	cas, err := loadCAs(f.Dir, false, now, func(*Event) {})
	if err != nil {
		return nil, err
	}
	var events []Event
	for _, l := range serverLeaves(cas, r.PKI.ServingDNSNames, r.PKI.ServingIPs) {
		ev, err := ensureLeaf(f.Dir, l, false, now)
		if err != nil {
			return events, fmt.Errorf("certificate %s: %w", l.name, err)
		}
		if ev != nil {
			events = append(events, *ev)
		}
	}
	// Every time, not only after a renewal here: `k1s certificate rotate`
	// may have replaced the admin certificate that one kubeconfig inlines.
	if err := writeKubeconfigs(r.Cfg, f, r.PKI.ServerCA.CertPEM); err != nil {
		return events, err
	}
	if r.Cfg.EmbeddedEtcd() {
		// etcd reads its certificate files at each TLS handshake, the
		// apiserver's etcd client too: renewing the files is enough.
		ev, err := EnsureEtcd(EtcdFiles{Dir: r.Cfg.EtcdTLSDir()}, net.ParseIP(r.Cfg.AdvertiseAddress), now)
		events = append(events, ev...)
		if err != nil {
			return events, err
		}
	}
	if r.Cfg.DisableAgent {
		return events, nil
	}
	nc := r.Cfg.Node()
	nev, err := EnsureNode(r.PKI, nc.PKIDir(), nc.NodeName, nc.NodeIP, nc.APIServerURL, now)
	return append(events, nev...), err
}

// Rotate reissues now the leaf certificates named in want that are in dir
// (a server's tls dir or a node's pki dir on a server), each with the
// subject, names and usages it has, signed by the CA in caDir that issued
// it, keeping its key. It never touches a CA. It is what `k1s certificate
// rotate` does on a server's data dir; running components reload the files.
func Rotate(caDir, dir string, want map[string]bool, now time.Time) ([]Event, error) {
	byName, err := loadCAs(caDir, false, now, func(*Event) {})
	if err != nil {
		return nil, err
	}
	var cas []*CA
	for _, c := range serverCAs {
		cas = append(cas, byName[c.name])
	}
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	var events []Event
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(dir, n+".crt"))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return events, err
		}
		cert, err := decodeCert(data)
		if err != nil {
			return events, fmt.Errorf("%s.crt: %w", n, err)
		}
		l, err := leafLike(n, cert, cas)
		if err != nil {
			return events, err
		}
		ev, err := ensureLeaf(dir, l, true, now)
		if err != nil {
			return events, fmt.Errorf("certificate %s: %w", n, err)
		}
		if ev != nil {
			events = append(events, *ev)
		}
	}
	return events, nil
}

// leafLike describes a certificate like cert, from whichever of cas signed
// it (an expired cert still names its issuer by signature).
func leafLike(name string, cert *x509.Certificate, cas []*CA) (*leaf, error) {
	for _, ca := range cas {
		if cert.CheckSignatureFrom(ca.Cert) != nil {
			continue
		}
		return &leaf{name: name, ca: ca, cn: cert.Subject.CommonName, orgs: cert.Subject.Organization,
			server: hasUsage(cert, x509.ExtKeyUsageServerAuth), client: hasUsage(cert, x509.ExtKeyUsageClientAuth),
			dnsNames: cert.DNSNames, ips: cert.IPAddresses}, nil
	}
	return nil, fmt.Errorf("%s.crt was not signed by any of this server's CAs: restart k1s to reissue it", name)
}

// CheckEvery is how often a running server or agent checks its leaf
// certificates (they are also checked at every start).
const CheckEvery = 12 * time.Hour

// CheckIntervalEnv shortens CheckEvery. It exists for the end-to-end tests,
// which cannot wait hours; it is not a setting for clusters.
const CheckIntervalEnv = "K1S_TEST_CERT_CHECK_INTERVAL"

// CheckInterval is CheckEvery, or the duration in CheckIntervalEnv.
func CheckInterval() (time.Duration, error) {
	v := os.Getenv(CheckIntervalEnv)
	if v == "" {
		return CheckEvery, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s=%q: want a positive duration such as 10s", CheckIntervalEnv, v)
	}
	return d, nil
}

// RefreshInlined puts the current certificate and key files into the
// kubeconfig at path when it inlines another certificate of the same
// subject from the same CA (the admin kubeconfig after the admin
// certificate was rotated). It reports whether it changed the file; a
// missing file or one holding other credentials is left alone.
func RefreshInlined(path, certFile, keyFile string) (bool, error) {
	kc, err := clientcmd.LoadFromFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return false, err
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return false, err
	}
	cur, err := decodeCert(certPEM)
	if err != nil {
		return false, err
	}
	changed := false
	for _, ai := range kc.AuthInfos {
		old, err := decodeCert(ai.ClientCertificateData)
		if err != nil || bytes.Equal(ai.ClientCertificateData, certPEM) ||
			old.Subject.String() != cur.Subject.String() || !bytes.Equal(old.RawIssuer, cur.RawIssuer) ||
			!bytes.Equal(old.AuthorityKeyId, cur.AuthorityKeyId) {
			continue
		}
		ai.ClientCertificateData, ai.ClientKeyData = certPEM, keyPEM
		changed = true
	}
	if !changed {
		return false, nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return false, err
	}
	data, err := clientcmd.Write(*kc)
	if err != nil {
		return false, err
	}
	return true, writeFileAtomic(path, data, fi.Mode().Perm())
}

// RenewLoop calls check every interval until ctx ends, logging each
// renewal by name. A failed check is logged and tried again at the next
// tick: the certificates in use stay valid for months.
func RenewLoop(ctx context.Context, every time.Duration, log logrus.FieldLogger, check func(time.Time) ([]Event, error)) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		events, err := check(time.Now())
		for _, ev := range events {
			log.Infof("certificate %s %s (%s)", ev.Name, ev.Action, ev.Reason)
		}
		if err != nil {
			log.Warnf("checking certificates for renewal: %v (trying again in %s)", err, every)
		}
	}
}
