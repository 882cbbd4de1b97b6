package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func TestDashboardToken(t *testing.T) {
	kube := fake.NewSimpleClientset(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team"}})
	var asked []int64
	kube.PrependReactor("create", "serviceaccounts", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "token" {
			return false, nil, nil
		}
		tr := a.(k8stesting.CreateAction).GetObject().(*authv1.TokenRequest)
		asked = append(asked, *tr.Spec.ExpirationSeconds)
		tr.Status = authv1.TokenRequestStatus{Token: "tok-" + a.GetNamespace(), ExpirationTimestamp: metav1.NewTime(time.Unix(5000, 0))}
		return true, tr, nil
	})
	ctx := context.Background()
	for i := 0; i < 2; i++ { // the second run finds everything in place
		tok, exp, err := dashboardToken(ctx, kube, dashboardAccess{Admin: true, TTL: time.Hour})
		if err != nil || tok != "tok-kube-system" || exp.Unix() != 5000 {
			t.Fatalf("run %d: %q %v %v", i, tok, exp, err)
		}
	}
	crb, err := kube.RbacV1().ClusterRoleBindings().Get(ctx, dashboardAdmin, metav1.GetOptions{})
	if err != nil || crb.RoleRef.Name != "edit" || crb.Subjects[0].Name != dashboardAdmin || crb.Subjects[0].Namespace != "kube-system" {
		t.Fatalf("admin binding %+v %v", crb, err)
	}
	if nb, err := kube.RbacV1().ClusterRoleBindings().Get(ctx, dashboardAdmin+"-nodes", metav1.GetOptions{}); err != nil || nb.RoleRef.Name != dashboardNodesRole {
		t.Fatalf("nodes binding %+v %v", nb, err)
	}
	if asked[0] != 3600 {
		t.Fatalf("asked for %d s, want 3600", asked[0])
	}

	if _, _, err := dashboardToken(ctx, kube, dashboardAccess{Namespace: "team", TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	rb, err := kube.RbacV1().RoleBindings("team").Get(ctx, dashboardViewer, metav1.GetOptions{})
	if err != nil || rb.RoleRef.Name != "view" || rb.Subjects[0].Namespace != "team" {
		t.Fatalf("namespaced viewer binding %+v %v", rb, err)
	}
	if _, err := kube.RbacV1().ClusterRoleBindings().Get(ctx, dashboardViewer, metav1.GetOptions{}); err == nil {
		t.Fatal("a namespaced token got a ClusterRoleBinding")
	}
	if _, _, err := dashboardToken(ctx, kube, dashboardAccess{Namespace: "nope", TTL: time.Hour}); err == nil || !strings.Contains(err.Error(), "namespace nope") {
		t.Fatalf("missing namespace: %v", err)
	}
}

func TestDashboardAccessValidate(t *testing.T) {
	if err := (dashboardAccess{TTL: time.Minute}).validate(); err == nil || !strings.Contains(err.Error(), "--ttl") {
		t.Fatalf("short ttl: %v", err)
	}
	if err := (dashboardAccess{TTL: time.Hour, Namespace: "Bad_NS"}).validate(); err == nil || !strings.Contains(err.Error(), "--namespace") {
		t.Fatalf("bad namespace: %v", err)
	}
	if err := (dashboardAccess{TTL: time.Hour}).validate(); err != nil {
		t.Fatal(err)
	}
}
