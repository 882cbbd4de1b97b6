package nodehosts

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
)

const corefile = ".:53 {\n    hosts /etc/coredns/NodeHosts {\n        fallthrough\n    }\n}\n"

func node(name string, addrs ...corev1.NodeAddress) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{Addresses: addrs}}
}

func internal(ip string) corev1.NodeAddress {
	return corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip}
}

func coredns() *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: ConfigMap, Namespace: Namespace},
		Data:       map[string]string{"Corefile": corefile},
	}
}

func start(t *testing.T, kube *fake.Clientset) (stop func()) {
	t.Helper()
	logger, _ := logtest.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, kube, logger) }()
	return func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
	}
}

// waitFor polls the ConfigMap until its NodeHosts is want.
func waitFor(t *testing.T, kube *fake.Clientset, want string) *corev1.ConfigMap {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	var cm *corev1.ConfigMap
	for {
		var err error
		cm, err = kube.CoreV1().ConfigMaps(Namespace).Get(context.Background(), ConfigMap, metav1.GetOptions{})
		if err == nil {
			if have, ok := cm.Data[Key]; ok && have == want {
				return cm
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("NodeHosts never became %q; ConfigMap: %+v (err %v)", want, cm, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNodeHostsFollowsNodes(t *testing.T) {
	kube := fake.NewClientset(
		node("node-b", internal("10.0.0.2"), internal("fd00::2"), corev1.NodeAddress{Type: corev1.NodeHostName, Address: "node-b"}),
		node("node-a", internal("10.0.0.1"), corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "203.0.113.1"}),
		coredns(),
		// Another ConfigMap in kube-system is none of our business.
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: Namespace}, Data: map[string]string{"x": "y"}},
	)
	stop := start(t, kube)
	defer stop()

	cm := waitFor(t, kube, "10.0.0.1 node-a\n10.0.0.2 node-b\nfd00::2 node-b\n")
	if cm.Data["Corefile"] != corefile {
		t.Errorf("Corefile changed to %q", cm.Data["Corefile"])
	}

	// Every write was a merge patch of that one key: never an update.
	for _, a := range kube.Actions() {
		if a.GetResource().Resource != "configmaps" {
			continue
		}
		switch a.GetVerb() {
		case "update", "create", "delete":
			t.Errorf("unexpected %s of a ConfigMap", a.GetVerb())
		case "patch":
			p := a.(clienttesting.PatchAction)
			if p.GetPatchType() != types.MergePatchType || p.GetName() != ConfigMap {
				t.Errorf("patch %s of type %s", p.GetName(), p.GetPatchType())
			}
			var body map[string]map[string]string
			if err := json.Unmarshal(p.GetPatch(), &body); err != nil {
				t.Fatalf("patch %s: %v", p.GetPatch(), err)
			}
			if len(body) != 1 || len(body["data"]) != 1 || body["data"][Key] == "" {
				t.Errorf("patch touches more than data.%s: %s", Key, p.GetPatch())
			}
		}
	}

	// A node goes: its line goes.
	if err := kube.CoreV1().Nodes().Delete(context.Background(), "node-b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	cm = waitFor(t, kube, "10.0.0.1 node-a\n")
	if cm.Data["Corefile"] != corefile {
		t.Errorf("Corefile changed to %q", cm.Data["Corefile"])
	}

	// A node comes, and an address changes.
	if _, err := kube.CoreV1().Nodes().Create(context.Background(), node("node-0", internal("10.0.0.9")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	a, _ := kube.CoreV1().Nodes().Get(context.Background(), "node-a", metav1.GetOptions{})
	a.Status.Addresses = []corev1.NodeAddress{internal("10.0.0.11")}
	if _, err := kube.CoreV1().Nodes().UpdateStatus(context.Background(), a, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, kube, "10.0.0.9 node-0\n10.0.0.11 node-a\n")

	// Someone (e.g. a re-apply of the manifest) resets the key: it is repaired.
	cm, _ = kube.CoreV1().ConfigMaps(Namespace).Get(context.Background(), ConfigMap, metav1.GetOptions{})
	cm.Data[Key] = ""
	if _, err := kube.CoreV1().ConfigMaps(Namespace).Update(context.Background(), cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, kube, "10.0.0.9 node-0\n10.0.0.11 node-a\n")

	other, _ := kube.CoreV1().ConfigMaps(Namespace).Get(context.Background(), "other", metav1.GetOptions{})
	if _, ok := other.Data[Key]; ok {
		t.Errorf("kube-system/other got a %s key", Key)
	}
}

func TestNoConfigMapNothingCreated(t *testing.T) {
	kube := fake.NewClientset(node("node-a", internal("10.0.0.1")))
	stop := start(t, kube)
	// Give Run time to sync its caches and react to the node.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		listed := 0
		for _, a := range kube.Actions() {
			if a.GetVerb() == "watch" {
				listed++
			}
		}
		if listed >= 2 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	// A node event after the caches are up.
	if _, err := kube.CoreV1().Nodes().Create(context.Background(), node("node-b", internal("10.0.0.2")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	stop()
	for _, a := range kube.Actions() {
		if a.GetResource().Resource == "configmaps" && a.GetVerb() != "list" && a.GetVerb() != "watch" {
			t.Errorf("unexpected %s of a ConfigMap", a.GetVerb())
		}
	}
	if _, err := kube.CoreV1().ConfigMaps(Namespace).Get(context.Background(), ConfigMap, metav1.GetOptions{}); err == nil {
		t.Error("the coredns ConfigMap was created")
	}
}

func TestConfigMapAppearsLater(t *testing.T) {
	kube := fake.NewClientset(node("node-a", internal("10.0.0.1")))
	stop := start(t, kube)
	defer stop()
	time.Sleep(100 * time.Millisecond)
	if _, err := kube.CoreV1().ConfigMaps(Namespace).Create(context.Background(), coredns(), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cm := waitFor(t, kube, "10.0.0.1 node-a\n")
	if cm.Data["Corefile"] != corefile {
		t.Errorf("Corefile changed to %q", cm.Data["Corefile"])
	}
}

func TestHosts(t *testing.T) {
	got := Hosts([]*corev1.Node{
		node("z", internal("10.0.0.3")),
		node("a", internal("10.0.0.1"), internal("10.0.0.1"), internal("not-an-ip"), internal(" 2001:db8::1 ")),
		node("no-ip", corev1.NodeAddress{Type: corev1.NodeHostName, Address: "no-ip"}),
	})
	want := "10.0.0.1 a\n2001:db8::1 a\n10.0.0.3 z\n"
	if got != want {
		t.Errorf("Hosts = %q, want %q", got, want)
	}
	if Hosts(nil) != "" {
		t.Errorf("Hosts(nil) = %q", Hosts(nil))
	}
}
