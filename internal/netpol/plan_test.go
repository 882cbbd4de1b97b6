package netpol

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// sim runs a new packet through a plan the way the kernel would walk the
// chains (conntrack state NEW), so tests check behaviour, not rule text.
type sim struct {
	t      *testing.T
	chains map[string]Chain
	sets   map[string]Set
}

func newSim(t *testing.T, p Plan) *sim {
	s := &sim{t: t, chains: map[string]Chain{}, sets: map[string]Set{}}
	for _, c := range p.Chains {
		s.chains[c.Name] = c
	}
	for _, st := range p.Sets {
		s.sets[st.Name] = st
	}
	return s
}

type packet struct {
	src, dst string
	proto    string
	port     int
	toHost   bool // delivered to this host (INPUT) rather than forwarded
}

// allowed reports whether the packet passes our chains.
func (s *sim) allowed(pk packet) bool {
	start := ForwardChain
	if pk.toHost {
		start = InputChain
	}
	v := s.walk(start, pk, 0)
	return v != "DROP"
}

func (s *sim) walk(chain string, pk packet, depth int) string {
	if depth > 5 {
		s.t.Fatalf("chain depth > 5 at %s", chain)
	}
	c, ok := s.chains[chain]
	if !ok {
		s.t.Fatalf("jump to missing chain %s", chain)
	}
	for _, r := range c.Rules {
		target, match := s.match(r, pk)
		if !match {
			continue
		}
		switch target {
		case "RETURN":
			return "RETURN"
		case "DROP":
			return "DROP"
		default:
			if v := s.walk(target, pk, depth+1); v == "DROP" {
				return "DROP"
			}
		}
	}
	return "RETURN"
}

func (s *sim) match(r []string, pk packet) (string, bool) {
	ok := true
	var target string
	for i := 0; i < len(r); i++ {
		switch r[i] {
		case "-j":
			target = r[i+1]
			i++
		case "-s", "-d":
			p := netip.MustParsePrefix(r[i+1])
			a := pk.src
			if r[i] == "-d" {
				a = pk.dst
			}
			ok = ok && p.Contains(netip.MustParseAddr(a))
			i++
		case "-p":
			ok = ok && r[i+1] == pk.proto
			i++
		case "--dport":
			lo, hi, _ := strings.Cut(r[i+1], ":")
			l, _ := strconv.Atoi(lo)
			h := l
			if hi != "" {
				h, _ = strconv.Atoi(hi)
			}
			ok = ok && pk.port >= l && pk.port <= h
			i++
		case "-m":
			switch r[i+1] {
			case "conntrack":
				ok = false // new packets only
				i += 3
			case "comment":
				i += 3
			case "tcp", "udp", "sctp":
				i++
			case "set":
				neg := r[i+2] == "!"
				j := i + 2
				if neg {
					j++
				}
				if r[j] != "--match-set" {
					s.t.Fatalf("unknown set match in %v", r)
				}
				in := s.inSet(r[j+1], r[j+2], pk)
				ok = ok && in != neg
				i = j + 2
			default:
				s.t.Fatalf("unknown match %s in %v", r[i+1], r)
			}
		default:
			s.t.Fatalf("unknown argument %q in %v", r[i], r)
		}
	}
	return target, ok
}

func (s *sim) inSet(name, dir string, pk packet) bool {
	st, ok := s.sets[name]
	if !ok {
		s.t.Fatalf("rule uses missing set %s", name)
	}
	a := pk.src
	if strings.HasPrefix(dir, "dst") {
		a = pk.dst
	}
	for _, m := range st.Members {
		switch st.Type {
		case SetIP:
			if m == a {
				return true
			}
		case SetNet:
			if netip.MustParsePrefix(m).Contains(netip.MustParseAddr(a)) {
				return true
			}
		case SetIPPort:
			if dir != "dst,dst" {
				s.t.Fatalf("ip,port set %s used with %s", name, dir)
			}
			if m == fmt.Sprintf("%s,%s:%d", a, pk.proto, pk.port) {
				return true
			}
		}
	}
	return false
}

// Objects for the tests.

func mkPod(ns, name, node, ip string, lbls map[string]string, ports ...corev1.ContainerPort) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: lbls, UID: types.UID(ns + "-" + name)},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Ports: ports}}},
		Status:     corev1.PodStatus{PodIP: ip, Phase: corev1.PodRunning},
	}
}

func mkNS(name string, lbls map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbls}}
}

func policy(t *testing.T, doc string) *networkingv1.NetworkPolicy {
	t.Helper()
	np := &networkingv1.NetworkPolicy{}
	if err := yaml.UnmarshalStrict([]byte(doc), np); err != nil {
		t.Fatalf("policy: %v\n%s", err, doc)
	}
	if np.Namespace == "" {
		np.Namespace = "default"
	}
	return np
}

const me = "n1"

// world: web (10.42.0.10, local) and db (10.42.0.11, local) in default,
// cli (10.42.1.20, other node) in default, mon (10.42.1.30) in ns "ops"
// labelled team=ops, other (10.42.1.40) in ns "dev".
func world() Input {
	return Input{
		Node: me,
		Pods: []*corev1.Pod{
			mkPod("default", "web", me, "10.42.0.10", map[string]string{"app": "web"},
				corev1.ContainerPort{Name: "http", ContainerPort: 8080}, corev1.ContainerPort{Name: "dns", ContainerPort: 5353, Protocol: corev1.ProtocolUDP}),
			mkPod("default", "db", me, "10.42.0.11", map[string]string{"app": "db"}, corev1.ContainerPort{Name: "http", ContainerPort: 9090}),
			mkPod("default", "cli", "n2", "10.42.1.20", map[string]string{"app": "cli"}),
			mkPod("ops", "mon", "n2", "10.42.1.30", map[string]string{"app": "mon"}),
			mkPod("dev", "other", "n2", "10.42.1.40", map[string]string{"app": "cli"}),
		},
		Namespaces: []*corev1.Namespace{mkNS("default", nil), mkNS("ops", map[string]string{"team": "ops"}), mkNS("dev", nil)},
	}
}

const (
	web   = "10.42.0.10"
	db    = "10.42.0.11"
	cli   = "10.42.1.20"
	mon   = "10.42.1.30"
	other = "10.42.1.40"
	outer = "192.168.5.5" // outside the cluster
)

func tcp(src, dst string, port int) packet {
	return packet{src: src, dst: dst, proto: "tcp", port: port}
}
func udp(src, dst string, port int) packet {
	return packet{src: src, dst: dst, proto: "udp", port: port}
}

type want struct {
	pk      packet
	allowed bool
}

func check(t *testing.T, in Input, cases ...want) Plan {
	t.Helper()
	p := Compute(in)
	s := newSim(t, p)
	for _, c := range cases {
		if got := s.allowed(c.pk); got != c.allowed {
			t.Errorf("%+v: allowed=%v, want %v\nplan: %s", c.pk, got, c.allowed, dump(p))
		}
	}
	return p
}

func dump(p Plan) string {
	var b strings.Builder
	for _, c := range p.Chains {
		for _, r := range c.Rules {
			fmt.Fprintf(&b, "\n-A %s %s", c.Name, strings.Join(r, " "))
		}
	}
	for _, s := range p.Sets {
		fmt.Fprintf(&b, "\nset %s %s %v", s.Name, s.Type, s.Members)
	}
	return b.String()
}

func TestNoPoliciesAllowsEverything(t *testing.T) {
	p := check(t, world(), want{tcp(cli, web, 80), true}, want{tcp(web, outer, 443), true})
	if len(p.Chains) != 2 || len(p.Sets) != 0 {
		t.Errorf("without policies want only the two base chains, got %s", dump(p))
	}
}

func TestDefaultDenyIngress(t *testing.T) {
	in := world()
	in.Policies = append(in.Policies, policy(t, `metadata: {name: deny}
spec: {podSelector: {}}`))
	check(t, in,
		want{tcp(cli, web, 8080), false}, // from another node
		want{tcp(db, web, 8080), false},  // on this node
		want{tcp(web, db, 8080), false},
		want{udp(cli, web, 53), false},
		want{tcp(web, outer, 443), true}, // egress is not isolated
		want{tcp(mon, cli, 80), true},    // not our Pods
	)
}

func TestDefaultDenyEgress(t *testing.T) {
	in := world()
	in.Policies = append(in.Policies, policy(t, `metadata: {name: deny}
spec: {podSelector: {}, policyTypes: [Egress]}`))
	check(t, in,
		want{udp(web, "10.42.1.2", 53), false},
		want{tcp(web, outer, 443), false},
		want{packet{src: web, dst: "10.0.0.1", proto: "tcp", port: 10250, toHost: true}, false},
		want{tcp(cli, web, 8080), true}, // ingress not isolated
	)
}

func TestEgressAllowDNS(t *testing.T) {
	in := world()
	in.Policies = append(in.Policies, policy(t, `metadata: {name: dns}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress: [{ports: [{protocol: UDP, port: 53}, {protocol: TCP, port: 53}]}]`))
	check(t, in,
		want{udp(web, "10.42.1.2", 53), true},
		want{tcp(web, "10.42.1.2", 53), true},
		want{udp(web, "10.42.1.2", 54), false},
		want{tcp(web, outer, 443), false},
	)
}

func TestPolicyTypesDefaulting(t *testing.T) {
	// Egress rules without policyTypes isolate egress too; a policy with
	// only ingress rules leaves egress open.
	in := world()
	in.Policies = append(in.Policies, policy(t, `metadata: {name: e}
spec:
  podSelector: {matchLabels: {app: web}}
  egress: [{to: [{podSelector: {matchLabels: {app: db}}}]}]`))
	check(t, in,
		want{tcp(web, db, 9090), true},
		want{tcp(web, cli, 80), false},
		want{tcp(cli, web, 8080), false}, // ingress isolated by default, no ingress rules
	)
	in = world()
	in.Policies = append(in.Policies, policy(t, `metadata: {name: i}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{podSelector: {matchLabels: {app: cli}}}]}]`))
	check(t, in,
		want{tcp(web, outer, 443), true},
		want{tcp(cli, web, 8080), true},
		want{tcp(db, web, 8080), false},
	)
}

func TestAllowByPodLabel(t *testing.T) {
	in := world()
	in.Policies = append(in.Policies, policy(t, `metadata: {name: deny}
spec: {podSelector: {}}`), policy(t, `metadata: {name: allow-cli}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{podSelector: {matchLabels: {app: cli}}}]}]`))
	check(t, in,
		want{tcp(cli, web, 8080), true},
		want{tcp(other, web, 8080), false}, // same label, other namespace
		want{tcp(db, web, 8080), false},
		want{tcp(cli, db, 9090), false}, // db only has the deny
	)
}

func TestAllowByNamespaceLabel(t *testing.T) {
	in := world()
	in.Policies = append(in.Policies, policy(t, `metadata: {name: ops}
spec:
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {matchLabels: {team: ops}}}]}]`))
	check(t, in,
		want{tcp(mon, web, 8080), true},
		want{tcp(mon, db, 1), true},
		want{tcp(cli, web, 8080), false},
		want{tcp(other, web, 8080), false},
	)
	// The name label the apiserver sets works without being in the informer's copy.
	in = world()
	in.Policies = append(in.Policies, policy(t, `metadata: {name: byname}
spec:
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: dev}}}]}]`))
	check(t, in, want{tcp(other, web, 1), true}, want{tcp(mon, web, 1), false})
}

func TestNamespaceAndPodSelectorCombined(t *testing.T) {
	in := world()
	in.Pods = append(in.Pods, mkPod("ops", "backup", "n2", "10.42.1.31", map[string]string{"app": "backup"}))
	in.Policies = append(in.Policies, policy(t, `metadata: {name: both}
spec:
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {matchLabels: {team: ops}}, podSelector: {matchLabels: {app: mon}}}]}]`))
	check(t, in,
		want{tcp(mon, web, 8080), true},
		want{tcp("10.42.1.31", web, 8080), false}, // right namespace, wrong Pod
		want{tcp(cli, web, 8080), false},
	)
	// Two peers are an OR.
	in.Policies = []*networkingv1.NetworkPolicy{policy(t, `metadata: {name: either}
spec:
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {matchLabels: {team: ops}}}, {podSelector: {matchLabels: {app: cli}}}]}]`)}
	check(t, in,
		want{tcp("10.42.1.31", web, 8080), true},
		want{tcp(cli, web, 8080), true},
		want{tcp(other, web, 8080), false},
	)
}

func TestEmptyFromAndToAllowAll(t *testing.T) {
	in := world()
	in.Policies = append(in.Policies, policy(t, `metadata: {name: all}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress, Egress]
  ingress: [{ports: [{port: 8080}]}]
  egress: [{}]`))
	check(t, in,
		want{tcp(outer, web, 8080), true},
		want{tcp(cli, web, 8080), true},
		want{tcp(cli, web, 8081), false},
		want{tcp(web, outer, 1), true},
	)
}

func TestIPBlockExcept(t *testing.T) {
	in := world()
	in.Policies = append(in.Policies, policy(t, `metadata: {name: block}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress, Egress]
  ingress: [{from: [{ipBlock: {cidr: 10.42.1.0/24, except: [10.42.1.32/27]}}]}]
  egress: [{to: [{ipBlock: {cidr: 192.168.0.0/16, except: [192.168.5.0/24, 192.168.6.0/24]}}]}]`))
	check(t, in,
		want{tcp(cli, web, 8080), true},    // .20 in the block
		want{tcp(other, web, 8080), false}, // .40 in the except
		want{tcp(mon, web, 8080), true},
		want{tcp("10.42.2.5", web, 8080), false},
		want{tcp(web, "192.168.1.1", 80), true},
		want{tcp(web, outer, 80), false},
		want{tcp(web, "192.168.6.9", 80), false},
	)
}

func TestIPv6BlockWarnsAndMatchesNothing(t *testing.T) {
	in := world()
	in.Policies = append(in.Policies, policy(t, `metadata: {name: v6}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{ipBlock: {cidr: "fd00::/8"}}, {podSelector: {matchLabels: {app: cli}}}]}]`))
	p := check(t, in, want{tcp(cli, web, 8080), true}, want{tcp(mon, web, 8080), false})
	if len(p.Warnings) != 1 || p.Warnings[0].Name != "v6" || !strings.Contains(p.Warnings[0].Message, "IPv6") {
		t.Errorf("warnings = %+v, want one about IPv6 on v6", p.Warnings)
	}
}

func TestNumberedPortsRangesProtocols(t *testing.T) {
	in := world()
	in.Policies = append(in.Policies, policy(t, `metadata: {name: ports}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - ports: [{port: 80}, {port: 1000, endPort: 1010}, {protocol: SCTP, port: 7000}, {protocol: UDP}]
    from: [{podSelector: {}}]`))
	check(t, in,
		want{tcp(cli, web, 80), true},
		want{tcp(cli, web, 81), false},
		want{udp(cli, web, 80), true}, // protocol UDP without a port: every UDP port
		want{tcp(cli, web, 1005), true},
		want{tcp(cli, web, 1010), true},
		want{tcp(cli, web, 1011), false},
		want{tcp(cli, web, 999), false},
		want{udp(cli, web, 1005), true},
		want{packet{src: cli, dst: web, proto: "sctp", port: 7000}, true},
		want{packet{src: cli, dst: web, proto: "sctp", port: 7001}, false},
		want{tcp(outer, web, 80), false}, // not a Pod of the namespace
	)
}

func TestNamedPortIngressUsesTargetPorts(t *testing.T) {
	in := world()
	in.Policies = append(in.Policies, policy(t, `metadata: {name: named}
spec:
  podSelector: {}
  ingress: [{ports: [{port: http}, {protocol: UDP, port: dns}]}]`))
	check(t, in,
		want{tcp(cli, web, 8080), true}, // web's http
		want{tcp(cli, web, 9090), false},
		want{tcp(cli, db, 9090), true}, // db's http
		want{tcp(cli, db, 8080), false},
		want{udp(cli, web, 5353), true},
		want{tcp(cli, web, 5353), false}, // dns is UDP
		want{udp(cli, db, 5353), false},  // db has no dns port
	)
}

func TestNamedPortEgressUsesPeerPorts(t *testing.T) {
	in := world()
	in.Pods = append(in.Pods, mkPod("default", "api", "n2", "10.42.1.50", map[string]string{"app": "db"}, corev1.ContainerPort{Name: "http", ContainerPort: 7070}))
	in.Policies = append(in.Policies, policy(t, `metadata: {name: named}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  egress: [{to: [{podSelector: {matchLabels: {app: db}}}], ports: [{port: http}, {port: 5432}]}]`))
	check(t, in,
		want{tcp(web, db, 9090), true},
		want{tcp(web, "10.42.1.50", 7070), true},
		want{tcp(web, "10.42.1.50", 9090), false},
		want{tcp(web, db, 5432), true},
		want{tcp(web, cli, 9090), false},
	)
}

func TestHostNetworkAndIPlessPodsIgnored(t *testing.T) {
	in := world()
	hn := mkPod("default", "hostnet", me, "10.0.0.1", map[string]string{"app": "web"})
	hn.Spec.HostNetwork = true
	pending := mkPod("default", "pending", me, "", map[string]string{"app": "web"})
	done := mkPod("default", "done", me, "10.42.0.99", map[string]string{"app": "cli"})
	done.Status.Phase = corev1.PodSucceeded
	in.Pods = append(in.Pods, hn, pending, done)
	in.Policies = append(in.Policies, policy(t, `metadata: {name: deny}
spec:
  podSelector: {}
  ingress: [{from: [{podSelector: {matchLabels: {app: cli}}}]}]`))
	p := check(t, in,
		want{tcp(cli, "10.0.0.1", 22), true},      // host-network Pod is not isolated
		want{tcp("10.0.0.1", web, 8080), false},   // nor a peer
		want{tcp("10.42.0.99", web, 8080), false}, // finished Pod's IP is not a peer
		want{tcp(cli, web, 8080), true},
	)
	// web and db get ingress chains; nothing for the three others.
	if n := len(p.Chains); n != 4 {
		t.Errorf("%d chains, want 2 base + 2 Pod chains: %s", n, dump(p))
	}
}

func TestOnlyLocalPodsGetRules(t *testing.T) {
	in := world()
	in.Policies = append(in.Policies, policy(t, `metadata: {name: deny}
spec: {podSelector: {matchLabels: {app: cli}}}`))
	p := check(t, in, want{tcp(web, cli, 80), true})
	if len(p.Chains) != 2 {
		t.Errorf("a policy selecting only another node's Pod made rules here: %s", dump(p))
	}
	in.Node = "n2"
	check(t, in, want{tcp(web, cli, 80), false})
}

func TestPolicyOnlyInItsNamespace(t *testing.T) {
	in := world()
	in.Node = "n2"
	in.Policies = append(in.Policies, policy(t, `metadata: {name: deny, namespace: ops}
spec: {podSelector: {}}`))
	check(t, in, want{tcp(web, mon, 80), false}, want{tcp(web, cli, 80), true}, want{tcp(web, other, 80), true})
}

func TestEstablishedFirst(t *testing.T) {
	in := world()
	in.Policies = append(in.Policies, policy(t, `metadata: {name: deny}
spec: {podSelector: {}, policyTypes: [Ingress, Egress]}`))
	p := Compute(in)
	for _, c := range p.Chains[:2] {
		if len(c.Rules) == 0 || !strings.Contains(strings.Join(c.Rules[0], " "), "--ctstate RELATED,ESTABLISHED -j RETURN") {
			t.Errorf("chain %s does not start by letting replies through: %v", c.Name, c.Rules)
		}
	}
}

func TestDeterministicAndContentNamedSets(t *testing.T) {
	in := world()
	in.Policies = append(in.Policies, policy(t, `metadata: {name: a}
spec:
  podSelector: {}
  ingress: [{from: [{podSelector: {matchLabels: {app: cli}}}]}]`))
	a, b := Compute(in), Compute(in)
	if dump(a) != dump(b) {
		t.Fatalf("two plans of one input differ:\n%s\n---\n%s", dump(a), dump(b))
	}
	// Reversed input order gives the same plan.
	rev := in
	rev.Pods = append([]*corev1.Pod(nil), in.Pods...)
	for i, j := 0, len(rev.Pods)-1; i < j; i, j = i+1, j-1 {
		rev.Pods[i], rev.Pods[j] = rev.Pods[j], rev.Pods[i]
	}
	if dump(Compute(rev)) != dump(a) {
		t.Errorf("Pod order changes the plan")
	}
	// A new peer Pod gives a new set name.
	in.Pods = append(in.Pods, mkPod("default", "cli2", "n2", "10.42.1.21", map[string]string{"app": "cli"}))
	c := Compute(in)
	if len(c.Sets) != 1 || len(a.Sets) != 1 || c.Sets[0].Name == a.Sets[0].Name {
		t.Errorf("sets before %+v after %+v: want one each with different names", a.Sets, c.Sets)
	}
	for _, ch := range c.Chains {
		if len(ch.Name) > 28 {
			t.Errorf("chain name %s is longer than iptables allows", ch.Name)
		}
	}
	for _, s := range c.Sets {
		if len(s.Name) > 31 {
			t.Errorf("set name %s is longer than ipset allows", s.Name)
		}
	}
}

func TestInvalidSelectorWarns(t *testing.T) {
	in := world()
	np := policy(t, `metadata: {name: bad}
spec:
  podSelector: {}
  ingress: [{from: [{podSelector: {matchLabels: {app: cli}}}]}]`)
	np.Spec.Ingress[0].From[0].PodSelector.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "x", Operator: "Bogus"}}
	good := policy(t, `metadata: {name: good}
spec:
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {matchLabels: {team: ops}}}]}]`)
	in.Policies = append(in.Policies, np, good)
	p := check(t, in, want{tcp(cli, web, 1), false}, want{tcp(mon, web, 1), true})
	if len(p.Warnings) != 1 || p.Warnings[0].Name != "bad" {
		t.Errorf("warnings %+v, want one for bad", p.Warnings)
	}
}

func TestNamedPortHelper(t *testing.T) {
	p := mkPod("default", "x", me, "10.42.0.1", nil, corev1.ContainerPort{Name: "http", ContainerPort: 80})
	if n, ok := namedPort(p, "http", "tcp"); !ok || n != 80 {
		t.Errorf("namedPort http/tcp = %d %v", n, ok)
	}
	if _, ok := namedPort(p, "http", "udp"); ok {
		t.Errorf("namedPort matched the wrong protocol")
	}
	if !isNamed(networkingv1.NetworkPolicyPort{Port: &intstr.IntOrString{Type: intstr.String, StrVal: "http"}}) {
		t.Errorf("isNamed(http) = false")
	}
}
