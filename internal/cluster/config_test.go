package cluster

import (
	"slices"
	"strings"
	"testing"
)

func TestParseConfigFull(t *testing.T) {
	c, err := ParseConfig("cluster.yaml", []byte(`
subnet: 10.230.7.0/24
serverArgs: ["--disable=ingress", "--flannel-backend=host-gw"]
nodes:
  - name: cp
    role: server
  - name: w1
    role: agent
    labels: {tier: web}
    taints: ["dedicated=web:NoSchedule"]
    args: ["--kube-proxy-arg=proxy-mode=nftables"]
ports:
  - hostPort: 8080
    node: w1
    port: 30080
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Resolve(0, -1); err != nil {
		t.Fatal(err)
	}
	if len(c.Nodes) != 2 || c.Nodes[1].Labels["tier"] != "web" || c.Ports[0].Protocol != "tcp" || c.Subnet != "10.230.7.0/24" {
		t.Fatalf("unexpected config: %+v", c)
	}
}

func TestParseConfigUnknownField(t *testing.T) {
	_, err := ParseConfig("cluster.yaml", []byte("nodes:\n  - name: a\n    role: agent\n    lables: {a: b}\n"))
	if err == nil || !strings.Contains(err.Error(), `unknown field "lables"`) {
		t.Fatalf("want an error naming lables, got %v", err)
	}
	if !strings.HasPrefix(err.Error(), "cluster.yaml: ") {
		t.Fatalf("error should name the file: %v", err)
	}
}

func TestResolveDefaults(t *testing.T) {
	c := &Config{}
	if err := c.Resolve(0, 2); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range c.Nodes {
		names = append(names, n.Name+"/"+n.Role)
	}
	if got := strings.Join(names, " "); got != "server/server agent-1/agent agent-2/agent" {
		t.Fatalf("nodes %s", got)
	}
	// A config with agents only gets a server added.
	c = &Config{Nodes: []NodeConfig{{Name: "w", Role: "agent"}}}
	if err := c.Resolve(0, -1); err != nil || c.Nodes[0].Role != "server" || len(c.Nodes) != 2 {
		t.Fatalf("%v %+v", err, c.Nodes)
	}
}

func TestResolveRefusals(t *testing.T) {
	two := 2
	for _, tc := range []struct {
		name    string
		c       Config
		servers int
		agents  int
		want    string
	}{
		{"two servers flag", Config{}, 2, -1, "2 servers: want 1, or 3"},
		{"four servers config", Config{Servers: 4}, 0, -1, "4 servers: want 1, or 3"},
		{"two server nodes", Config{Nodes: []NodeConfig{{Name: "a", Role: "server"}, {Name: "b", Role: "server"}}}, 0, -1, "2 servers: want 1, or 3"},
		{"servers twice", Config{Nodes: []NodeConfig{{Name: "a", Role: "server"}}}, 3, -1, "servers: 3, but the cluster config lists 1 server nodes"},
		{"bad role", Config{Nodes: []NodeConfig{{Name: "a", Role: "master"}}}, 0, -1, `nodes[1].role: "master"`},
		{"bad name", Config{Nodes: []NodeConfig{{Name: "A_b", Role: "agent"}}}, 0, -1, `nodes[1].name: "A_b"`},
		{"dup name", Config{Nodes: []NodeConfig{{Name: "a", Role: "agent"}, {Name: "a", Role: "agent"}}}, 0, -1, "used twice"},
		{"bad taint", Config{Nodes: []NodeConfig{{Name: "a", Role: "agent", Taints: []string{"x=y"}}}}, 0, -1, "key=value:Effect"},
		{"agents twice", Config{Agents: &two, Nodes: []NodeConfig{{Name: "a", Role: "agent"}}}, 0, 3, "--agents 3"},
		{"port node", Config{Ports: []PortConfig{{HostPort: 80, Port: 80, Node: "nope"}}}, 0, -1, `ports[0].node: no node "nope"`},
		{"port range", Config{Ports: []PortConfig{{HostPort: 70000, Port: 80}}}, 0, -1, "ports[0].hostPort: 70000"},
		{"port twice", Config{Ports: []PortConfig{{HostPort: 80, Port: 80}, {HostPort: 80, Port: 81}}}, 0, -1, "mapped twice"},
		{"protocol", Config{Ports: []PortConfig{{HostPort: 80, Port: 80, Protocol: "sctp"}}}, 0, -1, `"sctp"`},
		{"subnet", Config{Subnet: "10.1.2.3"}, 0, -1, "not an IPv4 CIDR"},
		{"small subnet", Config{Subnet: "10.1.2.0/30"}, 0, -1, "too small"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c
			err := c.Resolve(tc.servers, tc.agents)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error with %q, got %v", tc.want, err)
			}
		})
	}
}

func TestParsePort(t *testing.T) {
	p, err := ParsePort("8080:30080/udp@agent-1")
	if err != nil || p.HostPort != 8080 || p.Port != 30080 || p.Protocol != "udp" || p.Node != "agent-1" {
		t.Fatalf("%+v %v", p, err)
	}
	if _, err := ParsePort("8080"); err == nil {
		t.Fatal("8080 without a target should be refused")
	}
	if _, err := ParsePort("a:b"); err == nil {
		t.Fatal("a:b should be refused")
	}
}

// --servers 3 without a node list: three servers, then the agents.
func TestResolveThreeServers(t *testing.T) {
	c := Config{}
	if err := c.Resolve(3, 1); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range c.Nodes {
		got = append(got, n.Role+":"+n.Name)
	}
	want := []string{"server:server-1", "server:server-2", "server:server-3", "agent:agent-1"}
	if !slices.Equal(got, want) {
		t.Fatalf("nodes %v, want %v", got, want)
	}
}
