package node

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"sigs.k8s.io/yaml"

	"github.com/k1s-io/k1s/internal/atomicfile"
	"github.com/k1s-io/k1s/internal/config"
	"github.com/k1s-io/k1s/internal/pki"
)

// kubeletConfig is the KubeletConfiguration k1s generates. Only what k1s
// decides is set; the kubelet's own defaults fill the rest.
func kubeletConfig(cfg *config.Node, node pki.NodeFiles) map[string]any {
	c := map[string]any{
		"apiVersion": "kubelet.config.k8s.io/v1beta1",
		"kind":       "KubeletConfiguration",
		"authentication": map[string]any{
			"anonymous": map[string]any{"enabled": false},
			"webhook":   map[string]any{"enabled": true},
			"x509":      map[string]any{"clientCAFile": node.ClientCA()},
		},
		"authorization":            map[string]any{"mode": "Webhook"},
		"clusterDNS":               []string{cfg.ClusterDNS},
		"clusterDomain":            cfg.ClusterDomain,
		"containerRuntimeEndpoint": "unix://" + cfg.ContainerdSocket(),
		"tlsCertFile":              node.ServingCert(),
		"tlsPrivateKeyFile":        node.ServingKey(),
		"healthzBindAddress":       "127.0.0.1",
		"readOnlyPort":             0,
		"serializeImagePulls":      false,
		"staticPodPath":            filepath.Join(cfg.AgentDir(), "pod-manifests"),
		// The kubelet runs inside k1s: it must not move or re-score this process.
		"oomScoreAdj":  0,
		"cgroupDriver": cgroupDriver(),
		// Kubernetes refuses cgroup v1 unless told; these hosts have nothing else.
		"failCgroupV1": false,
	}
	if n := hardNoFile(); n > 0 {
		c["maxOpenFiles"] = n
	}
	if _, err := os.Stat("/etc/resolv.conf"); err == nil {
		c["resolvConf"] = "/etc/resolv.conf"
	}
	return c
}

// KubeletArgs are the kubelet flags; user --kubelet-arg values come last and win.
func kubeletArgs(cfg *config.Node, configPath string, node pki.NodeFiles) []string {
	args := []string{
		"--config=" + configPath,
		"--kubeconfig=" + node.Kubeconfig(),
		"--hostname-override=" + cfg.NodeName,
		"--node-ip=" + cfg.NodeIP,
		"--cert-dir=" + node.Dir,
	}
	if len(cfg.NodeLabels) > 0 {
		args = append(args, "--node-labels="+strings.Join(cfg.NodeLabels, ","))
	}
	if len(cfg.NodeTaints) > 0 {
		args = append(args, "--register-with-taints="+strings.Join(cfg.NodeTaints, ","))
	}
	for _, a := range cfg.KubeletArgs {
		args = append(args, "--"+strings.TrimLeft(a, "-"))
	}
	return args
}

func writeKubeletConfig(path string, c map[string]any) error {
	data, err := yaml.Marshal(c)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(path, data, 0o600)
}

// cgroupV2 reports whether /sys/fs/cgroup is the unified hierarchy.
func cgroupV2() bool {
	var st syscall.Statfs_t
	const cgroup2Magic = 0x63677270
	return syscall.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == cgroup2Magic
}

// cgroupDriver is systemd where systemd runs on cgroup v2, cgroupfs otherwise.
func cgroupDriver() string {
	if cgroupV2() && systemdRuns() {
		return "systemd"
	}
	return "cgroupfs"
}

func systemdRuns() bool {
	_, err := os.Stat("/run/systemd/system")
	return err == nil
}

func hardNoFile() int64 {
	var r syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r) != nil || r.Max > 1<<30 {
		return 0
	}
	return int64(r.Max)
}
