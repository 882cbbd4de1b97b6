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
	labels := map[string]string{"app.kubernetes.io/managed-by": "k1s"}
	flannel := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: FlannelRole, Labels: labels},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch", "patch"}},
			{APIGroups: []string{""}, Resources: []string{"nodes/status"}, Verbs: []string{"patch"}},
		},
	}
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, flannel, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	for _, crb := range []*rbacv1.ClusterRoleBinding{{
		ObjectMeta: metav1.ObjectMeta{Name: KubeletAPIBinding, Labels: labels},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:kubelet-api-admin"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: pki.APIServerKubeletUser}},
	}, {
		ObjectMeta: metav1.ObjectMeta{Name: FlannelRole, Labels: labels},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: FlannelRole},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: pki.FlannelUser}},
	}} {
		if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	return nil
}

// FlannelRole lets flannel watch Nodes and publish its tunnel endpoint on them.
const FlannelRole = "k1s:flannel"
