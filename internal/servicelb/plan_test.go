package servicelb

import (
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

type nodeOpt func(*corev1.Node)

func ready(s corev1.ConditionStatus) nodeOpt {
	return func(n *corev1.Node) {
		n.Status.Conditions = []corev1.NodeCondition{
			{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse},
			{Type: corev1.NodeReady, Status: s},
		}
	}
}

func label(k, v string) nodeOpt {
	return func(n *corev1.Node) { n.Labels[k] = v }
}

func addr(t corev1.NodeAddressType, a string) nodeOpt {
	return func(n *corev1.Node) {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: t, Address: a})
	}
}

func internal(a string) nodeOpt { return addr(corev1.NodeInternalIP, a) }

// mkNode is Ready unless an option says otherwise.
func mkNode(name string, opts ...nodeOpt) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}}
	ready(corev1.ConditionTrue)(n)
	addr(corev1.NodeHostName, name)(n)
	for _, o := range opts {
		o(n)
	}
	return n
}

func port(p int32, proto corev1.Protocol) corev1.ServicePort {
	return corev1.ServicePort{Port: p, Protocol: proto}
}

func mkSvc(ns, name string, created time.Duration, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:         ns,
			Name:              name,
			CreationTimestamp: metav1.NewTime(t0.Add(created)),
		},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: ports},
	}
}

func svcs(s ...*corev1.Service) []*corev1.Service { return s }
func nodes(n ...*corev1.Node) []*corev1.Node      { return n }

func wantIPs(t *testing.T, got map[string]result, k string, ips ...string) {
	t.Helper()
	r, ok := got[k]
	if !ok {
		t.Fatalf("%s: no result; have %v", k, got)
	}
	if r.conflict != "" {
		t.Fatalf("%s: unexpected conflict %q", k, r.conflict)
	}
	if len(ips) == 0 {
		ips = nil
	}
	var have []string
	if len(r.ips) > 0 {
		have = r.ips
	}
	if !reflect.DeepEqual(have, ips) {
		t.Fatalf("%s: ips = %v, want %v", k, r.ips, ips)
	}
}

func wantConflict(t *testing.T, got map[string]result, k, contains string) {
	t.Helper()
	r, ok := got[k]
	if !ok {
		t.Fatalf("%s: no result", k)
	}
	if r.conflict == "" || len(r.ips) != 0 {
		t.Fatalf("%s: want conflict and no ips, got %+v", k, r)
	}
	if !strings.Contains(r.conflict, contains) {
		t.Fatalf("%s: conflict %q does not mention %q", k, r.conflict, contains)
	}
}

func TestPlanSortsNumericallyAndDedups(t *testing.T) {
	got := plan(
		svcs(mkSvc("default", "web", 0, port(80, corev1.ProtocolTCP))),
		nodes(
			mkNode("a", internal("10.0.0.10")),
			mkNode("b", internal("10.0.0.9")),
			mkNode("c", internal("10.0.0.9")), // same IP twice
			mkNode("d", internal("9.1.1.1")),
		))
	// Numeric order: a string sort would put 10.0.0.10 before 10.0.0.9.
	wantIPs(t, got, "default/web", "9.1.1.1", "10.0.0.9", "10.0.0.10")
}

func TestPlanOnlyReadyNodes(t *testing.T) {
	noCond := mkNode("nocond", internal("10.0.0.4"))
	noCond.Status.Conditions = nil
	deleting := mkNode("deleting", internal("10.0.0.6"))
	deleting.DeletionTimestamp = &metav1.Time{Time: t0}
	cordoned := mkNode("cordoned", internal("10.0.0.5"))
	cordoned.Spec.Unschedulable = true

	got := plan(
		svcs(mkSvc("default", "web", 0, port(80, corev1.ProtocolTCP))),
		nodes(
			mkNode("ok", internal("10.0.0.1")),
			mkNode("false", internal("10.0.0.2"), ready(corev1.ConditionFalse)),
			mkNode("unknown", internal("10.0.0.3"), ready(corev1.ConditionUnknown)),
			noCond, deleting, cordoned,
		))
	// Cordoned nodes still forward traffic.
	wantIPs(t, got, "default/web", "10.0.0.1", "10.0.0.5")
}

func TestPlanPrefersExternalIP(t *testing.T) {
	got := plan(
		svcs(mkSvc("default", "web", 0, port(80, corev1.ProtocolTCP))),
		nodes(
			mkNode("pub", internal("10.0.0.1"), addr(corev1.NodeExternalIP, "203.0.113.7")),
			mkNode("priv", internal("10.0.0.2")),
		))
	wantIPs(t, got, "default/web", "10.0.0.2", "203.0.113.7")
}

func TestPlanKeepsIPv6AndDropsInvalid(t *testing.T) {
	got := plan(
		svcs(mkSvc("default", "web", 0, port(80, corev1.ProtocolTCP))),
		nodes(
			mkNode("dual", internal("fd00::1"), internal("10.0.0.1")),
			mkNode("odd", internal("not-an-ip"), internal("fe80::1%eth0")),
		))
	wantIPs(t, got, "default/web", "10.0.0.1", "fd00::1")
}

func TestPlanExcludeLabel(t *testing.T) {
	got := plan(
		svcs(mkSvc("default", "web", 0, port(80, corev1.ProtocolTCP))),
		nodes(
			mkNode("a", internal("10.0.0.1")),
			// The label counts whatever its value, as upstream.
			mkNode("b", internal("10.0.0.2"), label(labelExclude, "")),
		))
	wantIPs(t, got, "default/web", "10.0.0.1")
}

func TestPlanEnableLBPinsNodes(t *testing.T) {
	web := svcs(mkSvc("default", "web", 0, port(80, corev1.ProtocolTCP)))

	got := plan(web, nodes(
		mkNode("a", internal("10.0.0.1")),
		mkNode("b", internal("10.0.0.2"), label(labelEnableLB, "true")),
		mkNode("c", internal("10.0.0.3"), label(labelEnableLB, "false")),
	))
	wantIPs(t, got, "default/web", "10.0.0.2")

	// No node says "true": no pinning.
	got = plan(web, nodes(
		mkNode("a", internal("10.0.0.1")),
		mkNode("c", internal("10.0.0.3"), label(labelEnableLB, "false")),
	))
	wantIPs(t, got, "default/web", "10.0.0.1", "10.0.0.3")

	// The pin holds even when the pinned node is down or excluded: the
	// operator said where the LB lives, so it doesn't move elsewhere.
	got = plan(web, nodes(
		mkNode("a", internal("10.0.0.1")),
		mkNode("b", internal("10.0.0.2"), label(labelEnableLB, "true"), ready(corev1.ConditionFalse)),
		mkNode("d", internal("10.0.0.4"), label(labelEnableLB, "true"), label(labelExclude, "true")),
	))
	wantIPs(t, got, "default/web")
}

func TestPlanOldestHoldsPort(t *testing.T) {
	// "a-new" sorts first by name but was created later: time decides.
	got := plan(
		svcs(
			mkSvc("default", "a-new", time.Minute, port(80, corev1.ProtocolTCP)),
			mkSvc("default", "z-old", 0, port(80, corev1.ProtocolTCP)),
		),
		nodes(mkNode("a", internal("10.0.0.1"))))
	wantIPs(t, got, "default/z-old", "10.0.0.1")
	wantConflict(t, got, "default/a-new", "")
	want := "port 80/TCP is already used by LoadBalancer Service default/z-old; k1s's service load balancer " +
		"gives each port to one Service: choose another port or delete default/z-old"
	if got["default/a-new"].conflict != want {
		t.Fatalf("message:\n got %q\nwant %q", got["default/a-new"].conflict, want)
	}
}

func TestPlanSameTimeOrdersByNamespaceName(t *testing.T) {
	got := plan(
		svcs(
			mkSvc("b", "a", 0, port(443, corev1.ProtocolTCP)),
			mkSvc("a", "z", 0, port(443, corev1.ProtocolTCP)),
		),
		nodes(mkNode("n", internal("10.0.0.1"))))
	wantIPs(t, got, "a/z", "10.0.0.1")
	wantConflict(t, got, "b/a", "443/TCP is already used by LoadBalancer Service a/z")
}

func TestPlanProtocolsDoNotConflict(t *testing.T) {
	got := plan(
		svcs(
			mkSvc("kube-system", "dns-udp", 0, port(53, corev1.ProtocolUDP)),
			mkSvc("kube-system", "dns-tcp", time.Second, port(53, corev1.ProtocolTCP)),
			mkSvc("kube-system", "sctp", 2*time.Second, port(53, corev1.ProtocolSCTP)),
			// An empty protocol is TCP, so this one collides with dns-tcp.
			mkSvc("kube-system", "dns-default", 3*time.Second, port(53, "")),
		),
		nodes(mkNode("n", internal("10.0.0.1"))))
	wantIPs(t, got, "kube-system/dns-udp", "10.0.0.1")
	wantIPs(t, got, "kube-system/dns-tcp", "10.0.0.1")
	wantIPs(t, got, "kube-system/sctp", "10.0.0.1")
	wantConflict(t, got, "kube-system/dns-default", "port 53/TCP is already used by LoadBalancer Service kube-system/dns-tcp")
}

func TestPlanWaitingServiceHoldsNothing(t *testing.T) {
	got := plan(
		svcs(
			mkSvc("default", "first", 0, port(80, corev1.ProtocolTCP)),
			mkSvc("default", "second", time.Second, port(443, corev1.ProtocolTCP), port(80, corev1.ProtocolTCP)),
			mkSvc("default", "third", 2*time.Second, port(443, corev1.ProtocolTCP)),
		),
		nodes(mkNode("n", internal("10.0.0.1"))))
	wantIPs(t, got, "default/first", "10.0.0.1")
	wantConflict(t, got, "default/second", "port 80/TCP is already used by LoadBalancer Service default/first")
	// second is pending, so 443 is free for third.
	wantIPs(t, got, "default/third", "10.0.0.1")
}

func TestPlanFreedPortGoesToWaiter(t *testing.T) {
	first := mkSvc("default", "first", 0, port(80, corev1.ProtocolTCP))
	second := mkSvc("default", "second", time.Second, port(80, corev1.ProtocolTCP))
	n := nodes(mkNode("n", internal("10.0.0.1")))

	wantConflict(t, plan(svcs(first, second), n), "default/second", "default/first")
	wantIPs(t, plan(svcs(second), n), "default/second", "10.0.0.1")

	moved := first.DeepCopy()
	moved.Spec.Ports = []corev1.ServicePort{port(8080, corev1.ProtocolTCP)}
	got := plan(svcs(moved, second), n)
	wantIPs(t, got, "default/first", "10.0.0.1")
	wantIPs(t, got, "default/second", "10.0.0.1")
}

func TestPlanIgnoresServicesNotOurs(t *testing.T) {
	class := "example.com/other-lb"
	classed := mkSvc("default", "classed", 0, port(80, corev1.ProtocolTCP))
	classed.Spec.LoadBalancerClass = &class
	clusterIP := mkSvc("default", "cip", 0, port(80, corev1.ProtocolTCP))
	clusterIP.Spec.Type = corev1.ServiceTypeClusterIP
	nodePort := mkSvc("default", "np", 0, port(80, corev1.ProtocolTCP))
	nodePort.Spec.Type = corev1.ServiceTypeNodePort
	mine := mkSvc("default", "mine", time.Hour, port(80, corev1.ProtocolTCP))

	got := plan(svcs(classed, clusterIP, nodePort, mine), nodes(mkNode("n", internal("10.0.0.1"))))
	if len(got) != 1 {
		t.Fatalf("want only default/mine planned, got %v", got)
	}
	// The older Services on port 80 are not ours, so they hold nothing.
	wantIPs(t, got, "default/mine", "10.0.0.1")
}

func TestPlanNoNodes(t *testing.T) {
	got := plan(
		svcs(
			mkSvc("default", "a", 0, port(80, corev1.ProtocolTCP)),
			mkSvc("default", "b", time.Second, port(80, corev1.ProtocolTCP)),
		), nil)
	wantIPs(t, got, "default/a")
	// Conflicts are still reported: the port is held even with no node up.
	wantConflict(t, got, "default/b", "default/a")
}

func TestNodeSignature(t *testing.T) {
	base := mkNode("n", internal("10.0.0.1"))
	sig := nodeSignature(base)

	hb := base.DeepCopy()
	hb.Status.Conditions[1].LastHeartbeatTime = metav1.NewTime(t0.Add(time.Hour))
	hb.Labels["unrelated"] = "x"
	hb.Spec.Unschedulable = true
	if nodeSignature(hb) != sig {
		t.Fatal("heartbeat / unrelated change should not change the signature")
	}

	changes := map[string]func(*corev1.Node){
		"not ready":   func(n *corev1.Node) { n.Status.Conditions[1].Status = corev1.ConditionFalse },
		"address":     func(n *corev1.Node) { n.Status.Addresses[1].Address = "10.0.0.2" },
		"external ip": func(n *corev1.Node) { addr(corev1.NodeExternalIP, "203.0.113.1")(n) },
		"exclude":     func(n *corev1.Node) { n.Labels[labelExclude] = "" },
		"enablelb":    func(n *corev1.Node) { n.Labels[labelEnableLB] = "true" },
		"deleting":    func(n *corev1.Node) { n.DeletionTimestamp = &metav1.Time{Time: t0} },
	}
	for name, change := range changes {
		n := base.DeepCopy()
		change(n)
		if nodeSignature(n) == sig {
			t.Errorf("%s: signature did not change", name)
		}
	}
}

func TestSameIngress(t *testing.T) {
	want := ingress([]string{"10.0.0.1", "10.0.0.2"})
	if !sameIngress(ingress([]string{"10.0.0.1", "10.0.0.2"}), want) {
		t.Fatal("equal lists reported different")
	}
	if sameIngress(ingress([]string{"10.0.0.2", "10.0.0.1"}), want) {
		t.Fatal("order difference not seen")
	}
	if !sameIngress(nil, ingress(nil)) || !sameIngress([]corev1.LoadBalancerIngress{}, nil) {
		t.Fatal("empty lists reported different")
	}
	noMode := ingress([]string{"10.0.0.1", "10.0.0.2"})
	noMode[0].IPMode = nil
	if sameIngress(noMode, want) {
		t.Fatal("missing ipMode not seen")
	}
	proxy := ingress([]string{"10.0.0.1", "10.0.0.2"})
	m := corev1.LoadBalancerIPModeProxy
	proxy[1].IPMode = &m
	if sameIngress(proxy, want) {
		t.Fatal("ipMode difference not seen")
	}
	host := ingress([]string{"10.0.0.1", "10.0.0.2"})
	host[0].Hostname = "lb.example.com"
	if sameIngress(host, want) {
		t.Fatal("foreign hostname not seen")
	}
	if v := want[0].IPMode; v == nil || *v != corev1.LoadBalancerIPModeVIP {
		t.Fatalf("ingress() must set ipMode VIP, got %v", v)
	}
}

func TestPlanRefusesReservedPorts(t *testing.T) {
	api := mkSvc("default", "api", 1*time.Second, port(6443, corev1.ProtocolTCP))
	udp := mkSvc("default", "udp", 2*time.Second, port(6443, corev1.ProtocolUDP))
	got := planWith(svcs(api, udp), nodes(mkNode("n", internal("10.0.0.1"))), map[string]string{"6443/TCP": "the kube-apiserver"})
	wantConflict(t, got, "default/api", "the kube-apiserver")
	wantIPs(t, got, "default/udp", "10.0.0.1")
}
