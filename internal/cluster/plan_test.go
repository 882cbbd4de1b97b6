package cluster

import (
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func used(t *testing.T, cidrs ...string) []Used {
	var out []Used
	for _, c := range cidrs {
		_, n, err := net.ParseCIDR(c)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, Used{n, "test " + c})
	}
	return out
}

func TestChooseSubnet(t *testing.T) {
	s, err := ChooseSubnet("", used(t, "10.220.0.0/24", "10.220.1.5/32", "192.168.0.0/16"))
	if err != nil || s != "10.220.2.0/24" {
		t.Fatalf("got %s %v, want 10.220.2.0/24", s, err)
	}
	// A wider route covering all defaults leaves none.
	if _, err := ChooseSubnet("", used(t, "10.0.0.0/8")); err == nil || !strings.Contains(err.Error(), "set subnet") {
		t.Fatalf("want no free subnet, got %v", err)
	}
	if _, err := ChooseSubnet("10.9.0.0/24", used(t, "10.9.0.128/25")); err == nil || !strings.Contains(err.Error(), "subnet 10.9.0.0/24 is taken: it overlaps 10.9.0.128/25") {
		t.Fatalf("want taken, got %v", err)
	}
	if s, err := ChooseSubnet("10.9.1.0/24", used(t, "10.9.0.0/24")); err != nil || s != "10.9.1.0/24" {
		t.Fatalf("got %s %v", s, err)
	}
}

func TestPrefixFor(t *testing.T) {
	a, _ := PrefixFor("ci", func(string) bool { return false })
	b, _ := PrefixFor("ci", func(p string) bool { return p == a })
	if !strings.HasPrefix(a, "k1c") || len(a) != 7 || a == b {
		t.Fatalf("prefixes %q %q", a, b)
	}
	if again, _ := PrefixFor("ci", func(string) bool { return false }); again != a {
		t.Fatalf("prefix not stable: %q %q", a, again)
	}
}

func TestNewPlan(t *testing.T) {
	c := &Config{
		ServerArgs: []string{"--https-listen-port=7443", "--cluster-dns", "10.43.0.53"},
		Nodes: []NodeConfig{
			{Name: "w1", Role: "agent", Labels: map[string]string{"b": "2", "a": "1"}, Taints: []string{"k=v:NoSchedule"}},
			{Name: "cp", Role: "server", Args: []string{"--debug"}},
		},
		Ports: []PortConfig{{HostPort: 8080, Port: 30080, Node: "w1", Protocol: "tcp"}},
	}
	p, err := NewPlan("ci", "/var/lib/k1s-cluster/ci", "k1cabcd", "10.220.3.0/24", c)
	if err != nil {
		t.Fatal(err)
	}
	if p.Bridge != "k1cabcdbr" || p.Gateway != "10.220.3.1" || p.ServerURL != "https://10.220.3.2:7443" || p.ClusterDNS != "10.43.0.53" {
		t.Fatalf("plan %+v", p)
	}
	srv, w := p.Nodes[0], p.Nodes[1]
	if srv.Name != "cp" || srv.IP != "10.220.3.2" || w.IP != "10.220.3.3" || w.Netns != "k1cabcd-w1" || w.HostVeth != "k1cabcdv2" {
		t.Fatalf("nodes %+v", p.Nodes)
	}
	for _, n := range p.Nodes {
		if len(n.HostVeth) > 15 || len(p.Bridge) > 15 {
			t.Fatalf("interface name too long: %s", n.HostVeth)
		}
		if !strings.HasPrefix(n.Dir, p.Dir+"/") || n.CgroupRoot != "/k1s-cluster-k1cabcd-"+n.Name {
			t.Fatalf("node %s: dir %s cgroup %s", n.Name, n.Dir, n.CgroupRoot)
		}
	}
	sa := strings.Join(srv.Args, " ")
	for _, want := range []string{"server --config /var/lib/k1s-cluster/ci/nodes/cp/config.yaml", "--advertise-address 10.220.3.2", "--tls-san 10.220.3.2",
		"--token-file /var/lib/k1s-cluster/ci/token", "--https-listen-port=7443", "--kubelet-arg=cgroup-root=/k1s-cluster-k1cabcd-cp"} {
		if !strings.Contains(sa, want) {
			t.Errorf("server args lack %q: %s", want, sa)
		}
	}
	if srv.Args[len(srv.Args)-1] != "--debug" {
		t.Errorf("node args should come last: %v", srv.Args)
	}
	wa := strings.Join(w.Args, " ")
	for _, want := range []string{"agent ", "--server https://10.220.3.2:7443", "--token-file /var/lib/k1s-cluster/ci/nodes/cp/data/server/token",
		"--node-label a=1 --node-label b=2", "--node-taint k=v:NoSchedule", "--node-name w1 --node-ip 10.220.3.3"} {
		if !strings.Contains(wa, want) {
			t.Errorf("agent args lack %q: %s", want, wa)
		}
	}
	// No secret on any command line.
	for _, n := range p.Nodes {
		if slices.Contains(n.Args, "--token") {
			t.Errorf("node %s gets --token on its command line", n.Name)
		}
	}
	rules, err := portRules(p)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rules {
		got = append(got, r.Table+" "+r.Chain+" "+strings.Join(r.Spec, " "))
	}
	want := "nat PREROUTING -p tcp --dport 8080 -m addrtype --dst-type LOCAL -m comment --comment k1cabcd k1s cluster ci -j DNAT --to-destination 10.220.3.3:30080"
	if got[0] != want || !strings.HasPrefix(got[1], "nat OUTPUT -p tcp --dport 8080") || !strings.Contains(got[2], "POSTROUTING -s 127.0.0.0/8 -o k1cabcdbr") {
		t.Fatalf("port rules:\n%s", strings.Join(got, "\n"))
	}
}

func TestSplitRule(t *testing.T) {
	got := splitRule(`FORWARD -i k1cabcdbr -m comment --comment "k1cabcd k1s cluster ci" -j ACCEPT`)
	want := []string{"FORWARD", "-i", "k1cabcdbr", "-m", "comment", "--comment", "k1cabcd k1s cluster ci", "-j", "ACCEPT"}
	if !slices.Equal(got, want) {
		t.Fatalf("%q", got)
	}
}

func TestHostRulesIsolateClusters(t *testing.T) {
	p := &Plan{Name: "a", Prefix: "k1c0001", Bridge: "k1c0001br", Subnet: "10.220.0.0/24"}
	var got []string
	for _, r := range hostRules(p) {
		got = append(got, r.Chain+" "+strings.Join(r.Spec, " "))
	}
	c := "-m comment --comment k1c0001 k1s cluster a"
	want := []string{
		"FORWARD -i k1c0001br -o k1c0001br " + c + " -j ACCEPT",
		"FORWARD -i k1c0001br -o k1c+ " + c + " -j DROP",
		"FORWARD -i k1c0001br " + c + " -j ACCEPT",
		"FORWARD ! -i k1c+ -o k1c0001br " + c + " -j ACCEPT",
		"POSTROUTING -s 10.220.0.0/24 ! -o k1c0001br " + c + " -j MASQUERADE",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("rules:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// Three servers: the first starts embedded etcd and gets .2 and the
// cluster's URL; the others join it with its full token, which pins its CA.
func TestNewPlanThreeServers(t *testing.T) {
	c := &Config{}
	if err := c.Resolve(3, 1); err != nil {
		t.Fatal(err)
	}
	p, err := NewPlan("ha", "/var/lib/k1s-cluster/ha", "k1c0abc", "10.220.9.0/24", c)
	if err != nil {
		t.Fatal(err)
	}
	if p.ServerURL != "https://10.220.9.2:6443" || p.Server().Name != "server-1" {
		t.Fatalf("URL %s, first server %s", p.ServerURL, p.Server().Name)
	}
	args := map[string]string{}
	for _, n := range p.Nodes {
		args[n.Name] = strings.Join(n.Args, " ")
	}
	if a := args["server-1"]; !strings.Contains(a, "--cluster-init") || strings.Contains(a, "--server ") ||
		!strings.Contains(a, "--token-file /var/lib/k1s-cluster/ha/token") {
		t.Errorf("server-1 args: %s", a)
	}
	firstToken := "--token-file /var/lib/k1s-cluster/ha/nodes/server-1/data/server/token"
	for i, name := range []string{"server-2", "server-3"} {
		a := args[name]
		ip := "10.220.9." + strconv.Itoa(3+i)
		if !strings.HasPrefix(a, "server ") || strings.Contains(a, "--cluster-init") || !strings.Contains(a, "--server https://10.220.9.2:6443") ||
			!strings.Contains(a, firstToken) || !strings.Contains(a, "--advertise-address "+ip) {
			t.Errorf("%s args: %s", name, a)
		}
	}
	if a := args["agent-1"]; !strings.Contains(a, "--server https://10.220.9.2:6443") || !strings.Contains(a, firstToken) {
		t.Errorf("agent-1 args: %s", a)
	}
	one := &Config{}
	if err := one.Resolve(0, 0); err != nil {
		t.Fatal(err)
	}
	p1, err := NewPlan("one", "/d", "k1c0abd", "10.220.8.0/24", one)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.Join(p1.Server().Args, " "), "--cluster-init") {
		t.Errorf("a one-server cluster must stay on SQLite: %v", p1.Server().Args)
	}
}
