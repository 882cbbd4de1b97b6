package server

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// The server's node is labelled control-plane once it registers, keeping
// its other labels, and labelOwnNode returns only when asked to stop.
func TestLabelOwnNode(t *testing.T) {
	kube := fake.NewClientset()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- labelOwnNode(ctx, kube, "n1") }()

	// Registers after the first poll found nothing.
	time.Sleep(100 * time.Millisecond)
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"kubernetes.io/hostname": "n1"}}}
	if _, err := kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := kube.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if n.Labels[ControlPlaneLabel] == "true" {
			if n.Labels["kubernetes.io/hostname"] != "n1" {
				t.Errorf("other labels lost: %v", n.Labels)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s label after 10 s: %v", ControlPlaneLabel, n.Labels)
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("returned before its context was cancelled: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("after cancel: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("did not return after cancel")
	}
}
