package cli

import (
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/k1s-io/k1s/internal/config"
)

// envName is the environment variable that sets a flag: K1S_<FLAG>.
func envName(flag string) string {
	return "K1S_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// binder declares flags once and remembers how each lands in the config
// struct. Scalars are bound through Destination; lists are copied after
// parsing because urfave keeps them in its own type.
type binder struct {
	flags  []cli.Flag
	slices []sliceBinding
}

type sliceBinding struct {
	name string
	dst  *[]string
}

func (b *binder) str(name, usage string, dst *string, value string, aliases ...string) {
	b.flags = append(b.flags, &cli.StringFlag{Name: name, Aliases: aliases, Usage: usage, EnvVars: []string{envName(name)}, Value: value, Destination: dst})
}

// strEnv is str with an environment variable of another name.
func (b *binder) strEnv(name, env, usage string, dst *string, aliases ...string) {
	b.flags = append(b.flags, &cli.StringFlag{Name: name, Aliases: aliases, Usage: usage, EnvVars: []string{env}, Destination: dst})
}

func (b *binder) int(name, usage string, dst *int, value int, aliases ...string) {
	b.flags = append(b.flags, &cli.IntFlag{Name: name, Aliases: aliases, Usage: usage, EnvVars: []string{envName(name)}, Value: value, Destination: dst})
}

func (b *binder) int64(name, usage string, dst *int64, value int64) {
	b.flags = append(b.flags, &cli.Int64Flag{Name: name, Usage: usage, EnvVars: []string{envName(name)}, Value: value, Destination: dst})
}

func (b *binder) bool(name, usage string, dst *bool, aliases ...string) {
	b.flags = append(b.flags, &cli.BoolFlag{Name: name, Aliases: aliases, Usage: usage, EnvVars: []string{envName(name)}, Destination: dst})
}

// boolOn is a bool flag that is on unless turned off (--name=false).
func (b *binder) boolOn(name, usage string, dst *bool) {
	b.flags = append(b.flags, &cli.BoolFlag{Name: name, Usage: usage, EnvVars: []string{envName(name)}, Value: true, Destination: dst})
}

func (b *binder) duration(name, usage string, dst *time.Duration, value time.Duration) {
	b.flags = append(b.flags, &cli.DurationFlag{Name: name, Usage: usage, EnvVars: []string{envName(name)}, Value: value, Destination: dst})
}

func (b *binder) list(name, usage string, dst *[]string) {
	b.flags = append(b.flags, &cli.StringSliceFlag{Name: name, Usage: usage, EnvVars: []string{envName(name)}})
	b.slices = append(b.slices, sliceBinding{name: name, dst: dst})
}

// collect copies list flags into the config struct once parsing and the
// config file are done.
func (b *binder) collect(c *cli.Context) {
	for _, s := range b.slices {
		*s.dst = append([]string(nil), c.StringSlice(s.name)...)
	}
}

// serverFlags declares every `k1s server` flag, bound to cfg.
func serverFlags(cfg *config.Server) *binder {
	b := &binder{}
	commonFlags(b, &cfg.ConfigFile, &cfg.Debug, &cfg.DataDir, &cfg.RunDir)
	b.str("bind-address", "address the apiserver listens on", &cfg.BindAddress, config.DefaultBindAddress)
	b.int("https-listen-port", "apiserver HTTPS port", &cfg.HTTPSPort, config.DefaultHTTPSPort)
	b.str("advertise-address", "IP the apiserver advertises to the cluster (default: this host's primary IP)", &cfg.AdvertiseAddress, "")
	b.list("tls-san", "extra hostname or IP for the apiserver serving certificate (repeatable)", &cfg.TLSSANs)
	clusterFlags(b, &cfg.Cluster)
	b.str("token", "join token secret, or a full K10 token", &cfg.Token, "", "t")
	b.str("token-file", "file holding the join token", &cfg.TokenFile, "")
	b.bool("cluster-init", "start a new cluster on an embedded etcd member instead of SQLite (other servers can join it; a data dir holding etcd data starts on it without this flag)", &cfg.ClusterInit)
	b.str("server", "URL of a server of an embedded-etcd cluster to join on the first start, e.g. https://10.0.0.1:6443 (with the cluster's --token)", &cfg.ServerURL, "", "s")
	b.bool("remove-member", "embedded etcd, with this server stopped: remove its etcd member from the cluster, move <data-dir>/server/db/etcd aside, delete its Node, and exit (to join again later: --server)", &cfg.RemoveMember)
	b.str("datastore-endpoint", "postgres://, mysql://, sqlite:// or https:// etcd endpoints (default: SQLite in the data dir)", &cfg.Datastore.Endpoint, "")
	b.str("datastore-cafile", "CA bundle for the datastore's TLS", &cfg.Datastore.CAFile, "")
	b.str("datastore-certfile", "client certificate for the datastore", &cfg.Datastore.CertFile, "")
	b.str("datastore-keyfile", "client key for the datastore", &cfg.Datastore.KeyFile, "")
	b.duration("datastore-connect-timeout", "how long start-up waits for the datastore", &cfg.Datastore.ConnectTimeout, config.DefaultDatastoreWait)
	b.duration("datastore-compact-interval", "how often old revisions are compacted (0 disables)", &cfg.Datastore.CompactInterval, config.DefaultCompactInterval)
	b.duration("datastore-compact-timeout", "time limit of one compaction batch", &cfg.Datastore.CompactTimeout, config.DefaultCompactTimeout)
	b.int64("datastore-compact-min-retain", "revisions always kept by compaction beyond the last interval's history", &cfg.Datastore.CompactMinRetain, config.DefaultCompactRetain)
	b.int64("datastore-compact-batch-size", "revisions removed per compaction batch", &cfg.Datastore.CompactBatchSize, config.DefaultCompactBatch)
	b.bool("disable-snapshots", "take no scheduled snapshots of the embedded datastore (SQLite or etcd)", &cfg.Snapshots.Disable, "etcd-disable-snapshots")
	b.str("snapshot-schedule", "when to snapshot the embedded datastore, SQLite or etcd (cron, e.g. \"0 */12 * * *\", or @every 6h)", &cfg.Snapshots.Schedule, config.DefaultSnapshotSchedule, "etcd-snapshot-schedule-cron")
	b.int("snapshot-retention", "scheduled snapshots to keep", &cfg.Snapshots.Retention, config.DefaultSnapshotRetention, "etcd-snapshot-retention")
	b.str("snapshot-dir", "where snapshots go (default <data-dir>/server/snapshots)", &cfg.Snapshots.Dir, "", "etcd-snapshot-dir")
	b.bool("cluster-reset", "restore the datastore from --cluster-reset-restore-path once, then start (embedded etcd: as a one-member cluster); on embedded etcd without it: restart this member once as a one-member cluster with its data (after quorum loss)", &cfg.Snapshots.ClusterReset)
	b.str("cluster-reset-restore-path", "snapshot file to restore (with --cluster-reset): a SQLite snapshot on a SQLite server, an etcd snapshot on an embedded-etcd one; the replaced data is kept beside it", &cfg.Snapshots.RestorePath, "")
	b.str("write-kubeconfig", "where the admin kubeconfig is written", &cfg.WriteKubeconfig, config.DefaultKubeconfig, "o")
	b.str("write-kubeconfig-mode", "file mode of the admin kubeconfig", &cfg.WriteKubeconfigMode, config.DefaultKubeconfigMode)
	b.int("kube-scheduler-port", "loopback HTTPS port of the scheduler's health endpoints", &cfg.SchedulerPort, config.DefaultSchedulerPort)
	b.int("kube-controller-manager-port", "loopback HTTPS port of the controller-manager's health endpoints", &cfg.ControllerPort, config.DefaultControllerPort)
	b.list("kube-apiserver-arg", "extra kube-apiserver flag as key=value (repeatable)", &cfg.ExtraAPIServerArgs)
	b.list("kube-scheduler-arg", "extra kube-scheduler flag as key=value (repeatable)", &cfg.ExtraSchedulerArgs)
	b.list("kube-controller-manager-arg", "extra kube-controller-manager flag as key=value (repeatable)", &cfg.ExtraControllerManagerArgs)
	b.bool("disable-agent", "run only the control plane, no node", &cfg.DisableAgent)
	b.boolOn("secrets-encryption", "encrypt Secrets at rest (secretbox; --secrets-encryption=false stores new writes in the clear)", &cfg.SecretsEncryption)
	b.list("disable", "built-in add-on not to deploy: coredns, servicelb, ingress, metrics-server, local-storage, helm-controller, dashboard (repeatable or comma-separated)", &cfg.Disable)
	b.str("system-default-registry", "registry (host[/path]) prefixed to the add-ons' images, e.g. a mirror of docker.io", &cfg.SystemDefaultRegistry, "")
	b.str("default-local-storage-path", "directory of local-path volumes on every node (default <data-dir>/storage)", &cfg.DefaultLocalStoragePath, "")
	nodeFlags(b, &cfg.NodeOptions, "IP this node registers with (default: --advertise-address)")
	return b
}

// commonFlags are the flags every long-running command has.
func commonFlags(b *binder, configFile *string, debug *bool, dataDir, runDir *string) {
	b.str("config", "YAML config file; its keys are these flag names", configFile, config.DefaultConfigFile, "c")
	b.bool("debug", "verbose logging", debug)
	b.str("data-dir", "directory for all state", dataDir, config.DefaultDataDir, "d")
	b.str("run-dir", "directory for sockets and runtime state of the node", runDir, config.DefaultRunDir)
}

// clusterFlags declares the cluster-wide settings; only a server takes
// them (agents receive them when they join).
func clusterFlags(b *binder, c *config.Cluster) {
	b.str("cluster-cidr", "network for Pod IPs", &c.ClusterCIDR, config.DefaultClusterCIDR)
	b.str("service-cidr", "network for Service ClusterIPs", &c.ServiceCIDR, config.DefaultServiceCIDR)
	b.str("cluster-dns", "ClusterIP of the cluster DNS service", &c.ClusterDNS, config.DefaultClusterDNS)
	b.str("cluster-domain", "cluster DNS domain", &c.ClusterDomain, config.DefaultClusterDomain)
	b.str("flannel-backend", "Pod network between nodes: "+strings.Join(config.FlannelBackends, ", ")+" (none: install your own CNI)", &c.FlannelBackend, config.DefaultFlannelBackend)
}

// nodeFlags declares the flags a server and an agent share for their node.
func nodeFlags(b *binder, o *config.NodeOptions, ipUsage string) {
	b.str("node-name", "name of this node (default: the hostname)", &o.NodeName, "")
	b.str("node-ip", ipUsage, &o.NodeIP, "")
	b.list("node-label", "label key=value the node registers with (repeatable)", &o.NodeLabels)
	b.list("node-taint", "taint key=value:Effect the node registers with (repeatable)", &o.NodeTaints)
	b.str("private-registry", "private registry configuration (mirrors, auth, TLS; k3s's registries.yaml format)", &o.PrivateRegistry, config.DefaultRegistries)
	b.list("kubelet-arg", "extra kubelet flag as key=value (repeatable)", &o.KubeletArgs)
	b.list("kube-proxy-arg", "extra kube-proxy flag as key=value, e.g. proxy-mode=nftables (repeatable)", &o.KubeProxyArgs)
	b.str("flannel-iface", "interface flannel sends Pod traffic to other nodes by (default: the one holding the node IP)", &o.FlannelIface, "")
	b.bool("disable-network-policy", "do not enforce NetworkPolicies on this node (and remove k1s's policy rules)", &o.DisableNetworkPolicy)
}

// agentFlags declares every `k1s agent` flag, bound to cfg.
func agentFlags(cfg *config.Agent) *binder {
	b := &binder{}
	commonFlags(b, &cfg.ConfigFile, &cfg.Debug, &cfg.DataDir, &cfg.RunDir)
	b.strEnv("server", "K1S_URL", "URL of a k1s server to join, e.g. https://10.0.0.1:6443", &cfg.ServerURL, "s")
	b.str("token", "join token from the server's <data-dir>/server/token", &cfg.Token, "", "t")
	b.str("token-file", "file holding the join token", &cfg.TokenFile, "")
	b.bool("insecure-skip-ca-check", "allow a bare token secret, which does not pin the server's CA", &cfg.InsecureSkipCACheck)
	b.int("apiserver-lb-port", "loopback port of the agent's load balancer over all servers, which the node's clients use so that losing one server does not cut the node off (0: use --server directly)", &cfg.APIServerLBPort, config.DefaultAPIServerLBPort)
	nodeFlags(b, &cfg.NodeOptions, "IP this node registers with (default: this host's primary IP)")
	return b
}
