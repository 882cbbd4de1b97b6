package node

import (
	"encoding/json"
	"os"
	"path/filepath"

	"github.com/k1s-io/k1s/internal/atomicfile"
)

// BridgeName is the Linux bridge k1s's CNI config puts Pods on.
const BridgeName = "k1s0"

// cniConfig is the node's CNI network: a bridge with host-local addresses
// from the node's Pod CIDR at flannel's MTU, and portmap for hostPort.
// Flannel masquerades traffic leaving the cluster network, so the bridge
// does not (it would hide Pod IPs from Pods on other nodes).
// Address leases live under the node's run dir, so two nodes on one
// machine (tests) keep apart and a reboot, which ends the Pods, ends them.
func cniConfig(podCIDR, ipamDir string, mtu int) ([]byte, error) {
	return json.MarshalIndent(map[string]any{
		"cniVersion": "1.0.0",
		"name":       "k1s",
		"plugins": []any{
			map[string]any{
				"type":        "bridge",
				"bridge":      BridgeName,
				"isGateway":   true,
				"ipMasq":      false,
				"mtu":         mtu,
				"hairpinMode": true,
				"ipam": map[string]any{
					"type":    "host-local",
					"dataDir": ipamDir,
					"ranges":  [][]map[string]string{{{"subnet": podCIDR}}},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}, "snat": true},
		},
	}, "", "  ")
}

func writeCNIConfig(dir, podCIDR, ipamDir string, mtu int) error {
	data, err := cniConfig(podCIDR, ipamDir, mtu)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	path := filepath.Join(dir, "10-k1s.conflist")
	if old, err := os.ReadFile(path); err == nil && string(old) == string(data) {
		return nil
	}
	return atomicfile.Write(path, data, 0o600)
}
