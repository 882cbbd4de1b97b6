// Package config holds the settings of `k1s server` (Server) and `k1s agent`
// (Agent), built from the settings they share: the cluster's (Cluster) and
// one node's (NodeOptions), which together make a Node. The CLI fills a
// Server or Agent from flags, K1S_* variables and the config file; Complete
// then fills in defaults and what comes from the host, and Validate checks
// it without changing anything. Nothing changes the config after that.
package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	utilnet "k8s.io/apimachinery/pkg/util/net"
)

// Defaults, written once: the flags, the docs and the tests use these.
const (
	DefaultDataDir         = "/var/lib/k1s"
	DefaultRunDir          = "/run/k1s"
	DefaultConfigFile      = "/etc/k1s/config.yaml"
	DefaultKubeconfig      = "/etc/k1s/k1s.yaml"
	DefaultRegistries      = "/etc/k1s/registries.yaml"
	DefaultBindAddress     = "0.0.0.0"
	DefaultHTTPSPort       = 6443
	DefaultAPIServerLBPort = 6444
	DefaultClusterCIDR     = "10.42.0.0/16"
	DefaultServiceCIDR     = "10.43.0.0/16"
	DefaultClusterDNS      = "10.43.0.10"
	DefaultClusterDomain   = "cluster.local"
	DefaultFlannelBackend  = "vxlan"
	DefaultKubeconfigMode  = "0600"
	DefaultSchedulerPort   = 10259
	DefaultControllerPort  = 10257
	DefaultDatastoreWait   = 30 * time.Second
	DefaultCompactInterval = 5 * time.Minute
	DefaultCompactTimeout  = 5 * time.Second
	// DefaultCompactRetain 0 keeps what the apiserver keeps on etcd: each
	// compaction removes the history older than the previous one, so
	// watchers can resume from anything newer than one interval; a fixed
	// number of revisions would keep hours of history on a quiet cluster.
	DefaultCompactRetain = 0
	DefaultCompactBatch  = 1000
	// MinCompactBatch is the smallest batch kine accepts.
	MinCompactBatch = 100
	// DefaultSnapshotSchedule is cron for "every 12 hours, on the hour".
	DefaultSnapshotSchedule  = "0 */12 * * *"
	DefaultSnapshotRetention = 5
)

// Snapshots are the embedded datastore's (SQLite or etcd) scheduled
// snapshots and restore.
type Snapshots struct {
	Disable   bool
	Schedule  string // cron, 5 fields or a descriptor such as @every 1h
	Retention int
	Dir       string // default <data-dir>/server/snapshots
	// ClusterReset with RestorePath replaces the datastore with a
	// snapshot of its kind (SQLite, or embedded etcd: then a one-member
	// cluster) before it starts; on embedded etcd, ClusterReset alone
	// restarts the member as a new one-member cluster with its data
	// (after quorum loss).
	ClusterReset bool
	RestorePath  string
}

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

	Cluster

	Token     string
	TokenFile string

	Datastore Datastore
	Snapshots Snapshots
	// ClusterInit starts a new cluster on an embedded etcd member instead
	// of SQLite. A data dir holding etcd data starts on it without the
	// flag (EmbeddedEtcd).
	ClusterInit bool
	// ServerURL names a server of an embedded-etcd cluster this server
	// joins on its first start (--server); a data dir holding etcd data
	// restarts on it instead.
	ServerURL string
	// RemoveMember removes this server's embedded etcd member from its
	// cluster and moves its etcd data aside instead of serving
	// (--remove-member, with the server stopped).
	RemoveMember bool

	WriteKubeconfig     string
	WriteKubeconfigMode string

	SchedulerPort  int
	ControllerPort int

	ExtraAPIServerArgs         []string
	ExtraSchedulerArgs         []string
	ExtraControllerManagerArgs []string

	DisableAgent bool
	Debug        bool

	// SecretsEncryption encrypts Secrets at rest (the default).
	SecretsEncryption bool

	// Disable lists built-in add-ons not to deploy (Addons).
	Disable []string
	// SystemDefaultRegistry prefixes the add-ons' images (e.g. a mirror).
	SystemDefaultRegistry string
	// DefaultLocalStoragePath is where local-path volumes live on every
	// node (default <data-dir>/storage of the server).
	DefaultLocalStoragePath string

	// NodeOptions are the server's own node's (unless DisableAgent).
	NodeOptions
}

// Addons are the built-in add-ons --disable accepts, and the other names
// users may know them by.
var Addons = map[string]string{"coredns": "coredns", "metrics-server": "metrics-server", "servicelb": "servicelb", "ingress": "ingress", "k1s-ingress": "ingress", "traefik": "ingress", "local-storage": "local-storage", "helm-controller": "helm-controller", "dashboard": "dashboard", "k1s-dashboard": "dashboard"}

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
	return Node{DataDir: s.DataDir, RunDir: s.RunDir, NodeOptions: s.NodeOptions, Cluster: s.Cluster, APIServerURL: s.APIServerURL()}
}

// Paths under the data dir. Everything k1s server writes lives below ServerDir,
// except the admin kubeconfig, whose place the user chooses.
func (s *Server) ServerDir() string  { return filepath.Join(s.DataDir, "server") }
func (s *Server) TLSDir() string     { return filepath.Join(s.ServerDir(), "tls") }
func (s *Server) CredDir() string    { return filepath.Join(s.ServerDir(), "cred") }
func (s *Server) DBDir() string      { return filepath.Join(s.ServerDir(), "db") }
func (s *Server) TokenPath() string  { return filepath.Join(s.ServerDir(), "token") }
func (s *Server) KineSocket() string { return filepath.Join(s.ServerDir(), "kine.sock") }
func (s *Server) EtcdDir() string    { return filepath.Join(s.DBDir(), "etcd") }
func (s *Server) EtcdTLSDir() string { return filepath.Join(s.TLSDir(), "etcd") }

// SQLiteDB is the embedded SQLite database file.
func (s *Server) SQLiteDB() string { return filepath.Join(s.DBDir(), "state.db") }

// HasEtcdData reports whether the data dir holds an embedded etcd
// member's data (its member directory).
func (s *Server) HasEtcdData() bool {
	_, err := os.Stat(filepath.Join(s.EtcdDir(), "member"))
	return err == nil
}

// EmbeddedEtcd reports whether the datastore is an embedded etcd member:
// asked for with --cluster-init, or found in the data dir, so that a
// restart needs no flag.
func (s *Server) EmbeddedEtcd() bool {
	return s.Datastore.Endpoint == "" && (s.ClusterInit || s.ServerURL != "" || s.HasEtcdData())
}

// SnapshotDir is where snapshots go: --snapshot-dir or the default.
func (s *Server) SnapshotDir() string {
	if s.Snapshots.Dir != "" {
		return s.Snapshots.Dir
	}
	return filepath.Join(s.ServerDir(), "snapshots")
}

// EncryptionConfig is the kube-apiserver's encryption configuration.
func (s *Server) EncryptionConfig() string {
	return filepath.Join(s.CredDir(), "encryption-config.json")
}

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

// KubeconfigMode parses WriteKubeconfigMode (valid after Validate).
func (s *Server) KubeconfigMode() os.FileMode {
	m, _ := strconv.ParseUint(s.WriteKubeconfigMode, 8, 32)
	return os.FileMode(m)
}

// Complete fills in defaults and what comes from the host: absolute
// directories, the --disable list split at commas, the token file, the
// advertise address, the node's name and IP. It writes nothing. Values it
// cannot work with are left for Validate to name.
func (s *Server) Complete() error {
	if err := completeDirs(&s.DataDir, &s.RunDir); err != nil {
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
	if s.WriteKubeconfigMode == "" {
		s.WriteKubeconfigMode = DefaultKubeconfigMode
	}
	if err := readTokenFile(&s.Token, s.TokenFile); err != nil {
		return err
	}
	if s.DefaultLocalStoragePath == "" {
		s.DefaultLocalStoragePath = filepath.Join(s.DataDir, "storage")
	}
	for _, p := range []*string{&s.Snapshots.RestorePath, &s.Snapshots.Dir, &s.DefaultLocalStoragePath} {
		if *p != "" {
			abs, err := filepath.Abs(*p)
			if err != nil {
				return err
			}
			*p = abs
		}
	}
	if s.AdvertiseAddress == "" {
		if bind := net.ParseIP(s.BindAddress); bind != nil || s.BindAddress == "" {
			ip, err := utilnet.ResolveBindAddress(bind)
			if err != nil || ip.IsLoopback() {
				return fmt.Errorf("could not find a non-loopback address of this host to advertise: set --advertise-address")
			}
			s.AdvertiseAddress = ip.String()
		}
	}
	if s.DisableAgent {
		return nil
	}
	return s.NodeOptions.complete(func() (string, error) { return s.AdvertiseAddress, nil })
}

// Validate checks every field; it changes nothing, and each error names
// the flag to fix.
func (s *Server) Validate() error {
	if err := validateDirs(s.DataDir, s.RunDir); err != nil {
		return err
	}
	if s.BindAddress != "" && net.ParseIP(s.BindAddress) == nil {
		return fmt.Errorf("invalid --bind-address %q: want an IP address such as %s", s.BindAddress, DefaultBindAddress)
	}
	for _, p := range []struct {
		flag string
		port int
	}{{"--https-listen-port", s.HTTPSPort}, {"--kube-scheduler-port", s.SchedulerPort}, {"--kube-controller-manager-port", s.ControllerPort}} {
		if p.port < 1 || p.port > 65535 {
			return fmt.Errorf("invalid %s %d: want a port between 1 and 65535", p.flag, p.port)
		}
	}
	if err := s.Cluster.Validate(); err != nil {
		return err
	}
	for _, d := range s.Disable {
		if _, ok := Addons[d]; !ok {
			return fmt.Errorf("--disable %q: unknown add-on; k1s can disable coredns, servicelb, ingress, metrics-server, local-storage, helm-controller and dashboard", d)
		}
	}
	if r := s.SystemDefaultRegistry; r != "" && (strings.Contains(r, "://") || strings.HasSuffix(r, "/") || strings.ContainsAny(r, " \t")) {
		return fmt.Errorf("invalid --system-default-registry %q: want a registry host (and optional path), e.g. registry.example.com:5000/mirror, without scheme or trailing slash", r)
	}
	if p := s.DefaultLocalStoragePath; !filepath.IsAbs(p) || filepath.Clean(p) == "/" {
		return fmt.Errorf("invalid --default-local-storage-path %q: want a directory other than /, e.g. /var/lib/k1s/storage", p)
	}
	if m, err := strconv.ParseUint(s.WriteKubeconfigMode, 8, 32); err != nil || m > 0o777 {
		return fmt.Errorf("invalid --write-kubeconfig-mode %q: want an octal file mode such as 0600 or 0640", s.WriteKubeconfigMode)
	}
	adv := net.ParseIP(s.AdvertiseAddress)
	if adv == nil {
		return fmt.Errorf("invalid --advertise-address %q: want an IP address", s.AdvertiseAddress)
	}
	if adv.IsLoopback() || adv.IsUnspecified() {
		return fmt.Errorf("--advertise-address %s must be an address other hosts can reach, not loopback or unspecified", s.AdvertiseAddress)
	}
	for _, a := range []struct {
		flag string
		args []string
	}{{"--kube-apiserver-arg", s.ExtraAPIServerArgs}, {"--kube-scheduler-arg", s.ExtraSchedulerArgs}, {"--kube-controller-manager-arg", s.ExtraControllerManagerArgs}} {
		if err := validateArgs(a.flag, a.args); err != nil {
			return err
		}
	}
	if secret, _ := tokenSecret(s.Token); s.Token != "" && len(secret) < MinTokenSecret {
		return fmt.Errorf("--token: the secret is %d characters, at least %d are needed so it cannot be guessed; leave --token out to have k1s generate one", len(secret), MinTokenSecret)
	}
	if err := s.NodeOptions.validate(!s.DisableAgent); err != nil {
		return err
	}
	if err := s.Datastore.validate(); err != nil {
		return err
	}
	if err := s.validateEtcd(); err != nil {
		return err
	}
	if s.EmbeddedEtcd() {
		return s.Snapshots.validateSchedule() // --cluster-reset checked by validateEtcd
	}
	return s.Snapshots.validate(s.Datastore.Endpoint)
}

// validateEtcd checks --cluster-init against the datastore flags and
// what the data dir already holds.
func (s *Server) validateEtcd() error {
	if err := s.validateRemoveMember(); err != nil {
		return err
	}
	if s.ServerURL != "" {
		switch u, err := url.Parse(s.ServerURL); {
		case err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/"):
			return fmt.Errorf("invalid --server %q: want the URL of a server of the cluster, e.g. https://10.0.0.1:6443", s.ServerURL)
		case s.ClusterInit:
			return fmt.Errorf("--cluster-init starts a new cluster, --server joins an existing one: give one of them")
		case s.Datastore.Endpoint != "":
			return fmt.Errorf("--server joins an embedded-etcd cluster; servers on --datastore-endpoint share the database instead: leave --server out")
		case s.Token == "" && !s.HasEtcdData():
			return fmt.Errorf("--server needs the cluster's --token (or --token-file): the first server's <data-dir>/server/token")
		}
	}
	if s.Datastore.Endpoint != "" {
		if s.ClusterInit {
			return fmt.Errorf("--cluster-init starts an embedded etcd, --datastore-endpoint names an external datastore: give one of them")
		}
		if s.HasEtcdData() {
			return fmt.Errorf("the data dir %s holds an embedded etcd member (%s): it cannot move to --datastore-endpoint; start without --datastore-endpoint, or use another --data-dir", s.DataDir, s.EtcdDir())
		}
		return nil
	}
	if !s.EmbeddedEtcd() {
		return nil
	}
	if _, err := os.Stat(s.SQLiteDB()); err == nil {
		if s.HasEtcdData() {
			return fmt.Errorf("the data dir %s holds both a SQLite datastore (%s) and an embedded etcd member (%s): k1s does not know which is the cluster's; move the one that is not aside", s.DataDir, s.SQLiteDB(), s.EtcdDir())
		}
		flag := "--cluster-init"
		if !s.ClusterInit {
			flag = "--server"
		}
		return fmt.Errorf("%s: the data dir %s already holds a SQLite datastore (%s), and k1s cannot convert SQLite to etcd: start without %s to keep using SQLite, or start the etcd server in a new --data-dir (then move the workloads over, e.g. by re-applying their manifests)", flag, s.DataDir, s.SQLiteDB(), flag)
	}
	n := s.Snapshots
	switch {
	case n.RestorePath != "" && !n.ClusterReset:
		return fmt.Errorf("--cluster-reset-restore-path needs --cluster-reset")
	case n.ClusterReset && n.RestorePath != "" && !s.HasEtcdData():
		return fmt.Errorf("--cluster-reset-restore-path on embedded etcd replaces this data dir's etcd member, but %s holds no etcd data: restore on the server the snapshot was taken from (its data dir holds the cluster's CAs and keys)", s.EtcdDir())
	case n.ClusterReset && !s.HasEtcdData():
		return fmt.Errorf("--cluster-reset on embedded etcd restarts this data dir's etcd member as a one-member cluster, but %s holds no etcd data", s.EtcdDir())
	case n.RestorePath != "":
		if _, err := os.Stat(n.RestorePath); err != nil {
			return fmt.Errorf("--cluster-reset-restore-path: %v", err)
		}
	}
	return nil
}

// validateRemoveMember refuses --remove-member where there is no
// embedded etcd member to remove. The usual flags of the server (even
// --cluster-init or --server, which a data dir holding etcd data ignores)
// are accepted with it.
func (s *Server) validateRemoveMember() error {
	if !s.RemoveMember {
		return nil
	}
	switch {
	case s.Datastore.Endpoint != "":
		return fmt.Errorf("--remove-member is for embedded etcd: servers on --datastore-endpoint share a database that has no members; stop the server and delete its Node (kubectl delete node)")
	case s.Snapshots.ClusterReset:
		return fmt.Errorf("--remove-member removes this server from its cluster, --cluster-reset makes it a cluster of its own: give one of them")
	case !s.HasEtcdData():
		if _, err := os.Stat(s.SQLiteDB()); err == nil {
			return fmt.Errorf("--remove-member is for embedded etcd: the data dir %s holds a SQLite datastore (%s), which has no members to remove", s.DataDir, s.SQLiteDB())
		}
		return fmt.Errorf("--remove-member is for embedded etcd: the data dir %s holds no etcd member data (%s); give this server's --data-dir", s.DataDir, s.EtcdDir())
	}
	return nil
}

// validateSchedule checks the scheduled snapshots' flags.
func (n *Snapshots) validateSchedule() error {
	if n.Schedule != "" {
		if _, err := cron.ParseStandard(n.Schedule); err != nil {
			return fmt.Errorf("invalid --snapshot-schedule %q: %v (use cron's five fields, e.g. \"0 */12 * * *\", or @every 6h)", n.Schedule, err)
		}
	}
	if n.Retention < 1 {
		return fmt.Errorf("invalid --snapshot-retention %d: keep at least 1 (or turn scheduled snapshots off with --disable-snapshots)", n.Retention)
	}
	return nil
}

func (n *Snapshots) validate(endpoint string) error {
	if err := n.validateSchedule(); err != nil {
		return err
	}
	external := endpoint != "" && !strings.HasPrefix(endpoint, "sqlite://")
	switch {
	case n.RestorePath != "" && !n.ClusterReset:
		return fmt.Errorf("--cluster-reset-restore-path needs --cluster-reset")
	case n.ClusterReset && n.RestorePath == "":
		return fmt.Errorf("--cluster-reset needs --cluster-reset-restore-path=FILE: k1s's SQLite datastore has no cluster membership to reset, only a snapshot to restore")
	case n.ClusterReset && external:
		return fmt.Errorf("--cluster-reset restores k1s's SQLite snapshots; with --datastore-endpoint %s restore with the datastore's own tool (pg_restore, mysql, etcdutl)", strings.SplitN(endpoint, "://", 2)[0]+"://…")
	}
	if n.RestorePath != "" {
		if _, err := os.Stat(n.RestorePath); err != nil {
			return fmt.Errorf("--cluster-reset-restore-path: %v", err)
		}
	}
	return nil
}

func (d *Datastore) validate() error {
	if d.ConnectTimeout <= 0 {
		return fmt.Errorf("--datastore-connect-timeout must be positive")
	}
	if d.CompactMinRetain < 0 {
		return fmt.Errorf("--datastore-compact-min-retain must not be negative")
	}
	if d.CompactBatchSize < MinCompactBatch {
		return fmt.Errorf("invalid --datastore-compact-batch-size %d: kine needs at least %d", d.CompactBatchSize, MinCompactBatch)
	}
	return nil
}

// completeDirs makes the data and run dirs absolute; the run dir defaults
// to DefaultRunDir.
func completeDirs(dataDir, runDir *string) error {
	if *dataDir == "" {
		return nil // Validate names it
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
	return nil
}

// validateDirs: both absolute, and containerd's socket path under the run
// dir must fit in a unix socket address (108 bytes).
func validateDirs(dataDir, runDir string) error {
	if dataDir == "" {
		return fmt.Errorf("--data-dir must not be empty")
	}
	if !filepath.IsAbs(dataDir) || !filepath.IsAbs(runDir) {
		return fmt.Errorf("--data-dir %q and --run-dir %q must be absolute paths", dataDir, runDir)
	}
	n := Node{RunDir: runDir}
	if l := len(n.ContainerdSocket()); l > 100 {
		return fmt.Errorf("--run-dir %s is too long for containerd's socket path (%d bytes): choose a shorter one", runDir, l)
	}
	return nil
}

// readTokenFile reads --token-file's first line into token; both given is
// an error.
func readTokenFile(token *string, tokenFile string) error {
	if tokenFile == "" {
		return nil
	}
	if *token != "" {
		return fmt.Errorf("--token and --token-file both given: use one of them")
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

// MinTokenSecret is the shortest join-token secret a server accepts.
const MinTokenSecret = 16

// tokenSecret splits a join token (K10<ca hash>::<user>:<secret>, or a bare
// secret) into its secret and whether it pins the server CA. Package pki
// parses tokens fully; this is only for checking flags.
func tokenSecret(tok string) (secret string, pinned bool) {
	tok = strings.TrimSpace(tok)
	if hash, creds, ok := strings.Cut(tok, "::"); ok && strings.HasPrefix(hash, "K10") {
		_, secret, _ = strings.Cut(creds, ":")
		return secret, true
	}
	return tok, false
}

func firstLine(s string) string {
	for i, c := range s {
		if c == '\n' || c == '\r' {
			return s[:i]
		}
	}
	return s
}
