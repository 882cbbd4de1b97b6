package netpol

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
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
