package control

import (
	"context"
	"slices"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/k1s-io/k1s/internal/pki"
)

// A cluster made by an earlier k1s has a flannel role that may patch any
// Node, bound to one shared user; a start replaces both.
func TestEnsureRBACNarrowsAnOldFlannelRole(t *testing.T) {
	ctx := context.Background()
	cs := fake.NewSimpleClientset(
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: FlannelRole}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch", "patch"}},
			{APIGroups: []string{""}, Resources: []string{"nodes/status"}, Verbs: []string{"patch"}},
		}},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: FlannelRole},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: FlannelRole},
			Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "system:k1s-flannel"}}},
	)
	if err := EnsureRBAC(ctx, cs); err != nil {
		t.Fatal(err)
	}
	role, err := cs.RbacV1().ClusterRoles().Get(ctx, FlannelRole, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range role.Rules {
		if slices.Contains(r.Verbs, "patch") || slices.Contains(r.Resources, "nodes/status") {
			t.Errorf("shared flannel role still writes Nodes: %+v", r)
		}
	}
	b, err := cs.RbacV1().ClusterRoleBindings().Get(ctx, FlannelRole, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Subjects) != 1 || b.Subjects[0].Kind != rbacv1.GroupKind || b.Subjects[0].Name != pki.FlannelGroup {
		t.Errorf("binding subjects %+v, want only the group %s", b.Subjects, pki.FlannelGroup)
	}
	// A second start changes nothing and does not fail.
	if err := EnsureRBAC(ctx, cs); err != nil {
		t.Fatal(err)
	}
}

func TestFlannelNodeRBACIsConfinedToItsNode(t *testing.T) {
	ctx := context.Background()
	cs := fake.NewSimpleClientset()
	if err := EnsureFlannelNodeRBAC(ctx, cs, "edge-1"); err != nil {
		t.Fatal(err)
	}
	role, err := cs.RbacV1().ClusterRoles().Get(ctx, "k1s:flannel:edge-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(role.Rules) != 1 || !slices.Equal(role.Rules[0].ResourceNames, []string{"edge-1"}) || !slices.Equal(role.Rules[0].Resources, []string{"nodes/status"}) {
		t.Errorf("rules %+v, want nodes/status of edge-1 only", role.Rules)
	}
	b, err := cs.RbacV1().ClusterRoleBindings().Get(ctx, "k1s:flannel:edge-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Subjects) != 1 || b.Subjects[0].Name != pki.FlannelUser("edge-1") || b.Subjects[0].Kind != rbacv1.UserKind {
		t.Errorf("subjects %+v", b.Subjects)
	}
	if err := DeleteFlannelNodeRBAC(ctx, cs, "edge-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().ClusterRoles().Get(ctx, "k1s:flannel:edge-1", metav1.GetOptions{}); err == nil {
		t.Error("role left after delete")
	}
	if err := DeleteFlannelNodeRBAC(ctx, cs, "edge-1"); err != nil {
		t.Errorf("second delete: %v", err)
	}
}

// kube-proxy's default role and binding are made ahead of the apiserver's
// hook exactly as the default policy has them, and an existing (possibly
// edited) role is left alone: the hook owns it.
func TestEnsureRBACCreatesTheDefaultProxierRoleOnlyWhenMissing(t *testing.T) {
	ctx := context.Background()
	cs := fake.NewSimpleClientset()
	if err := EnsureRBAC(ctx, cs); err != nil {
		t.Fatal(err)
	}
	role, err := cs.RbacV1().ClusterRoles().Get(ctx, ProxierRole, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if role.Annotations["rbac.authorization.kubernetes.io/autoupdate"] != "true" || role.Labels["kubernetes.io/bootstrapping"] != "rbac-defaults" {
		t.Errorf("role metadata %v %v, want the default policy's", role.Labels, role.Annotations)
	}
	var endpointSlices bool
	for _, r := range role.Rules {
		endpointSlices = endpointSlices || slices.Contains(r.Resources, "endpointslices") && slices.Contains(r.Verbs, "watch")
	}
	if !endpointSlices {
		t.Errorf("rules %+v do not let kube-proxy watch EndpointSlices", role.Rules)
	}
	b, err := cs.RbacV1().ClusterRoleBindings().Get(ctx, ProxierRole, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if b.RoleRef.Name != ProxierRole || len(b.Subjects) != 1 || b.Subjects[0].Kind != rbacv1.UserKind || b.Subjects[0].Name != "system:kube-proxy" {
		t.Errorf("binding %+v %+v, want %s bound to the user system:kube-proxy", b.RoleRef, b.Subjects, ProxierRole)
	}

	edited := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: ProxierRole}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"get"}}}}
	cs = fake.NewSimpleClientset(edited)
	if err := EnsureRBAC(ctx, cs); err != nil {
		t.Fatal(err)
	}
	got, err := cs.RbacV1().ClusterRoles().Get(ctx, ProxierRole, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Rules) != 1 || got.Labels != nil {
		t.Errorf("an existing %s was changed: %+v", ProxierRole, got)
	}
}
