// Package flannel owns the path between nodes' Pod networks. It runs flannel
// (github.com/flannel-io/flannel, as a library) with its Kubernetes subnet
// manager: each node's Pod CIDR comes from its Node object, flannel
// publishes the node's tunnel endpoint as Node annotations and routes the
// other nodes' Pod CIDRs through a vxlan device (flannel.1) or, with
// host-gw, directly via their node IPs. It also masquerades Pod traffic
// leaving the cluster network. The Pods themselves sit on k1s's CNI bridge.
package flannel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"

	"github.com/flannel-io/flannel/pkg/backend"
	_ "github.com/flannel-io/flannel/pkg/backend/hostgw" // registers "host-gw"
	_ "github.com/flannel-io/flannel/pkg/backend/vxlan"  // registers "vxlan"
	"github.com/flannel-io/flannel/pkg/ip"
	"github.com/flannel-io/flannel/pkg/ipmatch"
	"github.com/flannel-io/flannel/pkg/subnet/kube"
	"github.com/flannel-io/flannel/pkg/trafficmngr"
	"github.com/flannel-io/flannel/pkg/trafficmngr/iptables"
	"github.com/flannel-io/flannel/pkg/trafficmngr/nftables"

	"github.com/k1s-io/k1s/internal/atomicfile"
)

// Backends k1s offers; "none" means no flannel and no CNI config at all.
const (
	VXLAN  = "vxlan"
	HostGW = "host-gw"
	None   = "none"
)

// AnnotationPrefix is where flannel keeps its per-node data on Nodes.
const AnnotationPrefix = "flannel.alpha.coreos.com"

// VXLANDevice is the device the vxlan backend creates on each node.
const VXLANDevice = "flannel.1"

// resyncSeconds is how often flannel re-checks its rules (its default, 5 s,
// costs a few iptables runs every 5 s on an idle node).
const resyncSeconds = 30

// Config is what one node's flannel needs.
type Config struct {
	Backend     string
	Iface       string // interface name; empty: the interface holding NodeIP
	NodeName    string
	NodeIP      string
	ClusterCIDR string
	Kubeconfig  string // the node's credentials; a node may annotate itself
	NFTables    bool   // write nftables rules (when kube-proxy does) instead of iptables
	ConfDir     string // net-conf.json goes here
	SubnetFile  string // flannel's subnet.env, for the curious
	// PodCIDR, when set, blocks until the node has its Pod CIDR. Run calls
	// it after its subnet manager has synced (which takes flannel a
	// second), so flannel can start before the kubelet registers the node.
	PodCIDR func(context.Context) error
}

// Network is what the node's CNI config needs from flannel.
type Network struct {
	Subnet string // this node's Pod CIDR
	MTU    int    // Pod interface MTU (the tunnel's overhead taken off)
	Iface  string // the interface traffic to other nodes leaves by
}

// NetConf is flannel's network config for cfg.
func NetConf(cfg Config) ([]byte, error) {
	if cfg.Backend != VXLAN && cfg.Backend != HostGW {
		return nil, fmt.Errorf("flannel backend %q: want %s or %s", cfg.Backend, VXLAN, HostGW)
	}
	if _, _, err := net.ParseCIDR(cfg.ClusterCIDR); err != nil {
		return nil, fmt.Errorf("cluster CIDR %q: %w", cfg.ClusterCIDR, err)
	}
	return json.MarshalIndent(map[string]any{
		"Network":        cfg.ClusterCIDR,
		"EnableIPv4":     true,
		"EnableNFTables": cfg.NFTables,
		"Backend":        map[string]any{"Type": cfg.Backend},
	}, "", "  ")
}

// Run sets flannel up for this node, calls ready once routes and rules are
// in place, and then keeps them in step with the other Nodes until ctx
// ends. The node's Pod CIDR must be assigned by the time cfg.PodCIDR
// returns (or Run is called, without it).
func Run(ctx context.Context, cfg Config, ready func(Network)) error {
	conf, err := NetConf(cfg)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.ConfDir, 0o700); err != nil {
		return err
	}
	confPath := filepath.Join(cfg.ConfDir, "net-conf.json")
	if err := atomicfile.Write(confPath, conf, 0o600); err != nil {
		return err
	}
	// The kube subnet manager learns its node's name only from the
	// environment; one k1s process runs one node, so this is safe.
	if err := os.Setenv("NODE_NAME", cfg.NodeName); err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait() // backend goroutines end with ctx

	sm, err := kube.NewSubnetManager(ctx, "", cfg.Kubeconfig, AnnotationPrefix, confPath, false)
	if err != nil {
		return fmt.Errorf("flannel subnet manager: %w", err)
	}
	nc, err := sm.GetNetworkConfig(ctx)
	if err != nil {
		return fmt.Errorf("flannel network config: %w", err)
	}
	ext, err := externalInterface(cfg)
	if err != nil {
		return err
	}
	if cfg.PodCIDR != nil {
		if err := cfg.PodCIDR(ctx); err != nil {
			if ctx.Err() != nil {
				return nil // stopped while waiting
			}
			return err
		}
	}
	be, err := backend.NewManager(ctx, sm, ext).GetBackend(nc.BackendType)
	if err != nil {
		return fmt.Errorf("flannel backend %s: %w", nc.BackendType, err)
	}
	bn, err := be.RegisterNetwork(ctx, &wg, nc)
	if err != nil {
		return fmt.Errorf("flannel %s network on %s: %w", nc.BackendType, ext.IfaceName, err)
	}

	// Rules of the other packet filter (from an earlier run in the other
	// mode) would masquerade twice; drop them first.
	if err := trafficManager(!cfg.NFTables).CleanUp(ctx); err != nil {
		return err
	}
	tm := trafficManager(cfg.NFTables)
	if err := tm.Init(ctx); err != nil {
		return err
	}
	l := bn.Lease()
	if err := tm.SetupAndEnsureMasqRules(ctx, nc.Network, l.Subnet, nc.Network, ip.IP6Net{}, ip.IP6Net{}, ip.IP6Net{}, l, resyncSeconds, false); err != nil {
		return fmt.Errorf("flannel masquerade rules: %w", err)
	}
	tm.SetupAndEnsureForwardRules(ctx, nc.Network, ip.IP6Net{}, resyncSeconds)
	if cfg.SubnetFile != "" {
		if err := os.MkdirAll(filepath.Dir(cfg.SubnetFile), 0o755); err != nil {
			return err
		}
		if err := sm.HandleSubnetFile(cfg.SubnetFile, nc, true, l.Subnet, ip.IP6Net{}, bn.MTU()); err != nil {
			return err
		}
	}

	wg.Add(1)
	go func() {
		defer wg.Done()
		bn.Run(ctx)
	}()
	if err := sm.CompleteLease(ctx, l, &wg); err != nil && ctx.Err() == nil {
		return fmt.Errorf("flannel lease: %w", err)
	}
	ready(Network{Subnet: l.Subnet.String(), MTU: bn.MTU(), Iface: ext.IfaceName})
	<-ctx.Done()
	return nil
}

// externalInterface picks the interface to other nodes: the one named by
// --flannel-iface, else the one holding the node IP, so that tunnels and
// routes use the address the Node advertises.
func externalInterface(cfg Config) (*backend.ExternalInterface, error) {
	stack, err := ipmatch.GetIPFamily(true, false)
	if err != nil {
		return nil, err
	}
	opts := ipmatch.PublicIPOpts{}
	if cfg.Iface != "" {
		ext, err := ipmatch.LookupExtIface(cfg.Iface, "", "", stack, opts)
		if err != nil {
			return nil, fmt.Errorf("--flannel-iface %s: %w (see `ip -br addr` for this host's interfaces)", cfg.Iface, err)
		}
		return ext, nil
	}
	if cfg.NodeIP == "" {
		return nil, errors.New("flannel: the node has no IP to find its interface by; set --node-ip or --flannel-iface")
	}
	opts.PublicIP = cfg.NodeIP
	ext, err := ipmatch.LookupExtIface(cfg.NodeIP, "", "", stack, opts)
	if err != nil {
		return nil, fmt.Errorf("flannel: no interface holds the node IP %s: %w; set --node-ip or --flannel-iface", cfg.NodeIP, err)
	}
	return ext, nil
}

func trafficManager(nft bool) trafficmngr.TrafficManager {
	if nft {
		return &nftables.NFTablesManager{}
	}
	return &iptables.IPTablesManager{}
}
