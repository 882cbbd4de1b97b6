package pki

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/k1s-io/k1s/internal/config"
)

// Identities of the control-plane clients. The scheduler and the
// controller-manager names are the ones Kubernetes' default RBAC binds.
const (
	AdminUser             = "system:admin"
	AdminGroup            = "system:masters"
	SchedulerUser         = "system:kube-scheduler"
	ControllerManagerUser = "system:kube-controller-manager"
	APIServerKubeletUser  = "kube-apiserver"
	AuthProxyUser         = "system:auth-proxy"
)

// Files is where every credential lives; components are given these paths.
type Files struct {
	Dir, CredDir string
}

func (f Files) path(name string) string { return filepath.Join(f.Dir, name) }

func (f Files) ServerCA() string            { return f.path("server-ca.crt") }
func (f Files) ClientCA() string            { return f.path("client-ca.crt") }
func (f Files) ClientCAKey() string         { return f.path("client-ca.key") }
func (f Files) ServerCAKey() string         { return f.path("server-ca.key") }
func (f Files) RequestHeaderCA() string     { return f.path("request-header-ca.crt") }
func (f Files) KubeletServingCA() string    { return f.path("kubelet-serving-ca.crt") }
func (f Files) KubeletServingCAKey() string { return f.path("kubelet-serving-ca.key") }
func (f Files) ServingCert() string         { return f.path("serving-kube-apiserver.crt") }
func (f Files) ServingKey() string          { return f.path("serving-kube-apiserver.key") }
func (f Files) ServiceAccountKey() string   { return f.path("service.key") }

// The scheduler's and controller-manager's serving certificates (their
// loopback /healthz and /metrics). Without them each would make a
// self-signed RSA pair at every start: about a second of CPU.
func (f Files) SchedulerServingCert() string  { return f.path("serving-kube-scheduler.crt") }
func (f Files) SchedulerServingKey() string   { return f.path("serving-kube-scheduler.key") }
func (f Files) ControllerServingCert() string { return f.path("serving-kube-controller-manager.crt") }
func (f Files) ControllerServingKey() string  { return f.path("serving-kube-controller-manager.key") }
func (f Files) AuthProxyCert() string         { return f.path("client-auth-proxy.crt") }
func (f Files) AuthProxyKey() string          { return f.path("client-auth-proxy.key") }
func (f Files) KubeletClientCert() string     { return f.path("client-kube-apiserver.crt") }
func (f Files) KubeletClientKey() string      { return f.path("client-kube-apiserver.key") }
func (f Files) AdminCert() string             { return f.path("client-admin.crt") }
func (f Files) AdminKey() string              { return f.path("client-admin.key") }
func (f Files) AdminKubeconfig() string       { return filepath.Join(f.CredDir, "admin.kubeconfig") }
func (f Files) SchedulerKubeconfig() string   { return filepath.Join(f.CredDir, "scheduler.kubeconfig") }
func (f Files) ControllerKubeconfig() string {
	return filepath.Join(f.CredDir, "controller-manager.kubeconfig")
}

// Result is what Ensure produced.
type Result struct {
	Files              Files
	ServerCA, ClientCA *CA
	// KubeletServingCA signs kubelets' serving certificates. Only the
	// apiserver trusts it, so a node's certificate can never pass for the
	// apiserver's.
	KubeletServingCA *CA
	// ServingDNSNames and ServingIPs are on the apiserver's certificate: no
	// joining node may claim them.
	ServingDNSNames []string
	ServingIPs      []net.IP
	Token           string
	Events          []Event
}

// Ensure creates or renews every credential the server needs, writes the
// kubeconfigs and the join token, and reports what it changed.
func Ensure(cfg *config.Server, now time.Time) (*Result, error) {
	f := Files{Dir: cfg.TLSDir(), CredDir: cfg.CredDir()}
	for _, d := range []string{f.Dir, f.CredDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	res := &Result{Files: f}
	note := func(ev *Event) {
		if ev != nil {
			res.Events = append(res.Events, *ev)
		}
	}
	cas, err := loadCAs(f.Dir, true, now, note)
	if err != nil {
		return nil, err
	}
	dnsNames, ips, err := servingNames(cfg)
	if err != nil {
		return nil, err
	}
	for _, l := range serverLeaves(cas, dnsNames, ips) {
		ev, err := ensureLeaf(f.Dir, l, false, now)
		if err != nil {
			return nil, fmt.Errorf("certificate %s: %w", l.name, err)
		}
		note(ev)
	}
	ev, err := ensureKey(f.ServiceAccountKey())
	if err != nil {
		return nil, err
	}
	note(ev)

	if err := writeKubeconfigs(cfg, f, cas["server-ca"].CertPEM); err != nil {
		return nil, err
	}
	token, ev, err := ensureToken(cfg.TokenPath(), cas["server-ca"].CertPEM, cfg.Token)
	if err != nil {
		return nil, err
	}
	note(ev)
	res.Token = token
	res.ServerCA, res.ClientCA, res.KubeletServingCA = cas["server-ca"], cas["client-ca"], cas["kubelet-serving-ca"]
	res.ServingDNSNames, res.ServingIPs = dnsNames, ips
	return res, nil
}

// serverCAs are the server's CAs: file base name and subject.
var serverCAs = []struct{ name, cn string }{
	{"server-ca", "k1s-server-ca"},
	{"client-ca", "k1s-client-ca"},
	{"request-header-ca", "k1s-request-header-ca"},
	{"kubelet-serving-ca", "k1s-kubelet-serving-ca"},
}

// loadCAs reads the server's CAs from dir; with create, a missing one is
// made (first start), otherwise it is an error.
func loadCAs(dir string, create bool, now time.Time, note func(*Event)) (map[string]*CA, error) {
	cas := map[string]*CA{}
	for _, c := range serverCAs {
		if !create {
			if _, err := os.Stat(filepath.Join(dir, c.name+".crt")); err != nil {
				return nil, fmt.Errorf("CA %s: %w (is this a k1s server's data dir?)", c.name, err)
			}
		}
		ca, ev, err := loadOrCreateCA(dir, c.name, c.cn, now)
		if err != nil {
			return nil, err
		}
		note(ev)
		cas[c.name] = ca
	}
	return cas, nil
}

// serverLeaves are the server's own leaf certificates.
func serverLeaves(cas map[string]*CA, dnsNames []string, ips []net.IP) []*leaf {
	return []*leaf{
		{name: "serving-kube-apiserver", ca: cas["server-ca"], cn: "kube-apiserver", server: true, dnsNames: dnsNames, ips: ips},
		{name: "client-admin", ca: cas["client-ca"], cn: AdminUser, orgs: []string{AdminGroup}, client: true},
		{name: "client-kube-scheduler", ca: cas["client-ca"], cn: SchedulerUser, client: true},
		{name: "client-kube-controller-manager", ca: cas["client-ca"], cn: ControllerManagerUser, client: true},
		{name: "client-kube-apiserver", ca: cas["client-ca"], cn: APIServerKubeletUser, client: true},
		{name: "client-auth-proxy", ca: cas["request-header-ca"], cn: AuthProxyUser, client: true},
		// Both listen on 127.0.0.1 only (control.SchedulerArgs).
		{name: "serving-kube-scheduler", ca: cas["server-ca"], cn: "kube-scheduler", server: true, dnsNames: loopbackNames, ips: loopbackIPs},
		{name: "serving-kube-controller-manager", ca: cas["server-ca"], cn: "kube-controller-manager", server: true, dnsNames: loopbackNames, ips: loopbackIPs},
	}
}

var (
	loopbackNames = []string{"localhost"}
	loopbackIPs   = []net.IP{net.IPv4(127, 0, 0, 1)}
)

// servingNames lists the names and addresses the apiserver answers to.
func servingNames(cfg *config.Server) ([]string, []net.IP, error) {
	dns := []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
		"kubernetes.default.svc." + cfg.ClusterDomain}
	if h, err := os.Hostname(); err == nil && h != "" {
		dns = append(dns, h)
	}
	ips := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP(cfg.AdvertiseAddress), cfg.FirstServiceIP()}
	if b := net.ParseIP(cfg.BindAddress); b != nil && !b.IsUnspecified() {
		ips = append(ips, b)
	}
	// The node IP too: with several servers, clients may reach any of them by it.
	if n := net.ParseIP(cfg.NodeIP); n != nil {
		ips = append(ips, n)
	}
	for _, san := range cfg.TLSSANs {
		if ip := net.ParseIP(san); ip != nil {
			ips = append(ips, ip)
		} else if san != "" {
			dns = append(dns, san)
		}
	}
	return dedupe(dns), dedupeIPs(ips), nil
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func dedupeIPs(in []net.IP) []net.IP {
	seen := map[string]bool{}
	var out []net.IP
	for _, ip := range in {
		if k := ip.String(); !seen[k] {
			seen[k] = true
			out = append(out, ip)
		}
	}
	return out
}
