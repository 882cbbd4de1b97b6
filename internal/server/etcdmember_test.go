package server

import (
	"context"
	"slices"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/k1s-io/k1s/internal/etcd"
)

// A server's own Node gets its member's annotations and the finalizer,
// keeping its other finalizers, and markOwnNode returns only when asked
// to stop.
func TestMarkOwnNode(t *testing.T) {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "s3", Finalizers: []string{"example.com/other"}}}
	kube := fake.NewClientset(node)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- markOwnNode(ctx, kube, "s3", "host-10.0.0.3", "https://10.0.0.3:2380") }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := kube.CoreV1().Nodes().Get(ctx, "s3", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if marked(n, "host-10.0.0.3", "https://10.0.0.3:2380") {
			if !slices.Contains(n.Finalizers, "example.com/other") || !pendingRemoval(withDeletion(n)) {
				t.Errorf("finalizers %v", n.Finalizers)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not marked: annotations %v finalizers %v", n.Annotations, n.Finalizers)
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("markOwnNode returned before its stop: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("markOwnNode after stop = %v", err)
	}
}

func withDeletion(n *corev1.Node) *corev1.Node {
	n = n.DeepCopy()
	now := metav1.Now()
	n.DeletionTimestamp = &now
	return n
}

func TestPendingRemoval(t *testing.T) {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "s3", Finalizers: []string{etcd.NodeFinalizer}}}
	if pendingRemoval(n) {
		t.Error("a Node not being deleted is pending removal")
	}
	if !pendingRemoval(withDeletion(n)) {
		t.Error("a deleted server's Node is not pending removal")
	}
	n.Finalizers = nil
	if pendingRemoval(withDeletion(n)) {
		t.Error("a deleted Node without the finalizer is pending removal")
	}
}

func TestOtherServers(t *testing.T) {
	members := []*etcdserverpb.Member{
		{ID: 1, PeerURLs: []string{"https://10.0.0.1:2380"}},
		{ID: 2, PeerURLs: []string{"https://10.0.0.2:2380"}},
		{ID: 3, PeerURLs: []string{"https://[fd00::3]:2380", "https://10.0.0.3:2380"}},
	}
	if got, want := otherServers(members, 2), []string{"10.0.0.1", "fd00::3", "10.0.0.3"}; !slices.Equal(got, want) {
		t.Errorf("otherServers = %v, want %v", got, want)
	}
}
