package dashboard

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// TestManifest decodes manifests/dashboard.yaml strictly and checks what
// the dashboard relies on: no token of its own and no RBAC objects, the CA
// at the path cmd/k1s-dashboard reads by default, the fixed NodePort the
// docs name, and the image tag the Makefile builds.
func TestManifest(t *testing.T) {
	raw, err := os.ReadFile("../../manifests/dashboard.yaml")
	if err != nil {
		t.Fatal(err)
	}
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^DASHBOARD_TAG\s*:=\s*(\S+)`).FindSubmatch(mk)
	if m == nil {
		t.Fatal("no DASHBOARD_TAG in the Makefile")
	}
	tag := string(m[1])
	text := strings.NewReplacer("%{SYSTEM_DEFAULT_REGISTRY}%", "", "%{K1S_DASHBOARD_TAG}%", tag).Replace(string(raw))
	if left := regexp.MustCompile(`%\{([^{}%\s]*)\}%`).FindString(text); left != "" {
		t.Fatalf("unknown placeholder %s left in the manifest", left)
	}
	var (
		dep   appsv1.Deployment
		svc   corev1.Service
		sa    corev1.ServiceAccount
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
		case "ServiceAccount":
			into = &sa
		default:
			t.Fatalf("unexpected kind %q (the dashboard must hold no rights of its own)", meta.Kind)
		}
		if err := yaml.UnmarshalStrict([]byte(doc), into); err != nil {
			t.Fatalf("%s: %v", meta.Kind, err)
		}
	}
	if want := []string{"ServiceAccount", "Deployment", "Service"}; !slices.Equal(kinds, want) {
		t.Errorf("kinds %v, want %v", kinds, want)
	}
	ps := dep.Spec.Template.Spec
	if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken || ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
		t.Error("the dashboard's ServiceAccount token is mounted")
	}
	c := ps.Containers[0]
	if c.Image != "k1s-io/dashboard:"+tag {
		t.Errorf("image %q, want k1s-io/dashboard:%s", c.Image, tag)
	}
	if !slices.Contains(c.Args, "--listen=:8443") || c.Ports[0].ContainerPort != 8443 {
		t.Errorf("args %v ports %v: want :8443", c.Args, c.Ports)
	}
	mounts := map[string]string{}
	for _, vm := range c.VolumeMounts {
		mounts[vm.Name] = vm.MountPath
	}
	if mounts["ca"] != "/etc/k1s-dashboard/ca" || mounts["tls"] != "/etc/k1s-dashboard/tls" {
		t.Errorf("mounts %v: cmd/k1s-dashboard reads /etc/k1s-dashboard/ca/ca.crt and /etc/k1s-dashboard/tls/", mounts)
	}
	p := svc.Spec.Ports[0]
	if svc.Spec.Type != corev1.ServiceTypeNodePort || p.NodePort != 30443 || p.TargetPort.IntValue() != 8443 {
		t.Errorf("service %s %+v: want NodePort 30443 to 8443", svc.Spec.Type, p)
	}
}
