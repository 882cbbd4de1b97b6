package control

import (
	"context"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/kubernetes/plugin/pkg/auth/authorizer/rbac/bootstrappolicy"

	"github.com/k1s-io/k1s/internal/pki"
)

// KubeletAPIBinding lets the apiserver's kubelet client (the identity it
// uses for logs, exec and port-forward) use the kubelet API.
const KubeletAPIBinding = "k1s-kube-apiserver-kubelet-api-admin"

// EnsureRBAC creates the bindings k1s's own identities need beyond the
// defaults Kubernetes bootstraps, and kube-proxy's default role and
// binding ahead of the apiserver's hook (see ensureDefaultProxier). cs
// should not be rate-limited at client-go's default of 5 requests/s: its
// dozen requests would then wait ~0.4 s on every start.
func EnsureRBAC(ctx context.Context, cs kubernetes.Interface) error {
	if err := ensureDefaultProxier(ctx, cs); err != nil {
		return err
	}
	labels := map[string]string{"app.kubernetes.io/managed-by": "k1s"}
	// Earlier k1s versions let flannel patch every Node: the role and
	// binding are overwritten, not only created.
	flannel := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: FlannelRole, Labels: labels},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}}},
	}
	if err := applyRole(ctx, cs, flannel); err != nil {
		return err
	}
	netpol := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: NetworkPolicyRole, Labels: labels},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods", "namespaces"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"networkpolicies"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
		},
	}
	if err := applyRole(ctx, cs, netpol); err != nil {
		return err
	}
	for _, crb := range []*rbacv1.ClusterRoleBinding{{
		ObjectMeta: metav1.ObjectMeta{Name: KubeletAPIBinding, Labels: labels},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:kubelet-api-admin"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: pki.APIServerKubeletUser}},
	}, {
		ObjectMeta: metav1.ObjectMeta{Name: FlannelRole, Labels: labels},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: FlannelRole},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: pki.FlannelGroup}},
	}, {
		ObjectMeta: metav1.ObjectMeta{Name: NetworkPolicyRole, Labels: labels},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: NetworkPolicyRole},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: pki.NetworkPolicyGroup}},
	}} {
		if err := applyBinding(ctx, cs, crb); err != nil {
			return err
		}
	}
	return nil
}

// NetworkPolicyRole lets every node's NetworkPolicy enforcer watch Pods,
// Namespaces and NetworkPolicies and report Warning events; it changes
// nothing else.
const NetworkPolicyRole = "k1s:network-policy"

// FlannelRole lets every node's flannel watch Nodes; FlannelNodeRole(n)
// lets node n's flannel publish its tunnel endpoint on its own Node only.
const FlannelRole = "k1s:flannel"

// FlannelNodeRole is the name of node's own flannel ClusterRole and binding.
func FlannelNodeRole(node string) string { return FlannelRole + ":" + node }

// EnsureFlannelNodeRBAC lets node's flannel identity patch the status
// (where flannel keeps its annotations) of that one Node.
func EnsureFlannelNodeRBAC(ctx context.Context, cs kubernetes.Interface, node string) error {
	labels := map[string]string{"app.kubernetes.io/managed-by": "k1s", NodeRoleLabel: node}
	name := FlannelNodeRole(node)
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes/status"},
			ResourceNames: []string{node}, Verbs: []string{"get", "patch"}}},
	}
	if err := applyRole(ctx, cs, role); err != nil {
		return err
	}
	return applyBinding(ctx, cs, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: pki.FlannelUser(node)}},
	})
}

// DeleteFlannelNodeRBAC removes what EnsureFlannelNodeRBAC made, when the
// Node is deleted.
func DeleteFlannelNodeRBAC(ctx context.Context, cs kubernetes.Interface, node string) error {
	name := FlannelNodeRole(node)
	if err := cs.RbacV1().ClusterRoleBindings().Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	if err := cs.RbacV1().ClusterRoles().Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return nil
}

// ProxierRole is the default policy's ClusterRole (and binding) for
// kube-proxy's user, system:kube-proxy.
const ProxierRole = "system:node-proxier"

// ensureDefaultProxier creates ProxierRole's role and binding when they are
// missing, as upstream's default policy defines them. A server's node
// starts kube-proxy before the apiserver's bootstrap-roles hook writes the
// default policy (DefaultPolicyHooks); without them kube-proxy's first
// lists would be refused and its informers back off for a second or more.
// The hook then finds both current and changes nothing; it still owns
// them (an existing role is never updated here).
func ensureDefaultProxier(ctx context.Context, cs kubernetes.Interface) error {
	for _, r := range bootstrappolicy.ClusterRoles() {
		if r.Name == ProxierRole {
			if _, err := cs.RbacV1().ClusterRoles().Create(ctx, &r, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return err
			}
		}
	}
	for _, b := range bootstrappolicy.ClusterRoleBindings() {
		if b.Name == ProxierRole {
			if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &b, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return err
			}
		}
	}
	return nil
}

// NodeRoleLabel marks the RBAC objects k1s made for one node.
const NodeRoleLabel = "k1s.io/node"

func applyRole(ctx context.Context, cs kubernetes.Interface, want *rbacv1.ClusterRole) error {
	got, err := cs.RbacV1().ClusterRoles().Get(ctx, want.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = cs.RbacV1().ClusterRoles().Create(ctx, want, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	if equality.Semantic.DeepEqual(got.Rules, want.Rules) {
		return nil
	}
	got.Rules = want.Rules
	_, err = cs.RbacV1().ClusterRoles().Update(ctx, got, metav1.UpdateOptions{})
	return err
}

func applyBinding(ctx context.Context, cs kubernetes.Interface, want *rbacv1.ClusterRoleBinding) error {
	got, err := cs.RbacV1().ClusterRoleBindings().Get(ctx, want.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, want, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	if equality.Semantic.DeepEqual(got.Subjects, want.Subjects) && got.RoleRef == want.RoleRef {
		return nil
	}
	if got.RoleRef != want.RoleRef { // immutable: replace the binding
		if err := cs.RbacV1().ClusterRoleBindings().Delete(ctx, want.Name, metav1.DeleteOptions{}); err != nil {
			return err
		}
		_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, want, metav1.CreateOptions{})
		return err
	}
	got.Subjects = want.Subjects
	_, err = cs.RbacV1().ClusterRoleBindings().Update(ctx, got, metav1.UpdateOptions{})
	return err
}
