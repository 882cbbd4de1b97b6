package cluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/coreos/go-iptables/iptables"
)

// run runs a setup command; its error names the command and its output.
func run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// UsedNets lists IPv4 route destinations (all tables, no defaults) and
// addresses of the host, and the subnets of the other clusters.
func UsedNets() ([]Used, error) {
	var used []Used
	routes, err := run("ip", "-4", "route", "show", "table", "all")
	if err != nil {
		return nil, err
	}
	routeTypes := map[string]bool{"unicast": true, "local": true, "broadcast": true, "multicast": true,
		"throw": true, "unreachable": true, "prohibit": true, "blackhole": true, "nat": true, "anycast": true}
	for _, line := range strings.Split(routes, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && routeTypes[f[0]] {
			f = f[1:]
		}
		if len(f) == 0 || f[0] == "default" {
			continue
		}
		if n := parseNet(f[0]); n != nil {
			used = append(used, Used{n, "route " + strings.TrimSpace(line)})
		}
	}
	addrs, err := run("ip", "-4", "-o", "addr", "show")
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(addrs, "\n") {
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "inet" {
				if n := parseNet(f[i+1]); n != nil {
					used = append(used, Used{n, "address " + f[i+1] + " on " + f[1]})
				}
			}
		}
	}
	names, _ := Names()
	for _, name := range names {
		if s, err := LoadState(name); err == nil {
			if _, n, err := net.ParseCIDR(s.Plan.Subnet); err == nil {
				used = append(used, Used{n, "cluster " + name})
			}
		}
	}
	return used, nil
}

func parseNet(s string) *net.IPNet {
	if !strings.Contains(s, "/") {
		s += "/32"
	}
	_, n, err := net.ParseCIDR(s)
	if err != nil || n.IP.To4() == nil {
		return nil
	}
	return n
}

// isMountPoint reports whether path is listed in /proc/self/mounts.
func isMountPoint(path string) bool {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[1] == path {
			return true
		}
	}
	return false
}

// makeBridge creates the cluster's bridge with the gateway address. The
// bridge forwards what its nodes send out and accepts 127.0.0.1 as a
// source for port mappings; both settings go with the bridge.
func makeBridge(p *Plan) error {
	if _, err := run("ip", "link", "add", "name", p.Bridge, "type", "bridge"); err != nil {
		return err
	}
	ones, _ := mustNet(p.Subnet).Mask.Size()
	if _, err := run("ip", "addr", "add", fmt.Sprintf("%s/%d", p.Gateway, ones), "dev", p.Bridge); err != nil {
		return err
	}
	for _, k := range []string{"forwarding", "route_localnet"} {
		if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+p.Bridge+"/"+k, []byte("1"), 0o644); err != nil {
			return fmt.Errorf("net.ipv4.conf.%s.%s: %w", p.Bridge, k, err)
		}
	}
	_, err := run("ip", "link", "set", p.Bridge, "up")
	return err
}

// makeNodeNet creates a node's namespace, with eth0 on the bridge holding
// the node's IP and the default route via the host.
func makeNodeNet(p *Plan, n *NodePlan) error {
	if _, err := run("ip", "netns", "add", n.Netns); err != nil {
		return err
	}
	// The peer is made inside the namespace: an eth0 in the host's would collide.
	if _, err := run("ip", "link", "add", n.HostVeth, "type", "veth", "peer", "name", "eth0", "netns", n.Netns); err != nil {
		return err
	}
	ones, _ := mustNet(p.Subnet).Mask.Size()
	for _, args := range [][]string{
		{"link", "set", n.HostVeth, "master", p.Bridge},
		{"link", "set", n.HostVeth, "up"},
		{"-n", n.Netns, "link", "set", "lo", "up"},
		{"-n", n.Netns, "addr", "add", fmt.Sprintf("%s/%d", n.IP, ones), "dev", "eth0"},
		{"-n", n.Netns, "link", "set", "eth0", "up"},
		{"-n", n.Netns, "route", "add", "default", "via", p.Gateway},
	} {
		if _, err := run("ip", args...); err != nil {
			return err
		}
	}
	return nil
}

func mustNet(s string) *net.IPNet {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return n
}

// hostRules are the cluster's host-side rules besides port mappings, in
// the order they must have in their chains. With bridge-nf-call-iptables
// even frames bridged between two nodes pass FORWARD, where a DROP policy
// or another tool's rules would cut the nodes off: so traffic within the
// bridge, out of it and into it from outside passes, but traffic to or
// from another cluster's bridge ("k1c+") is dropped, whichever cluster
// was made first. The nodes' traffic to elsewhere leaves with the host's
// address.
func hostRules(p *Plan) []Rule {
	c := []string{"-m", "comment", "--comment", p.Prefix + " k1s cluster " + p.Name}
	rule := func(table, chain, target string, match ...string) Rule {
		return Rule{table, chain, append(append(match, c...), "-j", target)}
	}
	return []Rule{
		rule("filter", "FORWARD", "ACCEPT", "-i", p.Bridge, "-o", p.Bridge),
		rule("filter", "FORWARD", "DROP", "-i", p.Bridge, "-o", "k1c+"),
		rule("filter", "FORWARD", "ACCEPT", "-i", p.Bridge),
		rule("filter", "FORWARD", "ACCEPT", "!", "-i", "k1c+", "-o", p.Bridge),
		rule("nat", "POSTROUTING", "MASQUERADE", "-s", p.Subnet, "!", "-o", p.Bridge),
	}
}

// insertRule puts r first in its chain unless it is there already.
func insertRule(ipt *iptables.IPTables, r Rule) error {
	ok, err := ipt.Exists(r.Table, r.Chain, r.Spec...)
	if err != nil {
		return fmt.Errorf("iptables -t %s -C %s %s: %w", r.Table, r.Chain, strings.Join(r.Spec, " "), err)
	}
	if ok {
		return nil
	}
	if err := ipt.Insert(r.Table, r.Chain, 1, r.Spec...); err != nil {
		return fmt.Errorf("iptables -t %s -I %s %s: %w", r.Table, r.Chain, strings.Join(r.Spec, " "), err)
	}
	return nil
}

// deleteRules removes the recorded rules, then any other rule whose
// comment carries the prefix (one recorded by a create killed between
// saving and inserting is covered either way).
func deleteRules(ipt *iptables.IPTables, prefix string, recorded []Rule) []error {
	var errs []error
	for _, r := range recorded {
		if err := ipt.DeleteIfExists(r.Table, r.Chain, r.Spec...); err != nil {
			errs = append(errs, fmt.Errorf("iptables -t %s -D %s %s: %w", r.Table, r.Chain, strings.Join(r.Spec, " "), err))
		}
	}
	for _, table := range []string{"filter", "nat"} {
		out, err := run("iptables", "-w", "-t", table, "-S")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, line := range strings.Split(out, "\n") {
			if !strings.HasPrefix(line, "-A ") || !strings.Contains(line, prefix+" k1s cluster") {
				continue
			}
			// `iptables -S` quotes the comment; -D takes the same words.
			if _, err := run("iptables", append([]string{"-w", "-t", table, "-D"}, splitRule(line[3:])...)...); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errs
}

// splitRule splits an `iptables -S` line into words, honouring quotes.
func splitRule(s string) []string {
	var out []string
	var cur strings.Builder
	inQ, have := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQ, have = !inQ, true
		case r == ' ' && !inQ:
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}

// Leftovers lists what on the host carries prefix: network namespaces,
// links and iptables rules (filter and nat). Empty after a delete.
func Leftovers(prefix string) []string {
	var left []string
	if out, err := run("ip", "netns", "list"); err != nil {
		left = append(left, err.Error())
	} else {
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], prefix) {
				left = append(left, "netns "+f[0])
			}
		}
	}
	if out, err := run("ip", "-o", "link"); err != nil {
		left = append(left, err.Error())
	} else {
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			if strings.HasPrefix(name, prefix) {
				left = append(left, "link "+name)
			}
		}
	}
	for _, table := range []string{"filter", "nat"} {
		if out, err := run("iptables", "-w", "-t", table, "-S"); err == nil {
			for _, line := range strings.Split(out, "\n") {
				if strings.Contains(line, prefix) {
					left = append(left, "iptables -t "+table+" "+line)
				}
			}
		}
	}
	return left
}
