package netpol

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// inNetns runs f on a thread in a new network namespace, so the host's
// rules are never touched; the thread ends with f (it is never unlocked),
// which drops the namespace.
func inNetns(tb testing.TB, f func()) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Fatal("needs root (network namespaces, iptables, ipsets)")
	}
	if _, err := exec.LookPath("iptables-restore"); err != nil {
		tb.Fatal("needs iptables: apt-get install iptables")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			tb.Error(err)
			return
		}
		defer orig.Close()
		ns, err := netns.New()
		if err != nil {
			tb.Error(err)
			return
		}
		defer ns.Close()
		f()
	}()
	<-done
}

func save(tb testing.TB) string {
	out, err := exec.Command("iptables-save", "-t", "filter").CombinedOutput()
	if err != nil {
		tb.Fatalf("iptables-save: %v %s", err, out)
	}
	return string(out)
}

func ourSets(tb testing.TB) map[string]int {
	all, err := netlink.IpsetListAll()
	if err != nil {
		tb.Fatalf("ipset list: %v", err)
	}
	out := map[string]int{}
	for _, s := range all {
		if strings.HasPrefix(s.SetName, SetPrefix) {
			out[s.SetName] = len(s.Entries)
		}
	}
	return out
}

func TestApplyReplaceAndCleanup(t *testing.T) {
	inNetns(t, func() {
		a, err := NewApplier()
		if err != nil {
			t.Error(err)
			return
		}
		defer a.Close()
		// Another tool's ACCEPT first in FORWARD: ours must go before it.
		if out, err := exec.Command("iptables", "-I", "FORWARD", "-j", "ACCEPT").CombinedOutput(); err != nil {
			t.Errorf("%v %s", err, out)
			return
		}
		in := world()
		in.Policies = append(in.Policies, policy(t, `metadata: {name: p}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress, Egress]
  ingress: [{from: [{podSelector: {matchLabels: {app: cli}}}, {ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}]}]
  egress: [{to: [{podSelector: {matchLabels: {app: db}}}], ports: [{port: http}]}]`))
		p1 := Compute(in)
		if err := a.Apply(p1); err != nil {
			t.Errorf("apply: %v\n%s", err, render(p1, nil))
			return
		}
		s := save(t)
		for _, want := range []string{
			"-A FORWARD -m comment --comment \"" + hookComment + "\" -j K1S-NP-FORWARD\n-A FORWARD -j ACCEPT",
			"-A INPUT -m comment --comment \"" + hookComment + "\" -j K1S-NP-INPUT",
			"-A K1S-NP-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
			"-j DROP",
		} {
			if !strings.Contains(s, want) {
				t.Errorf("iptables-save lacks %q:\n%s", want, s)
			}
		}
		sets := ourSets(t)
		if len(sets) != 3 {
			t.Errorf("sets %v, want 3 (peer IPs, except nets, egress ip,port)", sets)
		}
		for _, st := range p1.Sets {
			if sets[st.Name] != len(st.Members) {
				t.Errorf("set %s has %d entries, want %d", st.Name, sets[st.Name], len(st.Members))
			}
		}
		// Applying again changes nothing, and the hook stays single.
		if err := a.Apply(p1); err != nil {
			t.Error(err)
		}
		if got := save(t); strings.Count(got, "-j K1S-NP-FORWARD") != 1 {
			t.Errorf("hook duplicated:\n%s", got)
		}
		// Someone puts a rule before ours: the next apply moves ours first again.
		if out, err := exec.Command("iptables", "-I", "FORWARD", "-j", "ACCEPT").CombinedOutput(); err != nil {
			t.Errorf("%v %s", err, out)
		}
		if err := a.Apply(p1); err != nil {
			t.Error(err)
		}
		if rules, _ := a.listRules("FORWARD"); len(rules) != 3 || !strings.HasSuffix(rules[0], "-j K1S-NP-FORWARD") {
			t.Errorf("FORWARD after re-apply: %q, want our jump first, once", rules)
		}
		// The policy goes: its Pod chains and sets go with it.
		p2 := Compute(world())
		if err := a.Apply(p2); err != nil {
			t.Error(err)
		}
		s = save(t)
		if strings.Contains(s, ":K1S-NP-I-") || strings.Contains(s, ":K1S-NP-E-") {
			t.Errorf("Pod chains left after the policy went:\n%s", s)
		}
		if sets := ourSets(t); len(sets) != 0 {
			t.Errorf("sets left: %v", sets)
		}
		// A new applier (a restart) finds and removes an old set.
		if err := a.Apply(p1); err != nil {
			t.Error(err)
		}
		b, _ := NewApplier()
		if err := b.Apply(p2); err != nil {
			t.Error(err)
		}
		b.Close()
		if sets := ourSets(t); len(sets) != 0 {
			t.Errorf("a restarted applier left sets: %v", sets)
		}
		if err := a.Apply(p1); err != nil {
			t.Error(err)
		}
		n, err := Cleanup()
		if err != nil || n != 2+2+3 {
			t.Errorf("Cleanup removed %d (want 4 chains + 3 sets), err %v", n, err)
		}
		s = save(t)
		if strings.Contains(s, "K1S-NP") {
			t.Errorf("Cleanup left rules:\n%s", s)
		}
		if sets := ourSets(t); len(sets) != 0 {
			t.Errorf("Cleanup left sets: %v", sets)
		}
	})
}

func TestRenderQuotesAndDeletesStale(t *testing.T) {
	p := Plan{Chains: []Chain{{Name: ForwardChain, Rules: [][]string{{"-m", "comment", "--comment", "a b", "-j", "RETURN"}}}}}
	got := render(p, []string{"INPUT", ForwardChain, "K1S-NP-I-OLD"})
	want := "*filter\n:K1S-NP-FORWARD - [0:0]\n:K1S-NP-I-OLD - [0:0]\n-A K1S-NP-FORWARD -m comment --comment \"a b\" -j RETURN\n-X K1S-NP-I-OLD\nCOMMIT\n"
	if got != want {
		t.Errorf("render:\n%s\nwant:\n%s", got, want)
	}
}

// scale: n policies, each allowing one app label from a namespace, over
// pods Pods spread over 4 nodes.
func scale(n, pods int) Input {
	in := Input{Node: "n0"}
	for i := 0; i < 10; i++ {
		in.Namespaces = append(in.Namespaces, mkNS(fmt.Sprintf("ns%d", i), map[string]string{"team": fmt.Sprintf("t%d", i%3)}))
	}
	for i := 0; i < pods; i++ {
		in.Pods = append(in.Pods, mkPod(fmt.Sprintf("ns%d", i%10), fmt.Sprintf("p%d", i), fmt.Sprintf("n%d", i%4),
			fmt.Sprintf("10.42.%d.%d", i%4, 10+i/4), map[string]string{"app": fmt.Sprintf("a%d", i%7)},
			corev1.ContainerPort{Name: "http", ContainerPort: 8080}))
	}
	for i := 0; i < n; i++ {
		np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("ns%d", i%10), Name: fmt.Sprintf("np%d", i)}}
		np.Spec.PodSelector = metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("a%d", i%7)}}
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
		np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{
			{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": fmt.Sprintf("t%d", i%3)}},
				PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("a%d", (i+1)%7)}}}}}}
		np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{
			{PodSelector: &metav1.LabelSelector{}}}}}
		in.Policies = append(in.Policies, np)
	}
	return in
}

func BenchmarkPlan50Policies100Pods(b *testing.B) {
	in := scale(50, 100)
	for i := 0; i < b.N; i++ {
		Compute(in)
	}
}

// BenchmarkApply50Policies100Pods: each iteration a Pod's label changes
// and the plan is applied, as after one event.
func BenchmarkApply50Policies100Pods(b *testing.B) {
	inNetns(b, func() {
		a, err := NewApplier()
		if err != nil {
			b.Error(err)
			return
		}
		defer a.Close()
		in := scale(50, 100)
		p := Compute(in)
		if err := a.Apply(p); err != nil {
			b.Error(err)
			return
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			in.Pods[i%len(in.Pods)].Labels["app"] = fmt.Sprintf("a%d", i%7)
			if err := a.Apply(Compute(in)); err != nil {
				b.Error(err)
				return
			}
		}
		b.StopTimer()
		// After ResetTimer, which drops reported metrics.
		b.ReportMetric(float64(len(p.Chains)), "chains")
		b.ReportMetric(float64(len(p.Sets)), "sets")
		_, _ = Cleanup()
	})
}
