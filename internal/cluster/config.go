package cluster

import (
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// Config is a cluster.yaml: what nodes a cluster has, the server's flags
// and the port mappings from the host. Every field is optional.
type Config struct {
	// Subnet is the bridge's IPv4 network (default: the first free
	// 10.220.X.0/24). The host takes its first address, nodes the next.
	Subnet string `json:"subnet,omitempty"`
	// Servers is 1, or 3 for an HA control plane on embedded etcd (the
	// first server starts it with --cluster-init, the others join it).
	Servers int `json:"servers,omitempty"`
	// Agents is the number of agents when Nodes lists none.
	Agents *int `json:"agents,omitempty"`
	// ServerArgs are `k1s server` flags, e.g. --disable=ingress,
	// --cluster-cidr=…, --flannel-backend=host-gw.
	ServerArgs []string     `json:"serverArgs,omitempty"`
	Nodes      []NodeConfig `json:"nodes,omitempty"`
	Ports      []PortConfig `json:"ports,omitempty"`
}

// NodeConfig is one node. Without any, a cluster has "server" and
// "agent-1" … "agent-N".
type NodeConfig struct {
	Name   string            `json:"name"`
	Role   string            `json:"role"` // server or agent
	Labels map[string]string `json:"labels,omitempty"`
	Taints []string          `json:"taints,omitempty"` // key=value:Effect
	Args   []string          `json:"args,omitempty"`   // more flags for this node's k1s
}

// PortConfig maps HostPort on every host address (127.0.0.1 included) to
// Port on a node's IP, e.g. a NodePort or the ingress's 80.
type PortConfig struct {
	HostPort int    `json:"hostPort"`
	Node     string `json:"node,omitempty"` // default: the server
	Port     int    `json:"port"`
	Protocol string `json:"protocol,omitempty"` // tcp (default) or udp
}

// LoadConfig reads a cluster.yaml; an unknown field is an error naming it.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cluster config: %w", err)
	}
	return ParseConfig(path, b)
}

// ParseConfig parses a cluster.yaml strictly; name is used in errors.
func ParseConfig(name string, b []byte) (*Config, error) {
	c := &Config{}
	if err := yaml.UnmarshalStrict(b, c); err != nil {
		msg := err.Error()
		// sigs.k8s.io/yaml wraps encoding/json's message in two layers.
		msg = strings.TrimPrefix(msg, "error unmarshaling JSON: while decoding JSON: ")
		return nil, fmt.Errorf("%s: %s (see the cluster.yaml fields in README.md)", name, msg)
	}
	return c, nil
}

var (
	// NameRE is a valid cluster or node name: it appears in file names,
	// namespace names and Kubernetes node names.
	NameRE  = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,22}[a-z0-9])?$`)
	taintRE = regexp.MustCompile(`^[^=:]+(=[^:]*)?:(NoSchedule|PreferNoSchedule|NoExecute)$`)
)

// errServers refuses a server count other than 1 or 3: etcd keeps its
// quorum with a majority, so 2 servers survive no more than 1 does.
func errServers(n int) error {
	return fmt.Errorf("%d servers: want 1, or 3 for an HA control plane (etcd needs a majority, so 2 servers tolerate no more failures than 1, and 3 tolerate one)", n)
}

// Resolve merges the command line's counts into c (agents < 0: not
// given) and checks the whole config, naming the field at fault.
func (c *Config) Resolve(servers, agents int) error {
	if servers != 0 {
		c.Servers = servers
	}
	nServers := 0
	for _, n := range c.Nodes {
		if n.Role == "server" {
			nServers++
		}
	}
	if c.Servers == 0 {
		c.Servers = max(nServers, 1)
	}
	if c.Servers != 1 && c.Servers != 3 {
		return errServers(c.Servers)
	}
	if nServers > 0 && nServers != c.Servers {
		return fmt.Errorf("servers: %d, but the cluster config lists %d server nodes: give the servers in one place", c.Servers, nServers)
	}
	nAgents := 0
	for _, n := range c.Nodes {
		if n.Role == "agent" {
			nAgents++
		}
	}
	if agents >= 0 {
		if nAgents > 0 && agents != nAgents {
			return fmt.Errorf("--agents %d, but the cluster config lists %d agent nodes: give the agents in one place", agents, nAgents)
		}
		c.Agents = &agents
	}
	if len(c.Nodes) == 0 {
		n := 0
		if c.Agents != nil {
			n = *c.Agents
		}
		if c.Servers == 1 {
			c.Nodes = append(c.Nodes, NodeConfig{Name: "server", Role: "server"})
		}
		for i := 1; c.Servers > 1 && i <= c.Servers; i++ {
			c.Nodes = append(c.Nodes, NodeConfig{Name: "server-" + strconv.Itoa(i), Role: "server"})
		}
		for i := 1; i <= n; i++ {
			c.Nodes = append(c.Nodes, NodeConfig{Name: "agent-" + strconv.Itoa(i), Role: "agent"})
		}
	} else if !hasServer(c.Nodes) {
		var srv []NodeConfig
		if c.Servers == 1 {
			srv = append(srv, NodeConfig{Name: "server", Role: "server"})
		}
		for i := 1; c.Servers > 1 && i <= c.Servers; i++ {
			srv = append(srv, NodeConfig{Name: "server-" + strconv.Itoa(i), Role: "server"})
		}
		c.Nodes = append(srv, c.Nodes...)
	}
	if c.Agents != nil && *c.Agents < 0 {
		return fmt.Errorf("agents: %d is negative", *c.Agents)
	}
	seen := map[string]bool{}
	servers = 0
	for i, n := range c.Nodes {
		if !NameRE.MatchString(n.Name) {
			return fmt.Errorf("nodes[%d].name: %q is not a valid node name (lowercase letters, digits and '-', at most 24 characters)", i, n.Name)
		}
		if seen[n.Name] {
			return fmt.Errorf("nodes[%d].name: %q is used twice", i, n.Name)
		}
		seen[n.Name] = true
		switch n.Role {
		case "server":
			servers++
		case "agent":
		default:
			return fmt.Errorf("nodes[%d].role: %q, want server or agent", i, n.Role)
		}
		for _, t := range n.Taints {
			if !taintRE.MatchString(t) {
				return fmt.Errorf("nodes[%d].taints: %q, want key=value:Effect (Effect: NoSchedule, PreferNoSchedule or NoExecute)", i, t)
			}
		}
		for k := range n.Labels {
			if k == "" || strings.ContainsAny(k, "= ") {
				return fmt.Errorf("nodes[%d].labels: bad key %q", i, k)
			}
		}
	}
	if servers != 1 && servers != 3 {
		return errServers(servers)
	}
	if len(c.Nodes) > 200 {
		return fmt.Errorf("nodes: %d nodes, at most 200", len(c.Nodes))
	}
	used := map[string]bool{}
	for i := range c.Ports {
		p := &c.Ports[i]
		if p.Protocol == "" {
			p.Protocol = "tcp"
		}
		if p.Protocol != "tcp" && p.Protocol != "udp" {
			return fmt.Errorf("ports[%d].protocol: %q, want tcp or udp", i, p.Protocol)
		}
		if p.HostPort < 1 || p.HostPort > 65535 {
			return fmt.Errorf("ports[%d].hostPort: %d is not a port (1–65535)", i, p.HostPort)
		}
		if p.Port < 1 || p.Port > 65535 {
			return fmt.Errorf("ports[%d].port: %d is not a port (1–65535)", i, p.Port)
		}
		if p.Node == "" {
			p.Node = c.Nodes[serverIndex(c.Nodes)].Name
		}
		if !seen[p.Node] {
			return fmt.Errorf("ports[%d].node: no node %q in this cluster", i, p.Node)
		}
		key := p.Protocol + "/" + strconv.Itoa(p.HostPort)
		if used[key] {
			return fmt.Errorf("ports[%d].hostPort: %s is mapped twice", i, key)
		}
		used[key] = true
	}
	if c.Subnet != "" {
		ip, n, err := net.ParseCIDR(c.Subnet)
		if err != nil || ip.To4() == nil {
			return fmt.Errorf("subnet: %q is not an IPv4 CIDR such as 10.220.0.0/24", c.Subnet)
		}
		ones, _ := n.Mask.Size()
		if ones > 29 || 1<<(32-ones)-3 < len(c.Nodes) {
			return fmt.Errorf("subnet: %s is too small for the bridge and %d nodes", c.Subnet, len(c.Nodes))
		}
		c.Subnet = n.String()
	}
	return nil
}

// ParsePort reads a --port flag: HOSTPORT:PORT[/PROTO][@NODE].
func ParsePort(s string) (PortConfig, error) {
	bad := fmt.Errorf("--port %q: want HOSTPORT:PORT[/tcp|/udp][@NODE], e.g. 8080:30080@agent-1", s)
	var p PortConfig
	rest, node, _ := strings.Cut(s, "@")
	p.Node = node
	rest, proto, _ := strings.Cut(rest, "/")
	p.Protocol = proto
	h, t, ok := strings.Cut(rest, ":")
	if !ok {
		return p, bad
	}
	var err1, err2 error
	p.HostPort, err1 = strconv.Atoi(h)
	p.Port, err2 = strconv.Atoi(t)
	if err1 != nil || err2 != nil {
		return p, bad
	}
	return p, nil
}

func hasServer(nodes []NodeConfig) bool { return serverIndex(nodes) >= 0 }

func serverIndex(nodes []NodeConfig) int {
	for i, n := range nodes {
		if n.Role == "server" {
			return i
		}
	}
	return -1
}
