package servicelb

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
)

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func statusIPs(t *testing.T, kube kubernetes.Interface, name string) ([]string, bool) {
	t.Helper()
	svc, err := kube.CoreV1().Services("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get %s: %v", name, err)
	}
	var ips []string
	vip := true
	for _, in := range svc.Status.LoadBalancer.Ingress {
		ips = append(ips, in.IP)
		if in.IPMode == nil || *in.IPMode != corev1.LoadBalancerIPModeVIP {
			vip = false
		}
	}
	return ips, vip
}

func portInUseEvents(t *testing.T, kube kubernetes.Interface, name string) []corev1.Event {
	t.Helper()
	list, err := kube.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list events: %v", err)
	}
	var out []corev1.Event
	for _, e := range list.Items {
		if e.Reason == reasonPortUsed && e.InvolvedObject.Name == name {
			out = append(out, e)
		}
	}
	return out
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRunAssignsAndResolvesPortConflict(t *testing.T) {
	// "zz-first" sorts last by name but is older, so it must win port 80.
	first := mkSvc("default", "zz-first", 0, port(80, corev1.ProtocolTCP))
	second := mkSvc("default", "aa-second", time.Minute, port(80, corev1.ProtocolTCP))
	// A stale ingress the controller must clear while second waits.
	vip := corev1.LoadBalancerIPModeVIP
	second.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.99", IPMode: &vip}}

	kube := fake.NewClientset(
		mkNode("n1", internal("10.0.0.2")),
		mkNode("n2", internal("10.0.0.1")),
		mkNode("down", internal("10.0.0.3"), ready(corev1.ConditionFalse)),
		first, second,
	)

	log := logrus.New()
	log.SetOutput(testWriter{t})
	log.SetLevel(logrus.DebugLevel)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, kube, log, nil) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	}()

	both := []string{"10.0.0.1", "10.0.0.2"}
	eventually(t, "zz-first to get both node IPs", func() bool {
		ips, vip := statusIPs(t, kube, "zz-first")
		return reflect.DeepEqual(ips, both) && vip
	})
	eventually(t, "PortInUse warning on aa-second", func() bool {
		for _, e := range portInUseEvents(t, kube, "aa-second") {
			if e.Type == corev1.EventTypeWarning &&
				strings.Contains(e.Message, "port 80/TCP is already used by LoadBalancer Service default/zz-first") {
				return true
			}
		}
		return false
	})
	eventually(t, "aa-second's stale ingress to be cleared", func() bool {
		ips, _ := statusIPs(t, kube, "aa-second")
		return len(ips) == 0
	})
	if n := len(portInUseEvents(t, kube, "zz-first")); n != 0 {
		t.Fatalf("the holder got %d PortInUse events", n)
	}

	if err := kube.CoreV1().Services("default").Delete(ctx, "zz-first", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "aa-second to get both node IPs once zz-first is gone", func() bool {
		ips, vip := statusIPs(t, kube, "aa-second")
		return reflect.DeepEqual(ips, both) && vip
	})

	// Many syncs ran for aa-second; the warning must have been sent once.
	evs := portInUseEvents(t, kube, "aa-second")
	if len(evs) != 1 || evs[0].Count > 1 {
		t.Fatalf("want one PortInUse event sent once, got %d events: %+v", len(evs), evs)
	}
}
