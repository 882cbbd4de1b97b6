package server

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// ControlPlaneLabel marks a server's own node. Add-ons that hold
// cluster-admin (the helm-controller) select it, so their token stays on
// servers. The kubelet may not set node-role labels on itself
// (NodeRestriction), so the server does it once the Node has registered.
const ControlPlaneLabel = "node-role.kubernetes.io/control-plane"

// labelOwnNode sets ControlPlaneLabel on node when it appears, then waits
// for ctx: the supervisor counts a return as a failure.
func labelOwnNode(ctx context.Context, kube kubernetes.Interface, node string) error {
	patch := fmt.Appendf(nil, `{"metadata":{"labels":{%q:"true"}}}`, ControlPlaneLabel)
	return patchOwnNode(ctx, kube, node, patch, func(n *corev1.Node) bool { return n.Labels[ControlPlaneLabel] == "true" })
}

// patchOwnNode applies a strategic-merge patch to node once it has
// registered, unless done says the Node needs none, then waits for ctx (the
// supervisor counts a return as a failure).
func patchOwnNode(ctx context.Context, kube kubernetes.Interface, node string, patch []byte, done func(*corev1.Node) bool) error {
	err := wait.PollUntilContextCancel(ctx, 2*time.Second, true, func(ctx context.Context) (bool, error) {
		n, err := kube.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return false, nil // not registered yet, or the API is busy: next round
		}
		if done(n) {
			return true, nil
		}
		_, err = kube.CoreV1().Nodes().Patch(ctx, node, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
		return err == nil, nil // a failed patch is tried again next round
	})
	if err != nil && ctx.Err() == nil {
		return err
	}
	<-ctx.Done()
	return nil
}
