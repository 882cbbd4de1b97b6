package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
)

// The identities `k1s dashboard token` hands out tokens of.
const (
	dashboardViewer    = "k1s-dashboard-viewer"
	dashboardAdmin     = "k1s-dashboard-admin"
	dashboardNodesRole = "k1s-dashboard-nodes"
	dashboardNodePort  = 30443
	minDashboardTTL    = 10 * time.Minute // the apiserver's minimum for a TokenRequest
)

func dashboardCommand() *cli.Command {
	return &cli.Command{
		Name:        "dashboard",
		Usage:       "k1s-dashboard helpers: print a sign-in token",
		Subcommands: []*cli.Command{dashboardTokenCommand()},
	}
}

// dashboardAccess says who a dashboard token is for.
type dashboardAccess struct {
	Admin     bool
	Namespace string // "" for every namespace
	TTL       time.Duration
}

func (a dashboardAccess) validate() error {
	if a.TTL < minDashboardTTL {
		return fmt.Errorf("--ttl %s is too short: the apiserver issues tokens for at least %s", a.TTL, minDashboardTTL)
	}
	if a.Namespace != "" {
		if errs := validation.IsDNS1123Label(a.Namespace); len(errs) > 0 {
			return fmt.Errorf("--namespace %q is not a valid namespace name: %s", a.Namespace, strings.Join(errs, "; "))
		}
	}
	return nil
}

// sa and role: the ServiceAccount (in kube-system, or in the namespace it
// is limited to) and the built-in ClusterRole it gets.
func (a dashboardAccess) sa() (ns, name, role string) {
	ns, name, role = "kube-system", dashboardViewer, "view"
	if a.Namespace != "" {
		ns = a.Namespace
	}
	if a.Admin {
		name, role = dashboardAdmin, "edit"
	}
	return ns, name, role
}

func dashboardTokenCommand() *cli.Command {
	var t serverTarget
	var a dashboardAccess
	b := &binder{}
	t.flags(b, true)
	b.duration("ttl", "how long the token is valid (at least 10m)", &a.TTL, 8*time.Hour)
	b.bool("admin", "a token that may change things (the built-in edit role: scale, restart, delete Pods) instead of a read-only one (view)", &a.Admin)
	b.str("namespace", "limit the token to this namespace (a RoleBinding there) instead of every namespace and the nodes", &a.Namespace, "", "n")
	return &cli.Command{
		Name:         "token",
		Usage:        "ensure the dashboard's ServiceAccount (read-only, or --admin) and print a token to sign in with",
		Flags:        b.flags,
		OnUsageError: usageError,
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("unexpected argument %q: k1s dashboard token takes only flags (run 'k1s dashboard token --help')", c.Args().First())
			}
			b.collect(c)
			if err := a.validate(); err != nil {
				return err
			}
			kube, rc, err := t.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(c.Context, 30*time.Second)
			defer cancel()
			tok, exp, err := dashboardToken(ctx, kube, a)
			if err != nil {
				return reachErr(rc, err)
			}
			ns, name, role := a.sa()
			scope := "every namespace, and the nodes"
			if a.Namespace != "" {
				scope = "namespace " + a.Namespace + " only"
			}
			fmt.Fprintln(c.App.Writer, tok)
			fmt.Fprintf(c.App.ErrWriter, "token of system:serviceaccount:%s:%s (role %s in %s), valid until %s; sign in at https://<node-ip>:%d\n",
				ns, name, role, scope, exp.UTC().Format(time.RFC3339), dashboardNodePort)
			return nil
		},
	}
}

// dashboardToken ensures the ServiceAccount and its bindings of a and
// returns a TokenRequest token for it and when it expires.
func dashboardToken(ctx context.Context, kube kubernetes.Interface, a dashboardAccess) (string, time.Time, error) {
	ns, name, role := a.sa()
	labels := map[string]string{"app.kubernetes.io/name": "k1s-dashboard", "app.kubernetes.io/managed-by": "k1s"}
	if a.Namespace != "" {
		if _, err := kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
			return "", time.Time{}, fmt.Errorf("namespace %s: %w", ns, err)
		}
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels}}
	if _, err := kube.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", time.Time{}, fmt.Errorf("creating ServiceAccount %s/%s: %w", ns, name, err)
	}
	subj := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: ns}}
	if a.Namespace != "" {
		rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role}, Subjects: subj}
		if _, err := kube.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return "", time.Time{}, fmt.Errorf("creating RoleBinding %s/%s: %w", ns, name, err)
		}
	} else {
		// view and edit hold no cluster-scoped objects; the overview lists nodes.
		cr := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: dashboardNodesRole, Labels: labels},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}}}}
		if _, err := kube.RbacV1().ClusterRoles().Create(ctx, cr, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return "", time.Time{}, fmt.Errorf("creating ClusterRole %s: %w", dashboardNodesRole, err)
		}
		for bname, rname := range map[string]string{name: role, name + "-nodes": dashboardNodesRole} {
			crb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: bname, Labels: labels},
				RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: rname}, Subjects: subj}
			if _, err := kube.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return "", time.Time{}, fmt.Errorf("creating ClusterRoleBinding %s: %w", bname, err)
			}
		}
	}
	secs := int64(a.TTL / time.Second)
	tr, err := kube.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name,
		&authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("requesting a token for %s/%s: %w", ns, name, err)
	}
	return tr.Status.Token, tr.Status.ExpirationTimestamp.Time, nil
}
