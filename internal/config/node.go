package config

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Node is what one node needs. `k1s server` fills one for its own node from
// its flags; `k1s agent` from its flags and from what the server tells it
// when it joins (the cluster settings).
type Node struct {
	DataDir string
	RunDir  string

	Name   string // default: the hostname
	IP     string // address the node registers and the kubelet serves on
	Labels []string
	Taints []string
	// PrivateRegistry is registries.yaml (k3s format); a missing file is fine.
	PrivateRegistry string
	KubeletArgs     []string
	ProxyArgs       []string

	// Cluster settings.
	ClusterCIDR   string
	ServiceCIDR   string
	ClusterDNS    string
	ClusterDomain string
	// APIServerURL is how this node's kubelet and kube-proxy reach the apiserver.
	APIServerURL string
	// FlannelBackend is the cluster's (the server decides); FlannelIface this node's.
	FlannelBackend string
	FlannelIface   string
}

// FlannelBackends are the values --flannel-backend takes; "none" leaves
// the Pod network to a CNI the user installs.
var FlannelBackends = []string{"vxlan", "host-gw", "none"}

func validateBackend(b string) error {
	for _, v := range FlannelBackends {
		if b == v {
			return nil
		}
	}
	return fmt.Errorf("invalid --flannel-backend %q: want one of %s", b, strings.Join(FlannelBackends, ", "))
}

// NFTablesProxy reports whether kube-proxy was asked for nftables mode,
// so that flannel writes the same kind of rules.
func (n *Node) NFTablesProxy() bool {
	for _, a := range n.ProxyArgs {
		a = strings.TrimLeft(a, "-")
		if a == "proxy-mode=nftables" {
			return true
		}
	}
	return false
}

// Node paths: persistent state under <data-dir>/agent, sockets and runtime
// state under the run dir.
func (n *Node) AgentDir() string       { return filepath.Join(n.DataDir, "agent") }
func (n *Node) ImagesDir() string      { return filepath.Join(n.AgentDir(), "images") }
func (n *Node) PKIDir() string         { return filepath.Join(n.AgentDir(), "pki") }
func (n *Node) BinDir() string         { return filepath.Join(n.AgentDir(), "bin") }
func (n *Node) PasswordPath() string   { return filepath.Join(n.AgentDir(), "node-password") }
func (n *Node) ContainerdRoot() string { return filepath.Join(n.AgentDir(), "containerd") }
func (n *Node) ContainerdConfigDir() string {
	return filepath.Join(n.AgentDir(), "etc", "containerd")
}
func (n *Node) ContainerdState() string { return filepath.Join(n.RunDir, "containerd") }
func (n *Node) ContainerdSocket() string {
	return filepath.Join(n.ContainerdState(), "containerd.sock")
}

// ResolveName fills Name from the hostname when it was not given.
func (n *Node) ResolveName() error {
	if n.Name != "" {
		return nil
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		return fmt.Errorf("cannot determine the node name from the hostname (%v): set --node-name", err)
	}
	n.Name = strings.ToLower(h)
	return nil
}

// validateNode checks the node flags shared by server and agent.
func validateNode(name, ip string, labels, taints []string, argLists ...[]string) error {
	if name != "" {
		if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
			return fmt.Errorf("invalid --node-name %q: %s", name, strings.Join(errs, "; "))
		}
	}
	if ip != "" {
		p := net.ParseIP(ip)
		if p == nil || p.IsUnspecified() {
			return fmt.Errorf("invalid --node-ip %q: want this host's IP address, e.g. 192.168.1.10", ip)
		}
	}
	for _, l := range labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			return fmt.Errorf("invalid --node-label %q: want key=value", l)
		}
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return fmt.Errorf("invalid --node-label %q: key: %s", l, strings.Join(errs, "; "))
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			return fmt.Errorf("invalid --node-label %q: value: %s", l, strings.Join(errs, "; "))
		}
	}
	for _, t := range taints {
		if err := validateTaint(t); err != nil {
			return err
		}
	}
	for _, args := range argLists {
		for _, a := range args {
			if k, _, ok := strings.Cut(a, "="); !ok || strings.TrimLeft(k, "-") == "" {
				return fmt.Errorf("invalid component argument %q: want key=value, e.g. --kubelet-arg=v=2", a)
			}
		}
	}
	return nil
}

// validateTaint accepts key[=value]:Effect, as kubelet's --register-with-taints.
func validateTaint(t string) error {
	kv, effect, ok := strings.Cut(t, ":")
	if !ok {
		return fmt.Errorf("invalid --node-taint %q: want key=value:Effect, e.g. dedicated=edge:NoSchedule", t)
	}
	switch corev1.TaintEffect(effect) {
	case corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
	default:
		return fmt.Errorf("invalid --node-taint %q: effect %q must be NoSchedule, PreferNoSchedule or NoExecute", t, effect)
	}
	k, v, _ := strings.Cut(kv, "=")
	if errs := validation.IsQualifiedName(k); len(errs) > 0 {
		return fmt.Errorf("invalid --node-taint %q: key: %s", t, strings.Join(errs, "; "))
	}
	if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
		return fmt.Errorf("invalid --node-taint %q: value: %s", t, strings.Join(errs, "; "))
	}
	return nil
}
