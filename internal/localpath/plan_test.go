package localpath

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var cfg = Config{Root: "/var/lib/k1s/storage", HelperImage: "docker.io/k1s-io/local-path-helper:v0.1.0", Namespace: "kube-system"}

func class() *storagev1.StorageClass {
	del := corev1.PersistentVolumeReclaimDelete
	wait := storagev1.VolumeBindingWaitForFirstConsumer
	return &storagev1.StorageClass{
		ObjectMeta:        metav1.ObjectMeta{Name: "local-path"},
		Provisioner:       Provisioner,
		ReclaimPolicy:     &del,
		VolumeBindingMode: &wait,
	}
}

func claim(modes ...corev1.PersistentVolumeAccessMode) *corev1.PersistentVolumeClaim {
	sc := "local-path"
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "apps", Name: "data-web-0", UID: "1234-abcd", ResourceVersion: "7",
			Annotations: map[string]string{annSelectedNode: "node-b"},
		},
		Spec: corev1.PersistentVolumeClaimSpec{
			StorageClassName: &sc,
			AccessModes:      modes,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceStorage: resource.MustParse("1Gi"),
			}},
		},
		Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending},
	}
}

func TestPlanMakesANodeBoundHostPathVolume(t *testing.T) {
	c := claim(corev1.ReadWriteOnce)
	node, ok := Wanted(c, class())
	if !ok || node != "node-b" {
		t.Fatalf("Wanted = %q, %v", node, ok)
	}
	pv, err := Plan(cfg, c, class(), node, "host-b")
	if err != nil {
		t.Fatal(err)
	}
	if pv.Name != "pvc-1234-abcd" {
		t.Errorf("name %q", pv.Name)
	}
	if hp := pv.Spec.HostPath; hp == nil || hp.Path != "/var/lib/k1s/storage/pvc-1234-abcd" || *hp.Type != corev1.HostPathDirectory {
		t.Errorf("hostPath %+v", hp)
	}
	terms := pv.Spec.NodeAffinity.Required.NodeSelectorTerms
	if len(terms) != 1 || terms[0].MatchExpressions[0].Key != corev1.LabelHostname || terms[0].MatchExpressions[0].Values[0] != "host-b" {
		t.Errorf("node affinity %+v", terms)
	}
	if r := pv.Spec.ClaimRef; r.Namespace != "apps" || r.Name != "data-web-0" || r.UID != "1234-abcd" {
		t.Errorf("claimRef %+v", r)
	}
	if pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete || pv.Spec.StorageClassName != "local-path" {
		t.Errorf("policy %s class %s", pv.Spec.PersistentVolumeReclaimPolicy, pv.Spec.StorageClassName)
	}
	if q := pv.Spec.Capacity[corev1.ResourceStorage]; q.String() != "1Gi" {
		t.Errorf("capacity %s", q.String())
	}
	if pv.Annotations[annNode] != "node-b" || pv.Annotations[annProvisionedBy] != Provisioner {
		t.Errorf("annotations %v", pv.Annotations)
	}
}

func TestPlanRefuses(t *testing.T) {
	block := corev1.PersistentVolumeBlock
	for _, tc := range []struct {
		name  string
		edit  func(*corev1.PersistentVolumeClaim)
		wants string
	}{
		{"RWX", func(c *corev1.PersistentVolumeClaim) {
			c.Spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}
		}, "access mode ReadWriteMany is not supported"},
		{"ROX", func(c *corev1.PersistentVolumeClaim) {
			c.Spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadOnlyMany}
		}, "access mode ReadOnlyMany"},
		{"block", func(c *corev1.PersistentVolumeClaim) { c.Spec.VolumeMode = &block }, "volumeMode Block"},
		{"selector", func(c *corev1.PersistentVolumeClaim) { c.Spec.Selector = &metav1.LabelSelector{} }, "selector"},
		{"no size", func(c *corev1.PersistentVolumeClaim) { c.Spec.Resources.Requests = nil }, "requests.storage"},
	} {
		c := claim(corev1.ReadWriteOnce)
		tc.edit(c)
		_, err := Plan(cfg, c, class(), "node-b", "node-b")
		if !isRefusal(err) || !strings.Contains(err.Error(), tc.wants) {
			t.Errorf("%s: err = %v, want a refusal containing %q", tc.name, err, tc.wants)
		}
	}
}

func TestPlanRefusesABadRoot(t *testing.T) {
	bad := cfg
	bad.Root = "/"
	if _, err := Plan(bad, claim(corev1.ReadWriteOnce), class(), "n", "n"); err == nil || isRefusal(err) {
		t.Fatalf("err = %v, want a configuration error", err)
	}
}

func TestWantedOnlyPendingClaimsOfOurClassWithANode(t *testing.T) {
	other := class()
	other.Provisioner = "example.com/nfs"
	if _, ok := Wanted(claim(), other); ok {
		t.Error("another provisioner's claim")
	}
	c := claim()
	delete(c.Annotations, annSelectedNode)
	if _, ok := Wanted(c, class()); ok {
		t.Error("a claim without a selected node (no Pod scheduled yet)")
	}
	c = claim()
	c.Spec.VolumeName = "pvc-x"
	if _, ok := Wanted(c, class()); ok {
		t.Error("a bound claim")
	}
	c = claim()
	c.Status.Phase = corev1.ClaimBound
	if _, ok := Wanted(c, class()); ok {
		t.Error("a claim in phase Bound")
	}
}

func TestToDelete(t *testing.T) {
	pv, err := Plan(cfg, claim(), class(), "node-b", "node-b")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ToDelete(pv); ok {
		t.Error("a PV without phase Released")
	}
	pv.Status.Phase = corev1.VolumeReleased
	if node, ok := ToDelete(pv); !ok || node != "node-b" {
		t.Errorf("ToDelete = %q, %v", node, ok)
	}
	pv.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimRetain
	if _, ok := ToDelete(pv); ok {
		t.Error("a Retain PV")
	}
	pv.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimDelete
	delete(pv.Annotations, annProvisionedBy)
	if _, ok := ToDelete(pv); ok {
		t.Error("a PV someone else provisioned")
	}
}

func TestHelperPodMountsOnlyTheRootOnItsNode(t *testing.T) {
	p := HelperPod(cfg, OpCreate, "node-b", "pvc-1234", 1<<30)
	if p.Spec.NodeName != "node-b" || p.Namespace != "kube-system" {
		t.Errorf("node %q namespace %q", p.Spec.NodeName, p.Namespace)
	}
	if got := strings.Join(p.Spec.Containers[0].Args, " "); got != "create /var/lib/k1s/storage pvc-1234 1073741824" {
		t.Errorf("args %q", got)
	}
	if len(p.Spec.Volumes) != 1 || p.Spec.Volumes[0].HostPath.Path != cfg.Root || p.Spec.Containers[0].VolumeMounts[0].MountPath != cfg.Root {
		t.Errorf("volumes %+v", p.Spec.Volumes)
	}
	if *p.Spec.AutomountServiceAccountToken {
		t.Error("the helper needs no API token")
	}
	d := HelperPod(cfg, OpDelete, "node-b", "pvc-1234", 0)
	if got := strings.Join(d.Spec.Containers[0].Args, " "); got != "delete /var/lib/k1s/storage pvc-1234" {
		t.Errorf("delete args %q", got)
	}
	if d.Name == p.Name {
		t.Error("create and delete helpers share a name")
	}
}
