// Package config holds the one configuration struct that every k1s component
// receives. The CLI fills it (flags, K1S_* environment variables and the YAML
// config file) and Validate checks it before anything touches the host.
package config

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	utilnet "k8s.io/apimachinery/pkg/util/net"
)

// Defaults shared by the flags, the docs and the tests.
const (
	DefaultDataDir         = "/var/lib/k1s"
	DefaultRunDir          = "/run/k1s"
	DefaultConfigFile      = "/etc/k1s/config.yaml"
	DefaultKubeconfig      = "/etc/k1s/k1s.yaml"
	DefaultRegistries      = "/etc/k1s/registries.yaml"
	DefaultHTTPSPort       = 6443
	DefaultClusterCIDR     = "10.42.0.0/16"
	DefaultServiceCIDR     = "10.43.0.0/16"
	DefaultClusterDNS      = "10.43.0.10"
	DefaultClusterDomain   = "cluster.local"
	DefaultKubeconfigMode  = "0600"
	DefaultSchedulerPort   = 10259
	DefaultControllerPort  = 10257
	DefaultDatastoreWait   = 30 * time.Second
	DefaultCompactInterval = 5 * time.Minute
	DefaultCompactTimeout  = 5 * time.Second
	DefaultCompactRetain   = 1000
	DefaultCompactBatch    = 1000
)

// Datastore is where the cluster state lives.
type Datastore struct {
	// Endpoint is what kine takes: empty for the embedded SQLite file,
	// sqlite://, postgres://, mysql://, or https:// etcd endpoints.
	Endpoint string
	CAFile   string
	CertFile string
	KeyFile  string
	// ConnectTimeout bounds how long start-up waits for the backend.
	ConnectTimeout   time.Duration
	CompactInterval  time.Duration
	CompactTimeout   time.Duration
	CompactMinRetain int64
	CompactBatchSize int64
}

// Server is the configuration of `k1s server`.
type Server struct {
	ConfigFile string

	DataDir          string
	RunDir           string
	BindAddress      string
	HTTPSPort        int
	AdvertiseAddress string
	TLSSANs          []string

	ClusterCIDR   string
	ServiceCIDR   string
	ClusterDNS    string
	ClusterDomain string

	Token     string
	TokenFile string

	Datastore Datastore

	WriteKubeconfig     string
	WriteKubeconfigMode string

	SchedulerPort  int
	ControllerPort int

	ExtraAPIServerArgs         []string
	ExtraSchedulerArgs         []string
	ExtraControllerManagerArgs []string

	DisableAgent bool
	Debug        bool

	// Disable lists built-in add-ons not to deploy (Addons).
	Disable []string
	// SystemDefaultRegistry prefixes the add-ons' images (e.g. a mirror).
	SystemDefaultRegistry string
	// FlannelBackend is the cluster's Pod network between nodes.
	FlannelBackend string

	// Node settings, for the server's own node.
	NodeName           string
	NodeIP             string
	NodeLabels         []string
	NodeTaints         []string
	PrivateRegistry    string
	ExtraKubeletArgs   []string
	ExtraKubeProxyArgs []string
	FlannelIface       string
}

// Addons are the built-in add-ons --disable accepts, and the other names
// users may know them by.
var Addons = map[string]string{"coredns": "coredns", "servicelb": "servicelb", "ingress": "ingress", "k1s-ingress": "ingress", "traefik": "ingress"}

// Disabled reports whether --disable names addon.
func (s *Server) Disabled(addon string) bool {
	for _, d := range s.Disable {
		if Addons[d] == addon {
			return true
		}
	}
	return false
}

// Node is the server's own node.
func (s *Server) Node() Node {
	ip := s.NodeIP
	if ip == "" {
		ip = s.AdvertiseAddress
	}
	return Node{
		DataDir: s.DataDir, RunDir: s.RunDir,
		Name: s.NodeName, IP: ip,
		Labels: s.NodeLabels, Taints: s.NodeTaints, PrivateRegistry: s.PrivateRegistry,
		KubeletArgs: s.ExtraKubeletArgs, ProxyArgs: s.ExtraKubeProxyArgs,
		ClusterCIDR: s.ClusterCIDR, ServiceCIDR: s.ServiceCIDR,
		ClusterDNS: s.ClusterDNS, ClusterDomain: s.ClusterDomain,
		APIServerURL:   s.APIServerURL(),
		FlannelBackend: s.FlannelBackend, FlannelIface: s.FlannelIface,
	}
}

// Paths under the data dir. Everything k1s server writes lives below ServerDir,
// except the admin kubeconfig, whose place the user chooses.
func (s *Server) ServerDir() string  { return filepath.Join(s.DataDir, "server") }
func (s *Server) TLSDir() string     { return filepath.Join(s.ServerDir(), "tls") }
func (s *Server) CredDir() string    { return filepath.Join(s.ServerDir(), "cred") }
func (s *Server) DBDir() string      { return filepath.Join(s.ServerDir(), "db") }
func (s *Server) TokenPath() string  { return filepath.Join(s.ServerDir(), "token") }
func (s *Server) KineSocket() string { return filepath.Join(s.ServerDir(), "kine.sock") }

// LoopbackHost is the address k1s itself uses to reach the apiserver.
func (s *Server) LoopbackHost() string {
	ip := net.ParseIP(s.BindAddress)
	if ip == nil || ip.IsUnspecified() {
		return "127.0.0.1"
	}
	return ip.String()
}

// APIServerURL is the URL of the local apiserver, as written to kubeconfigs.
func (s *Server) APIServerURL() string {
	return "https://" + net.JoinHostPort(s.LoopbackHost(), strconv.Itoa(s.HTTPSPort))
}

// KubeconfigMode parses WriteKubeconfigMode.
func (s *Server) KubeconfigMode() os.FileMode {
	m, _ := strconv.ParseUint(s.WriteKubeconfigMode, 8, 32)
	return os.FileMode(m)
}

// ServiceNet returns the parsed service CIDR (valid after Validate).
func (s *Server) ServiceNet() *net.IPNet {
	_, n, _ := net.ParseCIDR(s.ServiceCIDR)
	return n
}

// FirstServiceIP is the ClusterIP of the `kubernetes` Service.
func (s *Server) FirstServiceIP() net.IP {
	n := s.ServiceNet()
	ip := make(net.IP, len(n.IP))
	copy(ip, n.IP)
	ip[len(ip)-1]++
	return ip
}

// Validate checks every field and fills in what is derived from the host.
// It must not write anything: a bad flag has to leave the data dir alone.
func (s *Server) Validate() error {
	if err := resolveDirs(&s.DataDir, &s.RunDir); err != nil {
		return err
	}
	if s.BindAddress != "" && net.ParseIP(s.BindAddress) == nil {
		return fmt.Errorf("invalid --bind-address %q: want an IP address such as 0.0.0.0", s.BindAddress)
	}
	for name, port := range map[string]int{
		"--https-listen-port": s.HTTPSPort, "scheduler port": s.SchedulerPort, "controller-manager port": s.ControllerPort,
	} {
		if port < 1 || port > 65535 {
			return fmt.Errorf("invalid %s %d: want a port between 1 and 65535", name, port)
		}
	}
	clusterNet, err := parseCIDR("--cluster-cidr", s.ClusterCIDR, "10.42.0.0/16")
	if err != nil {
		return err
	}
	serviceNet, err := parseCIDR("--service-cidr", s.ServiceCIDR, "10.43.0.0/16")
	if err != nil {
		return err
	}
	if clusterNet.Contains(serviceNet.IP) || serviceNet.Contains(clusterNet.IP) {
		return fmt.Errorf("--cluster-cidr %s and --service-cidr %s overlap: pick two separate ranges", s.ClusterCIDR, s.ServiceCIDR)
	}
	if ones, bits := serviceNet.Mask.Size(); bits-ones > 20 {
		return fmt.Errorf("--service-cidr %s is too large: the prefix must be at least /%d (at most 2^20 addresses)", s.ServiceCIDR, bits-20)
	}
	dns := net.ParseIP(s.ClusterDNS)
	if dns == nil {
		return fmt.Errorf("invalid --cluster-dns %q: want an IP address inside --service-cidr, e.g. 10.43.0.10", s.ClusterDNS)
	}
	if !serviceNet.Contains(dns) {
		return fmt.Errorf("--cluster-dns %s is outside --service-cidr %s", s.ClusterDNS, s.ServiceCIDR)
	}
	if s.ClusterDomain == "" {
		return fmt.Errorf("--cluster-domain must not be empty")
	}
	if s.FlannelBackend == "" {
		s.FlannelBackend = "vxlan"
	}
	if err := validateBackend(s.FlannelBackend); err != nil {
		return err
	}
	// --disable=coredns,servicelb works as k3s users write it.
	var disable []string
	for _, d := range s.Disable {
		for _, f := range strings.Split(d, ",") {
			if f = strings.TrimSpace(f); f != "" {
				disable = append(disable, f)
			}
		}
	}
	s.Disable = disable
	for _, d := range s.Disable {
		if _, ok := Addons[d]; !ok {
			return fmt.Errorf("--disable %q: unknown add-on; k1s can disable coredns, servicelb and ingress", d)
		}
	}
	if r := s.SystemDefaultRegistry; r != "" && (strings.Contains(r, "://") || strings.HasSuffix(r, "/") || strings.ContainsAny(r, " \t")) {
		return fmt.Errorf("invalid --system-default-registry %q: want a registry host (and optional path), e.g. registry.example.com:5000/mirror, without scheme or trailing slash", r)
	}
	if s.WriteKubeconfigMode != "" {
		m, err := strconv.ParseUint(s.WriteKubeconfigMode, 8, 32)
		if err != nil || m > 0o777 {
			return fmt.Errorf("invalid --write-kubeconfig-mode %q: want an octal file mode such as 0600 or 0644", s.WriteKubeconfigMode)
		}
	} else {
		s.WriteKubeconfigMode = DefaultKubeconfigMode
	}
	if s.AdvertiseAddress == "" {
		ip, err := utilnet.ResolveBindAddress(net.ParseIP(s.BindAddress))
		if err != nil || ip.IsLoopback() {
			return fmt.Errorf("could not find a non-loopback address of this host to advertise: set --advertise-address")
		}
		s.AdvertiseAddress = ip.String()
	}
	adv := net.ParseIP(s.AdvertiseAddress)
	if adv == nil {
		return fmt.Errorf("invalid --advertise-address %q: want an IP address", s.AdvertiseAddress)
	}
	if adv.IsLoopback() || adv.IsUnspecified() {
		return fmt.Errorf("--advertise-address %s must be an address other hosts can reach, not loopback or unspecified", s.AdvertiseAddress)
	}
	if err := resolveToken(&s.Token, s.TokenFile); err != nil {
		return err
	}
	if err := validateNode(s.NodeName, s.NodeIP, s.NodeLabels, s.NodeTaints,
		s.ExtraAPIServerArgs, s.ExtraSchedulerArgs, s.ExtraControllerManagerArgs, s.ExtraKubeletArgs, s.ExtraKubeProxyArgs); err != nil {
		return err
	}
	return s.Datastore.validate()
}

func (d *Datastore) validate() error {
	if d.ConnectTimeout <= 0 {
		return fmt.Errorf("--datastore-connect-timeout must be positive")
	}
	if d.CompactMinRetain < 0 || d.CompactBatchSize < 0 {
		return fmt.Errorf("--datastore-compact-* values must not be negative")
	}
	return nil
}

func parseCIDR(flag, value, example string) (*net.IPNet, error) {
	ip, n, err := net.ParseCIDR(value)
	if err != nil {
		return nil, fmt.Errorf("invalid %s %q: want a network in CIDR notation, e.g. %s", flag, value, example)
	}
	if !ip.Equal(n.IP) {
		return nil, fmt.Errorf("invalid %s %q: host bits are set; did you mean %s?", flag, value, n.String())
	}
	return n, nil
}

// resolveDirs makes the data and run dirs absolute (the run dir defaults
// to DefaultRunDir) and checks them.
func resolveDirs(dataDir, runDir *string) error {
	if *dataDir == "" {
		return fmt.Errorf("--data-dir must not be empty")
	}
	abs, err := filepath.Abs(*dataDir)
	if err != nil {
		return fmt.Errorf("--data-dir %q: %w", *dataDir, err)
	}
	*dataDir = abs
	if *runDir == "" {
		*runDir = DefaultRunDir
	}
	if *runDir, err = filepath.Abs(*runDir); err != nil {
		return fmt.Errorf("--run-dir: %w", err)
	}
	return checkRunDir(*runDir)
}

// resolveToken reads --token-file into token; both given is an error.
func resolveToken(token *string, tokenFile string) error {
	if *token != "" && tokenFile != "" {
		return fmt.Errorf("--token and --token-file both given: use one of them")
	}
	if tokenFile == "" {
		return nil
	}
	b, err := os.ReadFile(tokenFile)
	if err != nil {
		return fmt.Errorf("reading --token-file: %w", err)
	}
	*token = firstLine(string(b))
	if *token == "" {
		return fmt.Errorf("--token-file %s is empty", tokenFile)
	}
	return nil
}

// checkRunDir: containerd's socket path under the run dir must fit in a
// unix socket address (108 bytes).
func checkRunDir(dir string) error {
	n := Node{RunDir: dir}
	if l := len(n.ContainerdSocket()); l > 100 {
		return fmt.Errorf("--run-dir %s is too long for containerd's socket path (%d bytes): choose a shorter one", dir, l)
	}
	return nil
}

func firstLine(s string) string {
	for i, c := range s {
		if c == '\n' || c == '\r' {
			return s[:i]
		}
	}
	return s
}
