// Package node assembles a Kubernetes node inside k1s: the start-up steps
// that follow the control plane on a server. In order: the helper binaries,
// containerd, the air-gap images (and the sandbox image), the kubelet, and
// the CNI network once the node has its Pod CIDR. kube-proxy is still to
// come.
package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
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
	"github.com/k1s-io/k1s/internal/nodebin"
	"github.com/k1s-io/k1s/internal/pipeline"
	"github.com/k1s-io/k1s/internal/pki"
	"github.com/k1s-io/k1s/internal/preflight"
)

// SandboxImage is the pod sandbox ("pause") image; k1s builds it from the
// pause program it embeds, so no registry is needed.
const SandboxImage = "docker.io/k1s-io/pause:1.0"

const (
	containerdReadyTimeout = 60 * time.Second
	nodeRegisterTimeout    = 2 * time.Minute
	nodeReadyTimeout       = 2 * time.Minute
)

// BinDir holds the helper binaries (runc, shim, CNI plugins).
func BinDir(cfg *config.Server) string { return filepath.Join(cfg.AgentDir(), "bin") }

// ContainerdConfig derives containerd's settings from the k1s config and
// from what this host allows.
func ContainerdConfig(cfg *config.Server) containerd.Config {
	return containerd.Config{
		Root:                cfg.ContainerdRoot(),
		State:               cfg.ContainerdState(),
		Socket:              cfg.ContainerdSocket(),
		ConfigDir:           cfg.ContainerdConfigDir(),
		SandboxImage:        SandboxImage,
		CNIBinDir:           BinDir(cfg),
		CNIConfDir:          filepath.Join(cfg.AgentDir(), "etc", "cni", "net.d"),
		RegistryConfigDir:   filepath.Join(cfg.AgentDir(), "etc", "containerd", "certs.d"),
		RuncPath:            filepath.Join(BinDir(cfg), nodebin.Runc),
		ShimPath:            filepath.Join(BinDir(cfg), nodebin.Shim),
		RunDir:              cfg.RunDir,
		RestrictOOMScoreAdj: !containerd.HasCapSysResource(),
		SystemdCgroup:       cgroupDriver() == "systemd",
	}
}

// Node runs the steps of one node.
type Node struct {
	cfg  *config.Server
	pki  *pki.Result
	tls  pki.Files
	exec executor.Executor
	sup  *pipeline.Supervisor
	log  logrus.FieldLogger
	cc   containerd.Config
	name string
	kube kubernetes.Interface
}

// New prepares a node that reports to the cluster with the admin
// kubeconfig and CAs of res (the server's own node).
func New(cfg *config.Server, res *pki.Result, exec executor.Executor, sup *pipeline.Supervisor, log logrus.FieldLogger) *Node {
	return &Node{cfg: cfg, pki: res, tls: res.Files, exec: exec, sup: sup, log: log, cc: ContainerdConfig(cfg)}
}

// Steps are the node's start-up steps.
func (n *Node) Steps() []pipeline.Step {
	return []pipeline.Step{
		{Name: "host", Run: n.host},
		{Name: "containerd", Run: n.containerd},
		{Name: "images", Run: n.images},
		{Name: "kubelet", Run: n.kubelet},
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
	name, err := NodeName(n.cfg)
	if err != nil {
		return err
	}
	n.name = name
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); err == nil && strings.TrimSpace(string(b)) != "1" {
		if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
			return fmt.Errorf("net.ipv4.ip_forward is off and could not be enabled: %w", err)
		}
		n.log.Info("enabled net.ipv4.ip_forward for Pod traffic")
	}
	return nodebin.Install(BinDir(n.cfg))
}

func (n *Node) containerd(ctx context.Context) error {
	ready := make(chan struct{})
	n.sup.Go("containerd", func(ctx context.Context) error { return containerd.Run(ctx, n.cc, n.log, ready) })
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
	files := pki.NodeFiles{Dir: filepath.Join(n.cfg.AgentDir(), "pki")}
	events, err := pki.EnsureNode(n.pki, files.Dir, n.name, n.cfg.AdvertiseAddress, n.cfg.APIServerURL(), time.Now())
	if err != nil {
		return err
	}
	for _, ev := range events {
		n.log.Infof("%s %s", ev.Action, ev.Name)
	}
	cfgPath := filepath.Join(n.cfg.AgentDir(), "etc", "kubelet.yaml")
	kc := kubeletConfig(n.cfg, n.tls, files)
	if err := writeKubeletConfig(cfgPath, kc); err != nil {
		return err
	}
	// The kubelet polls this folder and logs every second while it is missing.
	if err := os.MkdirAll(kc["staticPodPath"].(string), 0o700); err != nil {
		return err
	}
	rc, err := clientcmd.BuildConfigFromFlags("", n.tls.AdminKubeconfig())
	if err != nil {
		return err
	}
	if n.kube, err = kubernetes.NewForConfig(rc); err != nil {
		return err
	}
	args := kubeletArgs(n.cfg, cfgPath, files, n.name)
	n.sup.Go("kubelet", func(ctx context.Context) error { return n.exec.Kubelet(ctx, args) })
	var last string
	return n.sup.Wait(ctx, "node "+n.name+" registration", nodeRegisterTimeout, func(ctx context.Context) bool {
		_, err := n.kube.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
		}
		return err == nil
	}, func() string { return last })
}

// cni writes the network config once the node has a Pod CIDR, then waits
// for the node to turn Ready.
func (n *Node) cni(ctx context.Context) error {
	var podCIDR, last string
	err := n.sup.Wait(ctx, "Pod CIDR of node "+n.name, nodeReadyTimeout, func(ctx context.Context) bool {
		node, err := n.kube.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false
		}
		podCIDR = node.Spec.PodCIDR
		return podCIDR != ""
	}, func() string { return last })
	if err != nil {
		return err
	}
	if err := writeCNIConfig(n.cc.CNIConfDir, podCIDR); err != nil {
		return err
	}
	n.log.Infof("node %s: Pod network %s on bridge %s", n.name, podCIDR, BridgeName)
	return n.sup.Wait(ctx, "node "+n.name+" Ready", nodeReadyTimeout, func(ctx context.Context) bool {
		node, err := n.kube.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
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
