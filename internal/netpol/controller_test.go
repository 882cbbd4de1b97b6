package netpol

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// The controller against a fake API, in a network namespace: a policy
// turns into rules, a policy it cannot fully express into a Warning event,
// and deleting the policies removes the Pod chains.
func TestControllerAppliesAndWarns(t *testing.T) {
	in := world()
	cs := fake.NewClientset()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, ns := range in.Namespaces {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range in.Pods {
		if _, err := cs.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	inNetns(t, func() {
		// The controller runs on this thread, in the namespace; the checks
		// run elsewhere and look into it through nsenter.
		ns := fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid())
		saveNS := func() string {
			out, err := exec.Command("nsenter", "--net="+ns, "iptables-save", "-t", "filter").CombinedOutput()
			if err != nil {
				t.Errorf("iptables-save: %v %s", err, out)
			}
			return string(out)
		}
		c := &Controller{Client: cs, Node: me, Log: log}
		ready := make(chan struct{})
		go func() {
			defer cancel()
			select {
			case <-ready:
			case <-time.After(10 * time.Second):
				t.Error("no first apply within 10 s")
				return
			}
			np := policy(t, `metadata: {name: v6}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{ipBlock: {cidr: "fd00::/8"}}, {podSelector: {matchLabels: {app: cli}}}]}]`)
			if _, err := cs.NetworkingV1().NetworkPolicies("default").Create(ctx, np, metav1.CreateOptions{}); err != nil {
				t.Error(err)
				return
			}
			waitFor(t, "web's ingress chain", func() bool { return strings.Contains(saveNS(), ":K1S-NP-I-") })
			waitFor(t, "a Warning event on the policy", func() bool {
				evs, _ := cs.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
				for _, e := range evs.Items {
					if e.Type == corev1.EventTypeWarning && e.InvolvedObject.Name == "v6" && strings.Contains(e.Message, "IPv6") {
						return true
					}
				}
				return false
			})
			if err := cs.NetworkingV1().NetworkPolicies("default").Delete(ctx, "v6", metav1.DeleteOptions{}); err != nil {
				t.Error(err)
			}
			waitFor(t, "the Pod chain removed", func() bool { return !strings.Contains(saveNS(), ":K1S-NP-I-") })
		}()
		if err := c.Run(ctx, func() { close(ready) }); err != nil {
			t.Errorf("Run = %v", err)
		}
	})
	if out, _ := exec.Command("iptables-save").CombinedOutput(); strings.Contains(string(out), ChainPrefix) {
		t.Errorf("the host's iptables got our chains:\n%s", out)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Errorf("timed out waiting for %s", what)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// BenchmarkControllerIdle: the controller's own cost with 50 policies and
// 100 Pods (25 on this node) against a fake API: heap held after its
// first apply, and CPU (its own and its iptables children's) over a
// minute with no changes, in which the 30 s resync runs twice. Run with
// -benchtime 1x.
func BenchmarkControllerIdle(b *testing.B) {
	in := scale(50, 100)
	cs := fake.NewClientset()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, ns := range in.Namespaces {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	for _, p := range in.Pods {
		if _, err := cs.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	for _, np := range in.Policies {
		if _, err := cs.NetworkingV1().NetworkPolicies(np.Namespace).Create(ctx, np, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	cpu := func() time.Duration {
		var self, kids unix.Rusage
		_ = unix.Getrusage(unix.RUSAGE_SELF, &self)
		_ = unix.Getrusage(unix.RUSAGE_CHILDREN, &kids)
		d := func(t unix.Timeval) time.Duration { return time.Duration(t.Nano()) }
		return d(self.Utime) + d(self.Stime) + d(kids.Utime) + d(kids.Stime)
	}
	for i := 0; i < b.N; i++ {
		inNetns(b, func() {
			before := heap()
			c := &Controller{Client: cs, Node: "n0", Log: log}
			ready := make(chan struct{})
			go func() {
				defer cancel()
				<-ready
				b.ReportMetric(float64(heap()-before)/1e6, "heap-MB")
				start := cpu()
				time.Sleep(time.Minute)
				b.ReportMetric(float64(cpu()-start)/float64(time.Millisecond), "cpu-ms/min")
			}()
			if err := c.Run(ctx, func() { close(ready) }); err != nil {
				b.Error(err)
			}
			_, _ = Cleanup()
		})
	}
}
