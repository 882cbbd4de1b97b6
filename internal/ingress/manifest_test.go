package ingress

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// TestManifest decodes manifests/ingress.yaml strictly (unknown fields
// fail) and checks it agrees with the controller: class controller name,
// ports, probes, RBAC for what the controller watches and writes.
func TestManifest(t *testing.T) {
	raw, err := os.ReadFile("../../manifests/ingress.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer("%{SYSTEM_DEFAULT_REGISTRY}%", "registry.example/", "%{K1S_INGRESS_TAG}%", "v0.1.0").Replace(string(raw))
	// The placeholder syntax of internal/deploy, which fails on unknown ones
	// (comments included).
	if left := regexp.MustCompile(`%\{([^{}%\s]*)\}%`).FindString(text); left != "" {
		t.Fatalf("unknown placeholder %s left in the manifest", left)
	}
	var (
		dep   appsv1.Deployment
		svc   corev1.Service
		class networkingv1.IngressClass
		role  rbacv1.ClusterRole
		kinds []string
	)
	for _, doc := range strings.Split(text, "\n---\n") {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, meta.Kind)
		var into any
		switch meta.Kind {
		case "Deployment":
			into = &dep
		case "Service":
			into = &svc
		case "IngressClass":
			into = &class
		case "ClusterRole":
			into = &role
		case "ServiceAccount":
			into = &corev1.ServiceAccount{}
		case "ClusterRoleBinding":
			into = &rbacv1.ClusterRoleBinding{}
		default:
			t.Fatalf("unexpected kind %q", meta.Kind)
		}
		if err := yaml.UnmarshalStrict([]byte(doc), into); err != nil {
			t.Fatalf("%s: %v", meta.Kind, err)
		}
	}
	if want := []string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "IngressClass", "Deployment", "Service"}; !slices.Equal(kinds, want) {
		t.Errorf("kinds %v, want %v", kinds, want)
	}
	if class.Spec.Controller != ControllerName || class.Annotations[AnnotationDefaultClass] != "true" {
		t.Errorf("IngressClass %s: controller %q, annotations %v", class.Name, class.Spec.Controller, class.Annotations)
	}

	c := dep.Spec.Template.Spec.Containers[0]
	if c.Image != "registry.example/k1s-io/ingress:v0.1.0" {
		t.Errorf("image %q", c.Image)
	}
	for _, arg := range []string{"--http-port=8000", "--https-port=8443", "--health-port=9000", "--publish-service=" + svc.Namespace + "/" + svc.Name} {
		if !slices.Contains(c.Args, arg) {
			t.Errorf("args %v lack %s", c.Args, arg)
		}
	}
	if c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe.HTTPGet.Path != "/healthz" ||
		c.ReadinessProbe.HTTPGet.Port != intstr.FromString("health") {
		t.Errorf("probes: %+v %+v", c.ReadinessProbe.HTTPGet, c.LivenessProbe.HTTPGet)
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["http"] != 8000 || ports["https"] != 8443 || ports["health"] != 9000 {
		t.Errorf("container ports %v", ports)
	}
	sc := c.SecurityContext
	psc := dep.Spec.Template.Spec.SecurityContext
	if psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != 65532 ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("security context: pod %+v container %+v", psc, sc)
	}
	if got := c.Resources.Limits.Memory().String(); got != "128Mi" {
		t.Errorf("memory limit %s", got)
	}
	if dep.Namespace != "kube-system" || dep.Spec.Template.Spec.ServiceAccountName != "k1s-ingress" ||
		dep.Spec.Template.Spec.PriorityClassName != "system-cluster-critical" {
		t.Errorf("deployment %s/%s sa %s", dep.Namespace, dep.Name, dep.Spec.Template.Spec.ServiceAccountName)
	}
	for k, v := range dep.Spec.Selector.MatchLabels {
		if dep.Spec.Template.Labels[k] != v || svc.Spec.Selector[k] != v {
			t.Errorf("selector %s=%s does not match the pod template or the Service", k, v)
		}
	}

	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || len(svc.Spec.Ports) != 2 ||
		svc.Spec.Ports[0].Port != 80 || svc.Spec.Ports[0].TargetPort.IntValue() != 8000 ||
		svc.Spec.Ports[1].Port != 443 || svc.Spec.Ports[1].TargetPort.IntValue() != 8443 {
		t.Errorf("service %+v", svc.Spec)
	}

	allowed := func(group, resource, verb string) bool {
		for _, r := range role.Rules {
			if slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, resource) && slices.Contains(r.Verbs, verb) {
				return true
			}
		}
		return false
	}
	for _, gr := range [][2]string{{"", "services"}, {"", "secrets"}, {"networking.k8s.io", "ingresses"}, {"networking.k8s.io", "ingressclasses"}} {
		for _, verb := range []string{"list", "watch"} {
			if !allowed(gr[0], gr[1], verb) {
				t.Errorf("ClusterRole does not allow %s %s", verb, gr[1])
			}
		}
	}
	if !allowed("networking.k8s.io", "ingresses/status", "update") {
		t.Error("ClusterRole does not allow updating ingresses/status")
	}
}
