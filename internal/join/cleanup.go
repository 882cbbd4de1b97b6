package join

import (
	"context"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/k1s-io/k1s/internal/control"
)

// ReleaseDeletedNodeNames deletes a node's password Secret (and the role
// of its flannel identity) when its Node is deleted, so that `kubectl delete node` frees the name for another
// host, as an operator replacing a machine expects. It runs until ctx ends.
func ReleaseDeletedNodeNames(ctx context.Context, kube kubernetes.Interface, log logrus.FieldLogger) error {
	factory := informers.NewSharedInformerFactory(kube, 0)
	nodes := factory.Core().V1().Nodes().Informer()
	_, err := nodes.AddEventHandler(cache.ResourceEventHandlerFuncs{
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			n, ok := obj.(*corev1.Node)
			if !ok {
				return
			}
			if err := control.DeleteFlannelNodeRBAC(ctx, kube, n.Name); err != nil {
				log.Warnf("node %s deleted, but its flannel role stays: %v", n.Name, err)
			}
			err := kube.CoreV1().Secrets(metav1.NamespaceSystem).Delete(ctx, passwordSecretName(n.Name), metav1.DeleteOptions{})
			switch {
			case err == nil:
				log.Infof("node %s deleted: its name is free for another host", n.Name)
			case !apierrors.IsNotFound(err):
				log.Warnf("node %s deleted, but its password Secret stays: %v", n.Name, err)
			}
		},
	})
	if err != nil {
		return err
	}
	factory.Start(ctx.Done())
	<-ctx.Done()
	factory.Shutdown()
	return nil
}
