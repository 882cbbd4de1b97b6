// Package netpol enforces NetworkPolicies on a node: a pure planner turns
// the policies, Pods and Namespaces into iptables chains and ipsets for the
// Pods on this node (plan.go); an applier writes them atomically with
// iptables-restore and netlink (apply.go); a controller watches the API and
// re-plans after changes (controller.go). Chains are named K1S-NP-*, ipsets
// k1s-np-*; Cleanup removes both.
package netpol

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Names of what the planner makes. iptables allows 28 characters in a
// chain name and ipset 31 in a set name.
const (
	ChainPrefix  = "K1S-NP-"
	SetPrefix    = "k1s-np-"
	ForwardChain = ChainPrefix + "FORWARD" // from FORWARD: traffic to and from Pods
	InputChain   = ChainPrefix + "INPUT"   // from INPUT: a Pod's traffic to this host
	ingressChain = ChainPrefix + "I-"      // + hash: one local Pod's allowed sources
	egressChain  = ChainPrefix + "E-"      // + hash: one local Pod's allowed destinations
)

// Set types the planner uses.
const (
	SetIP     = "hash:ip"      // Pod IPs of a selector
	SetNet    = "hash:net"     // the except list of an ipBlock
	SetIPPort = "hash:ip,port" // Pod IP + protocol:port, for named ports of egress peers
)

// Input is what the planner reads: the cluster's view and this node's name.
type Input struct {
	Node       string
	Policies   []*networkingv1.NetworkPolicy
	Pods       []*corev1.Pod
	Namespaces []*corev1.Namespace
}

// Plan is the desired state of one node: chains in the filter table
// (ForwardChain and InputChain always first) and the ipsets they use.
type Plan struct {
	Chains   []Chain
	Sets     []Set
	Warnings []Warning
}

// Chain is one iptables chain; each rule is its iptables arguments after
// "-A <chain>".
type Chain struct {
	Name  string
	Rules [][]string
}

// Set is an ipset. Its name is derived from its type and members, so a set
// never changes once made: a new membership is a new set.
type Set struct {
	Name    string
	Type    string
	Members []string // "10.42.0.5", "10.0.0.0/8", "10.42.0.5,tcp:8080"
}

// Warning is a part of a policy the planner could not express; the rest of
// the policy is enforced.
type Warning struct {
	Namespace, Name string
	Message         string
}

// pod is a Pod the planner can see by IP.
type pod struct {
	p  *corev1.Pod
	ip netip.Addr
}

type planner struct {
	in       Input
	pods     []pod // with an IPv4 address, not hostNetwork, not finished
	nsLabels map[string]labels.Set
	sets     map[string]Set
	warned   map[string]bool
	plan     Plan
}

// Compute plans the rules of in.Node's Pods. It is pure: the same input
// gives the same plan.
func Compute(in Input) Plan {
	pl := &planner{in: in, nsLabels: map[string]labels.Set{}, sets: map[string]Set{}, warned: map[string]bool{}}
	for _, ns := range in.Namespaces {
		l := labels.Set{}
		for k, v := range ns.Labels {
			l[k] = v
		}
		// The apiserver sets this label; a Namespace the informer has not
		// seen yet still matches selectors on its name.
		l[corev1.LabelMetadataName] = ns.Name
		pl.nsLabels[ns.Name] = l
	}
	for _, p := range in.Pods {
		if ip, ok := podIPv4(p); ok {
			pl.pods = append(pl.pods, pod{p: p, ip: ip})
		}
	}
	sort.Slice(pl.pods, func(i, j int) bool { return pl.pods[i].ip.Less(pl.pods[j].ip) })
	policies := append([]*networkingv1.NetworkPolicy(nil), in.Policies...)
	sort.Slice(policies, func(i, j int) bool { return key(policies[i]) < key(policies[j]) })
	pl.run(policies)
	return pl.plan
}

// podIPv4 is the Pod's IPv4 address if the planner handles it: Pods on the
// host's network and Pods that have finished (their IP may be reused) are
// left out.
func podIPv4(p *corev1.Pod) (netip.Addr, bool) {
	if p.Spec.HostNetwork || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return netip.Addr{}, false
	}
	ips := []string{p.Status.PodIP}
	for _, i := range p.Status.PodIPs {
		ips = append(ips, i.IP)
	}
	for _, s := range ips {
		if a, err := netip.ParseAddr(s); err == nil && a.Is4() {
			return a, true
		}
	}
	return netip.Addr{}, false
}

func key(np *networkingv1.NetworkPolicy) string { return np.Namespace + "/" + np.Name }

func (pl *planner) warn(np *networkingv1.NetworkPolicy, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if pl.warned[key(np)+"\x00"+msg] {
		return
	}
	pl.warned[key(np)+"\x00"+msg] = true
	pl.plan.Warnings = append(pl.plan.Warnings, Warning{Namespace: np.Namespace, Name: np.Name, Message: msg})
}

// policyTypes applies the API's defaulting: Ingress always, Egress when
// the policy has egress rules.
func policyTypes(np *networkingv1.NetworkPolicy) (ingress, egress bool) {
	if len(np.Spec.PolicyTypes) == 0 {
		return true, len(np.Spec.Egress) > 0
	}
	for _, t := range np.Spec.PolicyTypes {
		switch t {
		case networkingv1.PolicyTypeIngress:
			ingress = true
		case networkingv1.PolicyTypeEgress:
			egress = true
		}
	}
	return ingress, egress
}

func (pl *planner) selector(np *networkingv1.NetworkPolicy, s *metav1.LabelSelector, what string) (labels.Selector, bool) {
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		pl.warn(np, "%s is invalid (%v); it matches nothing", what, err)
		return nil, false
	}
	return sel, true
}

func (pl *planner) run(policies []*networkingv1.NetworkPolicy) {
	type isolation struct {
		ingress, egress []*networkingv1.NetworkPolicy
	}
	local := map[netip.Addr]*isolation{}
	var localPods []pod
	for _, p := range pl.pods {
		if p.p.Spec.NodeName == pl.in.Node {
			localPods = append(localPods, p)
		}
	}
	for _, np := range policies {
		ing, eg := policyTypes(np)
		for _, t := range np.Spec.PolicyTypes {
			if t != networkingv1.PolicyTypeIngress && t != networkingv1.PolicyTypeEgress {
				pl.warn(np, "policyTypes %q is unknown and ignored", t)
			}
		}
		sel, ok := pl.selector(np, &np.Spec.PodSelector, "spec.podSelector")
		if !ok {
			continue
		}
		for _, p := range localPods {
			if p.p.Namespace != np.Namespace || !sel.Matches(labels.Set(p.p.Labels)) {
				continue
			}
			iso := local[p.ip]
			if iso == nil {
				iso = &isolation{}
				local[p.ip] = iso
			}
			if ing {
				iso.ingress = append(iso.ingress, np)
			}
			if eg {
				iso.egress = append(iso.egress, np)
			}
		}
		// Problems in rules are reported even when no Pod here is selected.
		for _, r := range np.Spec.Ingress {
			pl.checkPeers(np, r.From)
		}
		for _, r := range np.Spec.Egress {
			pl.checkPeers(np, r.To)
		}
	}

	established := []string{"-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "RETURN"}
	fwd := Chain{Name: ForwardChain, Rules: [][]string{established}}
	input := Chain{Name: InputChain, Rules: [][]string{established}}
	var podChains []Chain
	for _, p := range localPods { // sorted by IP
		iso := local[p.ip]
		if iso == nil {
			continue
		}
		id := podID(p.p)
		cidr := p.ip.String() + "/32"
		if len(iso.ingress) > 0 {
			c := Chain{Name: ingressChain + id}
			for _, np := range iso.ingress {
				for i, r := range np.Spec.Ingress {
					c.Rules = append(c.Rules, pl.ingressRule(np, i, r, p)...)
				}
			}
			c.Rules = append(c.Rules, []string{"-m", "comment", "--comment", p.p.Namespace + "/" + p.p.Name + " ingress not allowed", "-j", "DROP"})
			podChains = append(podChains, c)
			fwd.Rules = append(fwd.Rules, []string{"-d", cidr, "-j", c.Name})
		}
		if len(iso.egress) > 0 {
			c := Chain{Name: egressChain + id}
			for _, np := range iso.egress {
				for i, r := range np.Spec.Egress {
					c.Rules = append(c.Rules, pl.egressRule(np, i, r)...)
				}
			}
			c.Rules = append(c.Rules, []string{"-m", "comment", "--comment", p.p.Namespace + "/" + p.p.Name + " egress not allowed", "-j", "DROP"})
			podChains = append(podChains, c)
			fwd.Rules = append(fwd.Rules, []string{"-s", cidr, "-j", c.Name})
			input.Rules = append(input.Rules, []string{"-s", cidr, "-j", c.Name})
		}
	}
	sort.Slice(podChains, func(i, j int) bool { return podChains[i].Name < podChains[j].Name })
	pl.plan.Chains = append([]Chain{fwd, input}, podChains...)
	for _, s := range pl.sets {
		pl.plan.Sets = append(pl.plan.Sets, s)
	}
	sort.Slice(pl.plan.Sets, func(i, j int) bool { return pl.plan.Sets[i].Name < pl.plan.Sets[j].Name })
}

// podID names a Pod's chains: stable for the Pod, short enough for iptables.
func podID(p *corev1.Pod) string {
	h := sha256.Sum256([]byte(p.Namespace + "/" + p.Name + "/" + string(p.UID)))
	return strings.ToUpper(hex.EncodeToString(h[:8]))
}

// checkPeers warns about peers the planner cannot enforce.
func (pl *planner) checkPeers(np *networkingv1.NetworkPolicy, peers []networkingv1.NetworkPolicyPeer) {
	for _, peer := range peers {
		if peer.IPBlock != nil {
			pl.ipBlock(np, peer.IPBlock)
		}
	}
}

// block is an ipBlock the planner can enforce: an IPv4 CIDR and the except
// CIDRs inside it.
type block struct {
	cidr   netip.Prefix
	except []netip.Prefix
}

func (pl *planner) ipBlock(np *networkingv1.NetworkPolicy, b *networkingv1.IPBlock) (block, bool) {
	c, err := netip.ParsePrefix(b.CIDR)
	if err != nil {
		pl.warn(np, "ipBlock cidr %q is not a CIDR; the peer matches nothing", b.CIDR)
		return block{}, false
	}
	if !c.Addr().Is4() {
		pl.warn(np, "ipBlock %s is IPv6, which k1s does not enforce; the peer matches nothing", b.CIDR)
		return block{}, false
	}
	out := block{cidr: c.Masked()}
	for _, e := range b.Except {
		ep, err := netip.ParsePrefix(e)
		if err != nil || !ep.Addr().Is4() {
			// Leaving an except out would allow more than asked: drop the peer.
			pl.warn(np, "ipBlock %s: except %q is not an IPv4 CIDR; the peer matches nothing", b.CIDR, e)
			return block{}, false
		}
		out.except = append(out.except, ep.Masked())
	}
	return out, true
}

// contains reports whether a falls in the block and outside its excepts.
func (b block) contains(a netip.Addr) bool {
	if !b.cidr.Contains(a) {
		return false
	}
	for _, e := range b.except {
		if e.Contains(a) {
			return false
		}
	}
	return true
}

// peerPods are the Pods a selector peer of np selects.
func (pl *planner) peerPods(np *networkingv1.NetworkPolicy, peer networkingv1.NetworkPolicyPeer) ([]pod, bool) {
	var podSel, nsSel labels.Selector = labels.Everything(), nil
	if peer.PodSelector != nil {
		s, ok := pl.selector(np, peer.PodSelector, "a peer's podSelector")
		if !ok {
			return nil, false
		}
		podSel = s
	}
	if peer.NamespaceSelector != nil {
		s, ok := pl.selector(np, peer.NamespaceSelector, "a peer's namespaceSelector")
		if !ok {
			return nil, false
		}
		nsSel = s
	}
	var out []pod
	for _, p := range pl.pods {
		if nsSel == nil {
			if p.p.Namespace != np.Namespace {
				continue
			}
		} else {
			l, ok := pl.nsLabels[p.p.Namespace]
			if !ok {
				l = labels.Set{corev1.LabelMetadataName: p.p.Namespace}
			}
			if !nsSel.Matches(l) {
				continue
			}
		}
		if podSel.Matches(labels.Set(p.p.Labels)) {
			out = append(out, p)
		}
	}
	return out, true
}

// addSet records a set and returns its name, derived from its content.
func (pl *planner) addSet(typ string, members []string) string {
	sort.Strings(members)
	members = dedupe(members)
	h := sha256.New()
	h.Write([]byte(typ))
	for _, m := range members {
		h.Write([]byte{0})
		h.Write([]byte(m))
	}
	name := SetPrefix + hex.EncodeToString(h.Sum(nil)[:8])
	pl.sets[name] = Set{Name: name, Type: typ, Members: members}
	return name
}

func dedupe(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// portMatch is one port entry of a rule in iptables terms; port "" is
// every port of the protocol.
type portMatch struct {
	proto string // tcp, udp, sctp
	port  string // "80", "80:90" or ""
}

func (m portMatch) args() []string {
	if m.port == "" {
		return []string{"-p", m.proto}
	}
	return []string{"-p", m.proto, "-m", m.proto, "--dport", m.port}
}

func protoOf(p *corev1.Protocol) string {
	if p == nil || *p == "" {
		return "tcp"
	}
	return strings.ToLower(string(*p))
}

func (pl *planner) checkProto(np *networkingv1.NetworkPolicy, p *corev1.Protocol) bool {
	switch protoOf(p) {
	case "tcp", "udp", "sctp":
		return true
	}
	pl.warn(np, "protocol %q is not supported; the port entry matches nothing", *p)
	return false
}

// numbered turns a numbered (or absent) port entry into its match.
func numbered(p networkingv1.NetworkPolicyPort) portMatch {
	m := portMatch{proto: protoOf(p.Protocol)}
	if p.Port == nil {
		return m
	}
	m.port = strconv.Itoa(int(p.Port.IntVal))
	if p.EndPort != nil && *p.EndPort > p.Port.IntVal {
		m.port += ":" + strconv.Itoa(int(*p.EndPort))
	}
	return m
}

// namedPort looks a port name up in a Pod's containers.
func namedPort(p *corev1.Pod, name, proto string) (int32, bool) {
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name == name && strings.ToLower(string(orTCP(cp.Protocol))) == proto {
				return cp.ContainerPort, true
			}
		}
	}
	return 0, false
}

func orTCP(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}

func isNamed(p networkingv1.NetworkPolicyPort) bool {
	return p.Port != nil && p.Port.Type == intstr.String
}

func comment(np *networkingv1.NetworkPolicy, dir string, i int) []string {
	return []string{"-m", "comment", "--comment", fmt.Sprintf("%s %s[%d]", key(np), dir, i)}
}

// ingressRule: the RETURN rules (allowed) of one ingress rule of np for
// the local Pod target. Named ports are the target's own ports.
func (pl *planner) ingressRule(np *networkingv1.NetworkPolicy, i int, r networkingv1.NetworkPolicyIngressRule, target pod) [][]string {
	var ports []portMatch
	for _, p := range r.Ports {
		if !pl.checkProto(np, p.Protocol) {
			continue
		}
		if isNamed(p) {
			if n, ok := namedPort(target.p, p.Port.StrVal, protoOf(p.Protocol)); ok {
				ports = append(ports, portMatch{proto: protoOf(p.Protocol), port: strconv.Itoa(int(n))})
			}
			continue
		}
		ports = append(ports, numbered(p))
	}
	if len(r.Ports) > 0 && len(ports) == 0 {
		return nil // no port of the rule exists on this Pod
	}
	if len(r.Ports) == 0 {
		ports = []portMatch{{}}
	}
	peers := pl.peerMatches(np, r.From, "src")
	var out [][]string
	for _, peer := range peers {
		for _, pm := range ports {
			rule := append([]string(nil), peer...)
			if pm.proto != "" {
				rule = append(rule, pm.args()...)
			}
			rule = append(rule, comment(np, "ingress", i)...)
			out = append(out, append(rule, "-j", "RETURN"))
		}
	}
	return out
}

// peerMatches are the iptables matches of a rule's peers, in direction dir
// ("src" or "dst"); no peers means every address.
func (pl *planner) peerMatches(np *networkingv1.NetworkPolicy, peers []networkingv1.NetworkPolicyPeer, dir string) [][]string {
	if len(peers) == 0 {
		return [][]string{{}}
	}
	flag := "-s"
	if dir == "dst" {
		flag = "-d"
	}
	var out [][]string
	for _, peer := range peers {
		if peer.IPBlock != nil {
			b, ok := pl.ipBlock(np, peer.IPBlock)
			if !ok {
				continue
			}
			m := []string{flag, b.cidr.String()}
			if len(b.except) > 0 {
				var ex []string
				for _, e := range b.except {
					ex = append(ex, e.String())
				}
				m = append(m, "-m", "set", "!", "--match-set", pl.addSet(SetNet, ex), dir)
			}
			out = append(out, m)
			continue
		}
		pods, ok := pl.peerPods(np, peer)
		if !ok || len(pods) == 0 {
			continue
		}
		var ips []string
		for _, p := range pods {
			ips = append(ips, p.ip.String())
		}
		out = append(out, []string{"-m", "set", "--match-set", pl.addSet(SetIP, ips), dir})
	}
	return out
}

// egressRule: the RETURN rules of one egress rule. Named ports are the
// destination Pods' ports, so they become sets of IP and port.
func (pl *planner) egressRule(np *networkingv1.NetworkPolicy, i int, r networkingv1.NetworkPolicyEgressRule) [][]string {
	var ports []portMatch
	var named []networkingv1.NetworkPolicyPort
	for _, p := range r.Ports {
		if !pl.checkProto(np, p.Protocol) {
			continue
		}
		if isNamed(p) {
			named = append(named, p)
		} else {
			ports = append(ports, numbered(p))
		}
	}
	var out [][]string
	if len(r.Ports) == 0 {
		ports = []portMatch{{}}
	}
	if len(ports) > 0 {
		for _, peer := range pl.peerMatches(np, r.To, "dst") {
			for _, pm := range ports {
				rule := append([]string(nil), peer...)
				if pm.proto != "" {
					rule = append(rule, pm.args()...)
				}
				rule = append(rule, comment(np, "egress", i)...)
				out = append(out, append(rule, "-j", "RETURN"))
			}
		}
	}
	if len(named) > 0 {
		dests := pl.egressPods(np, r.To)
		var members []string
		for _, p := range named {
			proto := protoOf(p.Protocol)
			for _, d := range dests {
				if n, ok := namedPort(d.p, p.Port.StrVal, proto); ok {
					members = append(members, fmt.Sprintf("%s,%s:%d", d.ip, proto, n))
				}
			}
		}
		if len(members) > 0 {
			rule := []string{"-m", "set", "--match-set", pl.addSet(SetIPPort, members), "dst,dst"}
			rule = append(rule, comment(np, "egress", i)...)
			out = append(out, append(rule, "-j", "RETURN"))
		}
	}
	return out
}

// egressPods are the Pods a rule's destinations cover, for resolving named
// ports: every Pod when there are no peers; for an ipBlock, the Pods whose
// IP it contains.
func (pl *planner) egressPods(np *networkingv1.NetworkPolicy, peers []networkingv1.NetworkPolicyPeer) []pod {
	if len(peers) == 0 {
		return pl.pods
	}
	seen := map[netip.Addr]bool{}
	var out []pod
	add := func(p pod) {
		if !seen[p.ip] {
			seen[p.ip] = true
			out = append(out, p)
		}
	}
	for _, peer := range peers {
		if peer.IPBlock != nil {
			b, ok := pl.ipBlock(np, peer.IPBlock)
			if !ok {
				continue
			}
			for _, p := range pl.pods {
				if b.contains(p.ip) {
					add(p)
				}
			}
			continue
		}
		pods, _ := pl.peerPods(np, peer)
		for _, p := range pods {
			add(p)
		}
	}
	return out
}
