package control

import (
	"context"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/k1s-io/k1s/internal/pki"
)

// KubeletAPIBinding lets the apiserver's kubelet client (the identity it
// uses for logs, exec and port-forward) use the kubelet API.
const KubeletAPIBinding = "k1s-kube-apiserver-kubelet-api-admin"

// EnsureRBAC creates the bindings k1s's own identities need beyond the
// defaults Kubernetes bootstraps.
func EnsureRBAC(ctx context.Context, f pki.Files) error {
	rc, err := clientcmd.BuildConfigFromFlags("", f.AdminKubeconfig())
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: KubeletAPIBinding, Labels: map[string]string{"app.kubernetes.io/managed-by": "k1s"}},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:kubelet-api-admin"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: pki.APIServerKubeletUser}},
	}
	_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}
