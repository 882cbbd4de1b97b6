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

// NodeOptions are one node's own settings: the node flags `k1s server`
// and `k1s agent` share. A new node flag is a field here and one line in
// the CLI's nodeFlags.
type NodeOptions struct {
	NodeName   string // default: the hostname, lower-cased
	NodeIP     string // address the node registers and the kubelet serves on
	NodeLabels []string
	NodeTaints []string
	// PrivateRegistry is registries.yaml (k3s format); a missing file is fine.
	PrivateRegistry string
	KubeletArgs     []string
	KubeProxyArgs   []string
	// FlannelIface is the interface flannel uses (default: the node IP's).
	FlannelIface string
	// DisableNetworkPolicy turns NetworkPolicy enforcement off on this
	// node and removes its rules.
	DisableNetworkPolicy bool
}

// MaxNodeNameLength keeps `<name>.node-password.k1s`, the Secret that
// records who owns a name, within Kubernetes' 253-character limit.
const MaxNodeNameLength = 253 - len(".node-password.k1s")

// Node is everything one node needs, complete before its steps start:
// its own options and the cluster's settings.
type Node struct {
	DataDir string
	RunDir  string
	NodeOptions
	Cluster
	// APIServerURL is how this node's kubelet and kube-proxy reach the apiserver.
	APIServerURL string
}

// complete fills the node name from the hostname and the node IP from
// defaultIP when they were not given.
func (o *NodeOptions) complete(defaultIP func() (string, error)) error {
	if o.NodeName == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return fmt.Errorf("cannot determine the node name from the hostname (%v): set --node-name", err)
		}
		o.NodeName = strings.ToLower(h)
		if errs := validation.IsDNS1123Subdomain(o.NodeName); len(errs) > 0 {
			return fmt.Errorf("the hostname %q is not a valid node name (%s): set --node-name", h, strings.Join(errs, "; "))
		}
	}
	if o.NodeIP == "" {
		ip, err := defaultIP()
		if err != nil {
			return err
		}
		o.NodeIP = ip
	}
	return nil
}

// validate checks the node flags shared by server and agent. With
// complete, the name and IP must be there (complete filled them in);
// without (a server with --disable-agent) only what was given is checked.
func (o *NodeOptions) validate(complete bool) error {
	if complete || o.NodeName != "" {
		if errs := validation.IsDNS1123Subdomain(o.NodeName); len(errs) > 0 {
			return fmt.Errorf("invalid --node-name %q: %s", o.NodeName, strings.Join(errs, "; "))
		}
		if len(o.NodeName) > MaxNodeNameLength {
			return fmt.Errorf("invalid --node-name: %d characters, at most %d are allowed (k1s records the name's owner in a Secret named <name>.node-password.k1s)", len(o.NodeName), MaxNodeNameLength)
		}
	}
	if complete || o.NodeIP != "" {
		if p := net.ParseIP(o.NodeIP); p == nil || p.IsUnspecified() {
			return fmt.Errorf("invalid --node-ip %q: want this host's IP address, e.g. 192.168.1.10", o.NodeIP)
		}
	}
	for _, l := range o.NodeLabels {
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
	for _, t := range o.NodeTaints {
		if err := validateTaint(t); err != nil {
			return err
		}
	}
	if err := validateArgs("--kubelet-arg", o.KubeletArgs); err != nil {
		return err
	}
	return validateArgs("--kube-proxy-arg", o.KubeProxyArgs)
}

// validateArgs checks pass-through component flags (key=value).
func validateArgs(flag string, args []string) error {
	for _, a := range args {
		if k, _, ok := strings.Cut(a, "="); !ok || strings.TrimLeft(k, "-") == "" {
			return fmt.Errorf("invalid %s %q: want key=value, e.g. %s=v=2", flag, a, flag)
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

// NFTablesProxy reports whether kube-proxy was asked for nftables mode,
// so that flannel writes the same kind of rules.
func (n *Node) NFTablesProxy() bool {
	for _, a := range n.KubeProxyArgs {
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
