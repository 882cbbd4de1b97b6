package servicelb

import (
	"fmt"
	"net/netip"
	"sort"

	corev1 "k8s.io/api/core/v1"
)

const (
	// labelEnableLB pins the load balancer to the labelled nodes once any
	// node carries it.
	labelEnableLB = "svccontroller.k1s.io/enablelb"
	// labelExclude is the upstream label; its presence (any value) opts a
	// node out, as in the cloud service controller.
	labelExclude = corev1.LabelNodeExcludeBalancers
)

// result is the decision for one Service: either ingress IPs, or the reason
// it gets none because another Service holds one of its ports.
type result struct {
	ips      []string // sorted, unique; may be empty when no node qualifies
	conflict string   // non-empty: ips is empty and this is the event message
}

// ours reports whether this controller owns the Service; a set
// loadBalancerClass means another implementation does.
func ours(svc *corev1.Service) bool {
	return svc.Spec.Type == corev1.ServiceTypeLoadBalancer && svc.Spec.LoadBalancerClass == nil
}

func key(svc *corev1.Service) string { return svc.Namespace + "/" + svc.Name }

// plan is planWith without reserved ports.
func plan(services []*corev1.Service, nodes []*corev1.Node) map[string]result {
	return planWith(services, nodes, nil)
}

// planWith decides the load balancer status of every Service we own, keyed by
// namespace/name. It is pure so the rules can be tested without a cluster.
// reserved maps "port/PROTO" to what of k1s listens there on every node:
// a Service on such a port would take it over (kube-proxy DNATs node-IP:port).
func planWith(services []*corev1.Service, nodes []*corev1.Node, reserved map[string]string) map[string]result {
	ips := nodeIPs(nodes)

	var mine []*corev1.Service
	for _, s := range services {
		if ours(s) {
			mine = append(mine, s)
		}
	}
	// Oldest first so a Service keeps its ports when a newer one asks for them.
	sort.Slice(mine, func(i, j int) bool {
		a, b := mine[i], mine[j]
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		return key(a) < key(b)
	})

	held := map[string]string{} // "80/TCP" -> ns/name of the holder
	out := make(map[string]result, len(mine))
	for _, s := range mine {
		k := key(s)
		var conflict string
		for _, p := range s.Spec.Ports {
			if what, ok := reserved[portKey(p)]; ok {
				conflict = fmt.Sprintf("port %s is used by k1s itself (%s) on every node; choose another port", portKey(p), what)
				break
			}
			if holder, ok := held[portKey(p)]; ok && holder != k {
				conflict = fmt.Sprintf("port %s is already used by LoadBalancer Service %s; "+
					"k1s's service load balancer gives each port to one Service: choose another port or delete %s",
					portKey(p), holder, holder)
				break
			}
		}
		if conflict != "" {
			// A waiting Service holds nothing, so its free ports stay free.
			out[k] = result{conflict: conflict}
			continue
		}
		for _, p := range s.Spec.Ports {
			held[portKey(p)] = k
		}
		out[k] = result{ips: ips}
	}
	return out
}

func portKey(p corev1.ServicePort) string {
	proto := p.Protocol
	if proto == "" {
		proto = corev1.ProtocolTCP // the apiserver default
	}
	return fmt.Sprintf("%d/%s", p.Port, proto)
}

// nodeIPs returns the sorted, unique addresses of the nodes that serve load
// balancer traffic.
func nodeIPs(nodes []*corev1.Node) []string {
	pinned := false
	for _, n := range nodes {
		if n.Labels[labelEnableLB] == "true" {
			pinned = true
			break
		}
	}
	seen := map[netip.Addr]bool{}
	var addrs []netip.Addr
	for _, n := range nodes {
		if !eligible(n, pinned) {
			continue
		}
		for _, a := range addressesOf(n) {
			if !seen[a] {
				seen[a] = true
				addrs = append(addrs, a)
			}
		}
	}
	sort.Slice(addrs, func(i, j int) bool { return addrs[i].Less(addrs[j]) })
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = a.String()
	}
	return out
}

func eligible(n *corev1.Node, pinned bool) bool {
	if n.DeletionTimestamp != nil {
		return false
	}
	if _, ok := n.Labels[labelExclude]; ok {
		return false
	}
	if pinned && n.Labels[labelEnableLB] != "true" {
		return false
	}
	// Unschedulable (cordoned) nodes still forward traffic, so only
	// readiness counts.
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// addressesOf returns the node's ExternalIPs, or its InternalIPs when it has
// none. Both families are kept; anything the apiserver would reject as an
// ingress IP is dropped so one odd node can't block every status update.
func addressesOf(n *corev1.Node) []netip.Addr {
	pick := func(t corev1.NodeAddressType) []netip.Addr {
		var out []netip.Addr
		for _, a := range n.Status.Addresses {
			if a.Type != t {
				continue
			}
			ip, err := netip.ParseAddr(a.Address)
			if err != nil || ip.Zone() != "" || ip.Is4In6() || ip.IsUnspecified() {
				continue
			}
			out = append(out, ip)
		}
		return out
	}
	if ext := pick(corev1.NodeExternalIP); len(ext) > 0 {
		return ext
	}
	return pick(corev1.NodeInternalIP)
}

// nodeSignature captures everything about a node that plan reads, so node
// heartbeats that change nothing relevant don't trigger a resync.
func nodeSignature(n *corev1.Node) string {
	_, excluded := n.Labels[labelExclude]
	return fmt.Sprintf("%v|%v|%q|%v|%v", eligible(n, false), excluded,
		n.Labels[labelEnableLB], n.DeletionTimestamp != nil, addressesOf(n))
}
