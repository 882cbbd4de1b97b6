package node

import (
	"strconv"
	"strings"

	"github.com/k1s-io/k1s/internal/config"
	"github.com/k1s-io/k1s/internal/pki"
)

// Ports of kube-proxy's local endpoints (loopback only).
const (
	proxyHealthzPort = 10256 // kube-proxy's healthz; k1s reads the metrics
	proxyMetricsPort = 10249
)

// kubeProxyArgs: iptables mode by default (IPVS is not supported by
// k1s), loopback-only endpoints; user --kube-proxy-arg values come last.
func kubeProxyArgs(cfg *config.Node, files pki.NodeFiles) []string {
	args := []string{
		"--kubeconfig=" + files.ProxyKubeconfig(),
		"--hostname-override=" + cfg.NodeName,
		"--cluster-cidr=" + cfg.ClusterCIDR,
		"--proxy-mode=iptables",
		"--healthz-bind-address=127.0.0.1:" + strconv.Itoa(proxyHealthzPort),
		"--metrics-bind-address=127.0.0.1:" + strconv.Itoa(proxyMetricsPort),
		// kube-proxy shares the k1s process: leave its OOM score alone.
		"--oom-score-adj=0",
		// Raising nf_conntrack_max is a host-wide change k1s leaves to the operator.
		"--conntrack-max-per-core=0",
	}
	for _, a := range cfg.KubeProxyArgs {
		args = append(args, "--"+strings.TrimLeft(a, "-"))
	}
	return args
}
