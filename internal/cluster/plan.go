package cluster

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Plan is everything create will make, decided before anything is made.
// It is a pure function of its inputs (see NewPlan), and is stored in the
// cluster's state file.
type Plan struct {
	Name    string
	Prefix  string // "k1c" + 4 hex digits; on every netns, link, rule and cgroup
	Dir     string // the cluster's state dir
	Bridge  string
	Subnet  string
	Gateway string // the bridge's address, the host's side
	Nodes   []NodePlan
	Ports   []PortConfig
	// ServerURL is how the host, the agents and the other servers reach
	// the first server's apiserver.
	ServerURL  string
	ClusterDNS string
	TokenFile  string
}

// NodePlan is one node: its namespace, address, dirs and k1s arguments.
type NodePlan struct {
	Name       string
	Role       string
	Netns      string
	HostVeth   string
	IP         string
	Dir        string
	DataDir    string
	RunDir     string
	KubeletDir string
	CgroupRoot string
	LogPath    string
	Args       []string // after the k1s executable
}

// Server is the plan's first server node: the only one, or the one that
// starts embedded etcd and that the others join.
func (p *Plan) Server() *NodePlan {
	for i := range p.Nodes {
		if p.Nodes[i].Role == "server" {
			return &p.Nodes[i]
		}
	}
	return nil
}

// Node finds a node by name.
func (p *Plan) Node(name string) (*NodePlan, error) {
	for i := range p.Nodes {
		if p.Nodes[i].Name == name {
			return &p.Nodes[i], nil
		}
	}
	var names []string
	for _, n := range p.Nodes {
		names = append(names, n.Name)
	}
	return nil, fmt.Errorf("cluster %s has no node %q (its nodes: %s)", p.Name, name, strings.Join(names, ", "))
}

// PrefixFor derives a cluster's prefix from its name, avoiding prefixes
// in taken (other clusters', or names already on the host).
func PrefixFor(name string, taken func(string) bool) (string, error) {
	sum := sha256.Sum256([]byte(name))
	start := binary.BigEndian.Uint16(sum[:2])
	for i := 0; i < 1<<16; i++ {
		var b [2]byte
		binary.BigEndian.PutUint16(b[:], start+uint16(i))
		p := "k1c" + hex.EncodeToString(b[:])
		if !taken(p) {
			return p, nil
		}
	}
	return "", errors.New("no free cluster prefix")
}

// DefaultSubnets are the /24s tried, in order, when cluster.yaml names none.
func DefaultSubnets() []string {
	out := make([]string, 0, 256)
	for x := 0; x < 256; x++ {
		out = append(out, fmt.Sprintf("10.220.%d.0/24", x))
	}
	return out
}

// ChooseSubnet returns want if it overlaps nothing in used, else an error
// naming what it overlaps; without want, the first free default /24.
func ChooseSubnet(want string, used []Used) (string, error) {
	if want != "" {
		_, n, err := net.ParseCIDR(want)
		if err != nil {
			return "", fmt.Errorf("subnet %q: %v", want, err)
		}
		if u := overlap(n, used); u != nil {
			return "", fmt.Errorf("subnet %s is taken: it overlaps %s (%s); choose another subnet in cluster.yaml", n, u.Net, u.What)
		}
		return n.String(), nil
	}
	for _, s := range DefaultSubnets() {
		_, n, _ := net.ParseCIDR(s)
		if overlap(n, used) == nil {
			return s, nil
		}
	}
	return "", errors.New("no free 10.220.X.0/24 on this host: set subnet in cluster.yaml (--config)")
}

// Used is a network in use on the host (a route, an address, or another
// cluster's subnet) and where it was seen.
type Used struct {
	Net  *net.IPNet
	What string
}

func overlap(n *net.IPNet, used []Used) *Used {
	for i, u := range used {
		if u.Net.Contains(n.IP) || n.Contains(u.Net.IP) {
			return &used[i]
		}
	}
	return nil
}

// NewPlan lays out a cluster named name with the resolved config c in
// state dir dir, with the given prefix and subnet.
func NewPlan(name, dir, prefix, subnet string, c *Config) (*Plan, error) {
	_, n, err := net.ParseCIDR(subnet)
	if err != nil {
		return nil, err
	}
	base := binary.BigEndian.Uint32(n.IP.To4())
	addr := func(i int) string {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], base+uint32(i))
		return net.IP(b[:]).String()
	}
	ones, _ := n.Mask.Size()
	if 1<<(32-ones)-3 < len(c.Nodes) {
		return nil, fmt.Errorf("subnet %s is too small for %d nodes", subnet, len(c.Nodes))
	}
	p := &Plan{
		Name: name, Prefix: prefix, Dir: dir, Bridge: prefix + "br", Subnet: n.String(), Gateway: addr(1),
		Ports: c.Ports, TokenFile: filepath.Join(dir, "token"),
		ClusterDNS: argValue(c.ServerArgs, "cluster-dns", "10.43.0.10"),
	}
	// The (first) server gets .2 whatever its place in the list, so its URL is stable.
	order := make([]NodeConfig, len(c.Nodes))
	copy(order, c.Nodes)
	sort.SliceStable(order, func(i, j int) bool { return order[i].Role == "server" && order[j].Role != "server" })
	port := argValue(c.ServerArgs, "https-listen-port", "6443")
	for i, nc := range order {
		nd := filepath.Join(dir, "nodes", nc.Name)
		np := NodePlan{
			Name: nc.Name, Role: nc.Role,
			Netns:    prefix + "-" + nc.Name,
			HostVeth: prefix + "v" + strconv.Itoa(i+1), // interface names have at most 15 bytes
			IP:       addr(i + 2),
			Dir:      nd, DataDir: filepath.Join(nd, "data"), RunDir: filepath.Join(nd, "run"),
			KubeletDir: filepath.Join(nd, "kubelet"), LogPath: filepath.Join(nd, "k1s.log"),
			CgroupRoot: "/k1s-cluster-" + prefix + "-" + nc.Name,
		}
		if nc.Role == "server" && p.ServerURL == "" {
			p.ServerURL = "https://" + net.JoinHostPort(np.IP, port)
		}
		p.Nodes = append(p.Nodes, np)
	}
	for i := range p.Nodes {
		np := &p.Nodes[i]
		var nc NodeConfig
		for _, x := range c.Nodes {
			if x.Name == np.Name {
				nc = x
			}
		}
		args := []string{nc.Role,
			// An empty config file keeps the host's /etc/k1s/config.yaml out.
			"--config", filepath.Join(np.Dir, "config.yaml"),
			"--data-dir", np.DataDir, "--run-dir", np.RunDir,
			"--node-name", np.Name, "--node-ip", np.IP,
			"--kubelet-arg=root-dir=" + np.KubeletDir,
			// Each node's Pods in a cgroup tree of its own, so nodes do not
			// take each other's Pods for orphans.
			"--kubelet-arg=cgroup-root=" + np.CgroupRoot,
		}
		first := p.Server()
		switch {
		case np == first:
			args = append(args, "--advertise-address", np.IP, "--tls-san", np.IP,
				"--write-kubeconfig", filepath.Join(np.Dir, "admin.kubeconfig"),
				"--token-file", p.TokenFile)
			if c.Servers > 1 {
				args = append(args, "--cluster-init")
			}
			args = append(args, c.ServerArgs...)
		case nc.Role == "server":
			// Joins the first server's etcd; the full token pins its CA.
			args = append(args, "--advertise-address", np.IP, "--tls-san", np.IP,
				"--write-kubeconfig", filepath.Join(np.Dir, "admin.kubeconfig"),
				"--server", p.ServerURL, "--token-file", filepath.Join(first.DataDir, "server", "token"))
			args = append(args, c.ServerArgs...)
		default:
			// The server's full K10… token pins its CA; it exists once the server has started.
			args = append(args, "--server", p.ServerURL,
				"--token-file", filepath.Join(p.Server().DataDir, "server", "token"))
		}
		keys := make([]string, 0, len(nc.Labels))
		for k := range nc.Labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			args = append(args, "--node-label", k+"="+nc.Labels[k])
		}
		for _, t := range nc.Taints {
			args = append(args, "--node-taint", t)
		}
		np.Args = append(args, nc.Args...)
	}
	return p, nil
}

// argValue finds --name=V or --name V in args.
func argValue(args []string, name, def string) string {
	v := def
	for i, a := range args {
		if strings.HasPrefix(a, "--"+name+"=") {
			v = strings.TrimPrefix(a, "--"+name+"=")
		} else if a == "--"+name && i+1 < len(args) {
			v = args[i+1]
		}
	}
	return v
}
