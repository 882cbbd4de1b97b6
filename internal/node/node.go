// Package node assembles a Kubernetes node inside k1s, for the server's own
// node and for `k1s agent` alike, from a complete config.Node. Its steps,
// in order: the host checks and helper binaries, containerd, the air-gap
// images (and the sandbox image) (Prepare); the node's credentials, flannel
// (the path to other nodes' Pods; it starts early and waits for the Pod
// CIDR itself), the kubelet, kube-proxy, the node's Pod CIDR, kube-proxy's
// first rules, flannel's network, NetworkPolicy enforcement
// (internal/netpol) and the CNI bridge (Join). Each component is started on the supervisor with its stop
// timeout, so stopping the supervisor stops the node in reverse.
package node

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/k1s-io/k1s/internal/config"
	"github.com/k1s-io/k1s/internal/containerd"
	"github.com/k1s-io/k1s/internal/executor"
	"github.com/k1s-io/k1s/internal/flannel"
	"github.com/k1s-io/k1s/internal/netpol"
	"github.com/k1s-io/k1s/internal/nodebin"
	"github.com/k1s-io/k1s/internal/pipeline"
	"github.com/k1s-io/k1s/internal/pki"
	"github.com/k1s-io/k1s/internal/preflight"
	"github.com/k1s-io/k1s/internal/registries"
)

// SandboxImage is the pod sandbox ("pause") image; k1s builds it from the
// pause program it embeds, so no registry is needed.
const SandboxImage = "docker.io/k1s-io/pause:1.0"

const (
	containerdReadyTimeout = 60 * time.Second
	nodeRegisterTimeout    = 2 * time.Minute
	nodeReadyTimeout       = 2 * time.Minute
	proxyReadyTimeout      = time.Minute
	netpolReadyTimeout     = time.Minute
)

// How long shutdown waits for each component. Containers keep running.
const (
	stopKubeProxy  = 10 * time.Second
	stopFlannel    = 10 * time.Second
	stopNetpol     = 5 * time.Second
	stopKubelet    = 30 * time.Second
	stopContainerd = 30 * time.Second
)

// ContainerdConfig derives containerd's settings from the node config and
// from what this host allows.
func ContainerdConfig(cfg *config.Node) containerd.Config {
	return containerd.Config{
		Binary:              filepath.Join(cfg.BinDir(), nodebin.Containerd),
		Root:                cfg.ContainerdRoot(),
		State:               cfg.ContainerdState(),
		Socket:              cfg.ContainerdSocket(),
		ConfigDir:           cfg.ContainerdConfigDir(),
		SandboxImage:        SandboxImage,
		CNIBinDir:           cfg.BinDir(),
		CNIConfDir:          filepath.Join(cfg.AgentDir(), "etc", "cni", "net.d"),
		RegistryConfigDir:   filepath.Join(cfg.ContainerdConfigDir(), "certs.d"),
		RuncPath:            filepath.Join(cfg.BinDir(), nodebin.Runc),
		ShimPath:            filepath.Join(cfg.BinDir(), nodebin.Shim),
		RunDir:              cfg.RunDir,
		RestrictOOMScoreAdj: !containerd.HasCapSysResource(),
		SystemdCgroup:       cgroupDriver() == "systemd",
	}
}

// Credentials writes the node's certificates and kubeconfigs
// (pki.NodeFiles) into dir: the server issues them itself, an agent writes
// what the server gave it when it joined. It must not change the config.
type Credentials func(ctx context.Context, cfg config.Node, dir string) error

// Node runs the steps of one node.
type Node struct {
	cfg   config.Node
	creds Credentials
	files pki.NodeFiles
	exec  executor.Executor
	sup   *pipeline.Supervisor
	log   logrus.FieldLogger
	cc    containerd.Config
	kube  kubernetes.Interface

	podNet  string
	network flannel.Network // zero with --flannel-backend=none
	// podCIDRKnown is closed once podNet is set.
	podCIDRKnown chan struct{}
	// flannelReady delivers flannel's network once (nil: no flannel).
	flannelReady <-chan flannel.Network

	proxyMetrics string // kube-proxy's metrics URL, where its first sync shows
}

// New prepares a node; cfg is complete (config.Server.Node, config.Agent.Node).
func New(cfg config.Node, creds Credentials, exec executor.Executor, sup *pipeline.Supervisor, log logrus.FieldLogger) *Node {
	n := &Node{cfg: cfg, creds: creds, exec: exec, sup: sup, log: log, podCIDRKnown: make(chan struct{})}
	n.files = pki.NodeFiles{Dir: n.cfg.PKIDir()}
	n.cc = ContainerdConfig(&n.cfg)
	n.proxyMetrics = "http://127.0.0.1:" + strconv.Itoa(proxyMetricsPort) + "/metrics"
	return n
}

// Steps are the node's start-up steps: Prepare's, then Join's.
func (n *Node) Steps() []pipeline.Step {
	return append(n.Prepare(), n.Join()...)
}

// Prepare are the steps that need only this host, not the cluster: a
// server runs them while its apiserver starts.
func (n *Node) Prepare() []pipeline.Step {
	return []pipeline.Step{
		{Name: "host", Run: n.host},
		{Name: "containerd", Run: n.containerd},
		{Name: "images", Run: n.images},
	}
}

// Join are the steps that need the cluster's apiserver.
func (n *Node) Join() []pipeline.Step {
	return []pipeline.Step{
		{Name: "credentials", Run: n.credentials},
		// flannel first: it needs a second before it can use the Pod CIDR
		// (its subnet manager polls its node informer once a second), so
		// it starts before the kubelet and waits for the CIDR itself;
		// pod-network waits for it after kube-proxy's first sync.
		{Name: "flannel", Run: n.flannel},
		{Name: "kubelet", Run: n.kubelet},
		// kube-proxy needs the registered Node, not its Pod CIDR: it
		// starts here and writes its rules while the CIDR is assigned.
		{Name: "kube-proxy", Run: n.kubeProxy},
		{Name: "pod-cidr", Run: n.podCIDR},
		// kube-proxy's rules before the CNI config lets Pods start: a Pod
		// that dials a Service IP before them gets a conntrack entry
		// without DNAT and hangs until its dial times out (CoreDNS: 30 s).
		{Name: "kube-proxy-sync", Run: n.kubeProxySynced},
		{Name: "pod-network", Run: n.podNetwork},
		// Policies before Pods start (cni), so a Pod of a default-deny
		// namespace is never open after a restart.
		{Name: "network-policy", Run: n.networkPolicy},
		{Name: "cni", Run: n.cni},
	}
}

// host checks and prepares what the kernel must allow, and installs the
// helper binaries.
func (n *Node) host(context.Context) error {
	pre := preflight.Real().Check()
	for _, w := range pre.Warnings {
		n.log.Warn(w)
	}
	if err := pre.Error(); err != nil {
		return err
	}
	if err := enableSysctl("net/ipv4/ip_forward", "Pod traffic", n.log); err != nil {
		return err
	}
	// Bridged Pod traffic must pass iptables for Services to work between
	// Pods on one node; the knob exists only once br_netfilter is loaded.
	if _, err := os.Stat("/proc/sys/net/bridge/bridge-nf-call-iptables"); err == nil {
		if err := enableSysctl("net/bridge/bridge-nf-call-iptables", "Services between Pods on this node", n.log); err != nil {
			return err
		}
	} else {
		n.log.Warn("br_netfilter is not loaded (no /proc/sys/net/bridge): a Pod may not reach a Service backed by a Pod on the same node; run 'modprobe br_netfilter'")
	}
	if w := diskWarning(n.cfg.DataDir); w != "" {
		n.log.Warn(w)
	}
	if err := n.registries(); err != nil {
		return err
	}
	return nodebin.Install(n.cfg.BinDir())
}

func enableSysctl(name, why string, log logrus.FieldLogger) error {
	path := "/proc/sys/" + name
	b, err := os.ReadFile(path)
	if err != nil || strings.TrimSpace(string(b)) == "1" {
		return nil
	}
	if err := os.WriteFile(path, []byte("1"), 0o644); err != nil {
		return fmt.Errorf("%s is off and could not be enabled (needed for %s): %w", strings.ReplaceAll(name, "/", "."), why, err)
	}
	log.Infof("enabled %s for %s", strings.ReplaceAll(name, "/", "."), why)
	return nil
}

// registries turns registries.yaml into containerd's hosts directory.
func (n *Node) registries() error {
	r, err := registries.Load(n.cfg.PrivateRegistry)
	if err != nil {
		return err
	}
	if r != nil {
		for _, w := range r.Warnings {
			n.log.Warn(w)
		}
		n.log.Infof("private registries from %s", n.cfg.PrivateRegistry)
	}
	return registries.WriteHostsDir(n.cc.RegistryConfigDir, r)
}

func (n *Node) credentials(ctx context.Context) error {
	if err := n.creds(ctx, n.cfg, n.files.Dir); err != nil {
		return err
	}
	rc, err := clientcmd.BuildConfigFromFlags("", n.files.Kubeconfig())
	if err != nil {
		return err
	}
	n.kube, err = kubernetes.NewForConfig(rc)
	return err
}

func (n *Node) containerd(ctx context.Context) error {
	ready := make(chan struct{})
	n.sup.Go("containerd", stopContainerd, func(ctx context.Context) error { return containerd.Run(ctx, n.cc, n.log, ready) })
	isReady := func(context.Context) bool {
		select {
		case <-ready:
			return true
		default:
			return false
		}
	}
	return n.sup.Wait(ctx, "containerd", containerdReadyTimeout, isReady, func() string { return "see " + n.cc.LogPath() })
}

func (n *Node) images(ctx context.Context) error {
	built, err := containerd.EnsureImage(ctx, n.cc.Socket, SandboxImage, func() ([]byte, error) { return nodebin.PauseImage(SandboxImage) })
	if err != nil {
		return fmt.Errorf("sandbox image: %w", err)
	}
	if built {
		n.log.Infof("sandbox image %s built and imported", SandboxImage)
	}
	res, err := containerd.ImportDir(ctx, n.cc.Socket, n.cfg.ImagesDir(), filepath.Join(n.cc.Root, "k1s-imported-images.json"), n.log)
	if err != nil {
		return err
	}
	n.log.Infof("air-gap images in %s: %d imported, %d already present, %d failed",
		n.cfg.ImagesDir(), len(res.Imported), len(res.Skipped), len(res.Failed))
	return nil
}

func (n *Node) kubelet(ctx context.Context) error {
	cfgPath := filepath.Join(n.cfg.AgentDir(), "etc", "kubelet.yaml")
	kc := kubeletConfig(&n.cfg, n.files)
	if err := writeKubeletConfig(cfgPath, kc); err != nil {
		return err
	}
	// The kubelet polls this folder and logs every second while it is missing.
	if err := os.MkdirAll(kc["staticPodPath"].(string), 0o700); err != nil {
		return err
	}
	args := kubeletArgs(&n.cfg, cfgPath, n.files)
	n.sup.Go("kubelet", stopKubelet, func(ctx context.Context) error { return n.exec.Kubelet(ctx, args) })
	var last string
	return n.sup.Wait(ctx, "node "+n.cfg.NodeName+" registration", nodeRegisterTimeout, func(ctx context.Context) bool {
		_, err := n.kube.CoreV1().Nodes().Get(ctx, n.cfg.NodeName, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
		}
		return err == nil
	}, func() string { return last })
}

// podCIDR waits for the controller-manager to give the node its Pod CIDR.
func (n *Node) podCIDR(ctx context.Context) error {
	var last string
	err := n.sup.Wait(ctx, "Pod CIDR of node "+n.cfg.NodeName, nodeReadyTimeout, func(ctx context.Context) bool {
		node, err := n.kube.CoreV1().Nodes().Get(ctx, n.cfg.NodeName, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false
		}
		n.podNet = node.Spec.PodCIDR
		return n.podNet != ""
	}, func() string { return last })
	if err == nil {
		close(n.podCIDRKnown)
	}
	return err
}

// flannel starts linking this node's Pod CIDR with the other nodes' once
// podCIDR has it; podNetwork waits for the result.
func (n *Node) flannel(ctx context.Context) error {
	if n.cfg.FlannelBackend == flannel.None {
		n.log.Info("--flannel-backend=none: k1s sets up no Pod network; the node turns Ready once your CNI plugin writes its config to " + n.cc.CNIConfDir)
		return nil
	}
	fc := flannel.Config{
		Backend: n.cfg.FlannelBackend, Iface: n.cfg.FlannelIface,
		NodeName: n.cfg.NodeName, NodeIP: n.cfg.NodeIP, ClusterCIDR: n.cfg.ClusterCIDR,
		Kubeconfig: n.files.FlannelKubeconfig(), NFTables: n.cfg.NFTablesProxy(),
		ConfDir:    filepath.Join(n.cfg.AgentDir(), "etc", "flannel"),
		SubnetFile: filepath.Join(n.cfg.RunDir, "flannel", "subnet.env"),
		PodCIDR: func(ctx context.Context) error {
			select {
			case <-n.podCIDRKnown:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		},
	}
	ready := make(chan flannel.Network, 1)
	n.flannelReady = ready
	n.sup.Go("flannel", stopFlannel, func(ctx context.Context) error {
		return flannel.Run(ctx, fc, func(nw flannel.Network) { ready <- nw })
	})
	return nil
}

// podNetwork waits for flannel's network (started by the flannel step).
func (n *Node) podNetwork(ctx context.Context) error {
	if n.flannelReady == nil {
		return nil // --flannel-backend=none
	}
	got := func(context.Context) bool {
		select {
		case nw := <-n.flannelReady:
			n.network = nw
			return true
		default:
			return false
		}
	}
	if err := n.sup.Wait(ctx, "flannel "+n.cfg.FlannelBackend+" network", nodeReadyTimeout, got, func() string { return "see the flannel lines above" }); err != nil {
		return err
	}
	n.log.Infof("flannel %s: Pod network %s, MTU %d, via %s", n.cfg.FlannelBackend, n.network.Subnet, n.network.MTU, n.network.Iface)
	return nil
}

// cni writes the Pods' network config, then waits for the node to turn Ready.
func (n *Node) cni(ctx context.Context) error {
	if n.cfg.FlannelBackend == flannel.None {
		return nil
	}
	if err := writeCNIConfig(n.cc.CNIConfDir, n.podNet, filepath.Join(n.cfg.RunDir, "cni-ipam"), n.network.MTU); err != nil {
		return err
	}
	n.log.Infof("node %s: Pods on bridge %s in %s", n.cfg.NodeName, BridgeName, n.podNet)
	var last string
	return n.sup.Wait(ctx, "node "+n.cfg.NodeName+" Ready", nodeReadyTimeout, func(ctx context.Context) bool {
		node, err := n.kube.CoreV1().Nodes().Get(ctx, n.cfg.NodeName, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady {
				last = c.Reason + ": " + c.Message
				return c.Status == corev1.ConditionTrue
			}
		}
		return false
	}, func() string { return last })
}

// kubeProxy starts kube-proxy once the node exists (it exits the process
// if its Node has no addresses, and polls only once a second for one).
func (n *Node) kubeProxy(context.Context) error {
	args := kubeProxyArgs(&n.cfg, n.files)
	n.sup.Go("kube-proxy", stopKubeProxy, func(ctx context.Context) error { return n.exec.KubeProxy(ctx, args) })
	return nil
}

// kubeProxySynced waits until kube-proxy has written its rules once: its
// healthz answers before that, its metrics tell.
func (n *Node) kubeProxySynced(ctx context.Context) error {
	url := n.proxyMetrics
	var last string
	return n.sup.Wait(ctx, "kube-proxy's first rules sync ("+url+")", proxyReadyTimeout, func(ctx context.Context) bool {
		synced, err := proxySynced(ctx, url)
		if err != nil {
			last = err.Error()
		}
		return synced
	}, func() string { return last })
}

// proxySynced reads kube-proxy's last sync time of its IPv4 rules.
func proxySynced(ctx context.Context, url string) (bool, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return false, err
	}
	const metric = `kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family="IPv4"} `
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, metric); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return err == nil && f > 0, err
		}
	}
	return false, fmt.Errorf("no rules synced yet")
}

// networkPolicy starts the NetworkPolicy enforcer and waits for its first
// rules; with --disable-network-policy it removes what an earlier start wrote.
func (n *Node) networkPolicy(ctx context.Context) error {
	if n.cfg.DisableNetworkPolicy {
		removed, err := netpol.Cleanup()
		if err != nil {
			return fmt.Errorf("--disable-network-policy: removing the policy rules of an earlier start: %w", err)
		}
		if removed > 0 {
			n.log.Infof("--disable-network-policy: removed %d NetworkPolicy chains and sets of an earlier start", removed)
		}
		return nil
	}
	rc, err := clientcmd.BuildConfigFromFlags("", n.files.NetworkPolicyKubeconfig())
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	if n.cfg.NFTablesProxy() {
		n.log.Info("NetworkPolicies are enforced with iptables rules next to kube-proxy's nftables tables")
	}
	ready := make(chan struct{})
	c := &netpol.Controller{Client: cs, Node: n.cfg.NodeName, Log: n.log.WithField("component", "network-policy")}
	n.sup.Go("network-policy", stopNetpol, func(ctx context.Context) error {
		return c.Run(ctx, func() { close(ready) })
	})
	return n.sup.Wait(ctx, "network policy rules", netpolReadyTimeout, func(context.Context) bool {
		select {
		case <-ready:
			return true
		default:
			return false
		}
	}, func() string { return "see the network-policy lines above" })
}
