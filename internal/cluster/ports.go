package cluster

import (
	"net"
	"strconv"
)

// portRules maps each host port to its node with DNAT: in PREROUTING for
// packets from other machines (which the host then forwards, so it needs
// net.ipv4.ip_forward=1), and in OUTPUT for the host's own connections,
// 127.0.0.1 included. A connection to 127.0.0.1 keeps that source after
// DNAT: the bridge's route_localnet lets it leave through the bridge, and
// MASQUERADE gives it the bridge's address, so the node can answer.
func portRules(p *Plan) ([]Rule, error) {
	if len(p.Ports) == 0 {
		return nil, nil
	}
	c := []string{"-m", "comment", "--comment", p.Prefix + " k1s cluster " + p.Name}
	var rules []Rule
	for _, m := range p.Ports {
		n, err := p.Node(m.Node)
		if err != nil {
			return nil, err
		}
		match := []string{"-p", m.Protocol, "--dport", strconv.Itoa(m.HostPort), "-m", "addrtype", "--dst-type", "LOCAL"}
		to := append(append([]string(nil), c...), "-j", "DNAT", "--to-destination", net.JoinHostPort(n.IP, strconv.Itoa(m.Port)))
		rules = append(rules,
			Rule{"nat", "PREROUTING", append(append([]string(nil), match...), to...)},
			Rule{"nat", "OUTPUT", append(append([]string(nil), match...), to...)})
	}
	rules = append(rules, Rule{"nat", "POSTROUTING", append([]string{"-s", "127.0.0.0/8", "-o", p.Bridge}, append(c, "-j", "MASQUERADE")...)})
	return rules, nil
}
