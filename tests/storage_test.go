package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// webSet: a StatefulSet of two Pods on two different nodes, each with a
// local-path volume from volumeClaimTemplates; each Pod writes its name
// into the volume once, so a replaced Pod shows whether it got the old
// data back.
const webSet = `apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: web
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector: {matchLabels: {app: web}}
            topologyKey: kubernetes.io/hostname
      containers:
      - name: c
        image: ` + netImage + `
        imagePullPolicy: Never
        command: ["sh", "-c", "test -f /data/first || hostname > /data/first; exec sleep 3600"]
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 64Mi}}
`

// claimAndPod: a claim of the default class and a Pod using it (with
// WaitForFirstConsumer nothing is provisioned before a Pod is scheduled).
func claimAndPod(name, mode, size string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: %[1]s}
spec:
  accessModes: [%[2]s]
  resources: {requests: {storage: %[3]s}}
---
apiVersion: v1
kind: Pod
metadata: {name: %[1]s}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c, image: `+netImage+`, imagePullPolicy: Never, volumeMounts: [{name: v, mountPath: /data}]}
  volumes: [{name: v, persistentVolumeClaim: {claimName: %[1]s}}]
`, name, mode, size)
}

// TestLocalStorage: on a server and two agents, the default StorageClass
// local-path gives a StatefulSet's Pods volumes on their own nodes (made
// there by the helper Pod, also on agents); a replaced Pod gets its data
// back; deleting a claim deletes its PV and directory; claims local-path
// cannot serve get a clear event; --disable=local-storage on a restart
// removes the StorageClass and the provisioner's rights.
func TestLocalStorage(t *testing.T) {
	root := filepath.Join(t.TempDir(), "volumes")
	c := startCluster(t, "host-gw", "--default-local-storage-path="+root)
	s := c.s
	t.Cleanup(func() {
		_, _ = s.Kubectl("delete", "statefulset", "web", "--wait=true", "--timeout=60s")
		_, _ = s.Kubectl("delete", "pods,pvc", "--all", "--wait=true", "--timeout=60s")
	})

	eventually(t, time.Minute, "StorageClass local-path, the default", func() error {
		out, err := s.Kubectl("get", "storageclass", "local-path", "-o",
			`jsonpath={.provisioner} {.volumeBindingMode} {.reclaimPolicy} {.metadata.annotations.storageclass\.kubernetes\.io/is-default-class}`)
		if err != nil {
			return err
		}
		if out != "k1s.io/local-path WaitForFirstConsumer Delete true" {
			return fmt.Errorf("got %q", out)
		}
		return nil
	})

	apply(t, s, webSet)
	waitPhase(t, s, "web-0", "Running", 3*time.Minute)
	waitPhase(t, s, "web-1", "Running", 3*time.Minute)
	pvs := map[string]string{}   // Pod → PV
	nodes := map[string]string{} // Pod → node
	for _, pod := range []string{"web-0", "web-1"} {
		node, _ := s.Kubectl("get", "pod", pod, "-o", "jsonpath={.spec.nodeName}")
		pv, _ := s.Kubectl("get", "pvc", "data-"+pod, "-o", "jsonpath={.spec.volumeName}")
		if node == "" || pv == "" {
			t.Fatalf("%s: node %q, volume %q", pod, node, pv)
		}
		nodes[pod], pvs[pod] = node, pv
		// The PV is bound to the Pod's node and is a directory under the root.
		out, err := s.Kubectl("get", "pv", pv, "-o", `jsonpath={.spec.hostPath.path} {.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]} {.spec.persistentVolumeReclaimPolicy}`)
		if want := filepath.Join(root, pv) + " " + node + " Delete"; err != nil || out != want {
			t.Fatalf("PV %s of %s: %q %v, want %q", pv, pod, out, err, want)
		}
		b, err := os.ReadFile(filepath.Join(root, pv, "first"))
		if err != nil || strings.TrimSpace(string(b)) != pod {
			t.Fatalf("%s's file in its volume directory on the disk: %q %v", pod, b, err)
		}
		if out, err := c.exec(pod, "sh", "-c", "echo kept-"+pod+" > /data/kept && cat /data/kept"); err != nil || strings.TrimSpace(out) != "kept-"+pod {
			t.Fatalf("writing into %s's volume: %q %v", pod, out, err)
		}
	}
	if nodes["web-0"] == nodes["web-1"] {
		t.Fatalf("both Pods on %s; the anti-affinity wants two nodes", nodes["web-0"])
	}
	agentHasOne := false
	for _, n := range nodes {
		agentHasOne = agentHasOne || n != "s1"
	}
	if !agentHasOne {
		t.Fatalf("no volume on an agent: %v", nodes)
	}

	// A deleted Pod comes back on the same node with the same data.
	uid, _ := s.Kubectl("get", "pod", "web-1", "-o", "jsonpath={.metadata.uid}")
	if out, err := s.Kubectl("delete", "pod", "web-1", "--wait=true", "--timeout=60s"); err != nil {
		t.Fatalf("delete web-1: %v %s", err, out)
	}
	eventually(t, 2*time.Minute, "web-1 replaced and Running", func() error {
		out, err := s.Kubectl("get", "pod", "web-1", "-o", "jsonpath={.metadata.uid} {.status.phase} {.spec.nodeName}")
		if err != nil {
			return err
		}
		if f := strings.Fields(out); len(f) != 3 || f[0] == uid || f[1] != "Running" {
			return fmt.Errorf("web-1: %q (old uid %s)", out, uid)
		}
		return nil
	})
	if out, _ := s.Kubectl("get", "pod", "web-1", "-o", "jsonpath={.spec.nodeName}"); out != nodes["web-1"] {
		t.Errorf("web-1 came back on %q, its volume is on %s", out, nodes["web-1"])
	}
	out, err := c.exec("web-1", "cat", "/data/kept", "/data/first")
	if err != nil || strings.Join(strings.Fields(out), " ") != "kept-web-1 web-1" {
		t.Errorf("the replaced web-1 reads %q (%v), want its old data", out, err)
	}

	// Deleting the claims deletes the PVs and their directories.
	if out, err := s.Kubectl("delete", "statefulset", "web", "--wait=true", "--timeout=60s"); err != nil {
		t.Fatalf("delete statefulset: %v %s", err, out)
	}
	if out, err := s.Kubectl("delete", "pods", "-l", "app=web", "--wait=true", "--timeout=60s"); err != nil {
		t.Fatalf("delete pods: %v %s", err, out)
	}
	if out, err := s.Kubectl("delete", "pvc", "data-web-0", "data-web-1", "--wait=true", "--timeout=60s"); err != nil {
		t.Fatalf("delete pvc: %v %s", err, out)
	}
	for pod, pv := range pvs {
		eventually(t, 2*time.Minute, "PV and directory of "+pod+" removed", func() error {
			if out, err := s.Kubectl("get", "pv", pv, "-o", "name"); err == nil {
				return fmt.Errorf("PV still there: %s", out)
			} else if !strings.Contains(out, "NotFound") {
				return fmt.Errorf("get pv %s: %v %s", pv, err, out)
			}
			if _, err := os.Stat(filepath.Join(root, pv)); !os.IsNotExist(err) {
				return fmt.Errorf("directory %s on %s: %v", pv, nodes[pod], err)
			}
			return nil
		})
	}
	if out, _ := s.Kubectl("-n", "kube-system", "get", "pods", "-l", "app.kubernetes.io/name=k1s-local-path", "-o", "name"); out != "" {
		t.Errorf("helper Pods left behind: %s", out)
	}

	// Claims local-path cannot serve: a clear event on the claim.
	apply(t, s, claimAndPod("shared", "ReadWriteMany", "1Mi"))
	apply(t, s, claimAndPod("huge", "ReadWriteOnce", "900Pi"))
	for claim, want := range map[string][]string{
		"shared": {"access mode ReadWriteMany is not supported", "ReadWriteOnce"},
		"huge":   {"node ", "asks for 900.0 PiB but " + root + " has only", "free"},
	} {
		eventually(t, 2*time.Minute, "ProvisioningFailed event on "+claim, func() error {
			out, err := s.Kubectl("get", "events", "--field-selector", "involvedObject.kind=PersistentVolumeClaim,involvedObject.name="+claim+",reason=ProvisioningFailed", "-o", "jsonpath={.items[*].message}")
			if err != nil {
				return err
			}
			for _, w := range want {
				if !strings.Contains(out, w) {
					return fmt.Errorf("events %q lack %q", out, w)
				}
			}
			return nil
		})
		if out, _ := s.Kubectl("get", "pvc", claim, "-o", "jsonpath={.status.phase}"); out != "Pending" {
			t.Errorf("claim %s is %q, want Pending", claim, out)
		}
	}
	if out, err := s.Kubectl("delete", "pods,pvc", "shared", "huge", "--wait=true", "--timeout=60s"); err != nil {
		t.Fatalf("delete: %v %s", err, out)
	}
	if left, _ := os.ReadDir(root); len(left) != 0 {
		t.Errorf("directories left in %s: %v", root, left)
	}

	// --disable=local-storage on a restart removes the class and the rights.
	if err := s.Stop(90 * time.Second); err != nil {
		t.Fatal(err)
	}
	s.Args = append(s.Args, "--disable=local-storage")
	startExisting(t, s)
	if err := s.WaitLog("k1s is ready", 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, obj := range []string{"storageclass/local-path", "clusterrole/k1s:local-path", "clusterrolebinding/k1s:local-path"} {
		eventually(t, time.Minute, obj+" removed", func() error {
			out, err := s.Kubectl("get", obj, "-o", "name")
			if err == nil {
				return fmt.Errorf("still there: %s", out)
			}
			if !strings.Contains(out, "NotFound") {
				return fmt.Errorf("%v %s", err, out)
			}
			return nil
		})
	}
	if _, err := os.Stat(filepath.Join(s.DataDir, "server", "manifests", "local-storage.yaml")); !os.IsNotExist(err) {
		t.Errorf("local-storage.yaml still staged after --disable=local-storage: %v", err)
	}
}
