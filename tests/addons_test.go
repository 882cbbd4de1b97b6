package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDisableAddons: --disable keeps built-in add-ons out of the cluster,
// and changing it on restart deploys or removes them. A broken manifest
// of the user's is named and skipped, and nothing else is lost.
func TestDisableAddons(t *testing.T) {
	s := newNodeServer(t, "--disable=coredns,servicelb,ingress,metrics-server,helm-controller,dashboard")
	manifests := filepath.Join(s.DataDir, "server", "manifests")
	// deployments lists kube-system's Deployments; a failed kubectl is an
	// error, never an empty list.
	deployments := func() (string, error) {
		out, err := s.Kubectl("-n", "kube-system", "get", "deployments", "-o", "jsonpath={.items[*].metadata.name}")
		if err != nil {
			return "", fmt.Errorf("kubectl get deployments: %v: %s", err, out)
		}
		return out, nil
	}
	startExisting(t, s)
	if err := s.WaitLog("k1s is ready", 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	apply(t, s, `apiVersion: v1
kind: Service
metadata: {name: lb}
spec:
  type: LoadBalancer
  selector: {app: none}
  ports: [{port: 18080}]
`)
	// Give the in-process controllers time to act, had they been running.
	time.Sleep(10 * time.Second)
	if d, err := deployments(); err != nil || d != "" {
		t.Errorf("deployments in kube-system with every add-on disabled: %q (%v)", d, err)
	}
	for _, f := range []string{"coredns.yaml", "ingress.yaml"} {
		if _, err := os.Stat(filepath.Join(manifests, f)); err == nil {
			t.Errorf("%s written although disabled", f)
		}
	}
	if out, err := s.Kubectl("get", "svc", "lb", "-o", "jsonpath={.status.loadBalancer.ingress}"); err != nil || out != "" {
		t.Errorf("LoadBalancer got ingress %s with servicelb disabled (%v)", out, err)
	}

	// Restart with CoreDNS and servicelb back, and a broken file of the user's.
	if err := s.Stop(90 * time.Second); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(manifests, "zz-broken.yaml")
	if err := os.WriteFile(bad, []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: good}\n---\napiVersion: v1\nmetadata: {name: no-kind}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.Args = replaceFlag(s.Args, "--disable=", "--disable=ingress,metrics-server,helm-controller,dashboard")
	startExisting(t, s)
	if err := s.WaitLog("k1s is ready", 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "coredns deployed after leaving --disable", func() error {
		if d, err := deployments(); err != nil || d != "coredns" {
			return fmt.Errorf("deployments %q (%v), want coredns only", d, err)
		}
		return nil
	})
	node, err := s.Kubectl("get", "nodes", "-o", `jsonpath={.items[0].status.addresses[?(@.type=="InternalIP")].address}`)
	if err != nil || node == "" {
		t.Fatalf("the node's InternalIP: %q (%v)", node, err)
	}
	eventually(t, time.Minute, "LoadBalancer ingress once servicelb runs", func() error {
		out, err := s.Kubectl("get", "svc", "lb", "-o", "jsonpath={.status.loadBalancer.ingress[*].ip}")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if out != node {
			return fmt.Errorf("ingress %q, want the node's %s", out, node)
		}
		return nil
	})
	if err := s.WaitLog("zz-broken.yaml", 30*time.Second); err != nil {
		t.Errorf("the broken manifest is not named in the log: %v", err)
	}
	log := s.Log()
	if !strings.Contains(log, "document 2") || !strings.Contains(log, "kind") {
		t.Errorf("the log does not say which document of zz-broken.yaml is wrong and why:\n%s", grepLines(log, "zz-broken"))
	}
	if _, err := s.Kubectl("get", "configmap", "good"); err == nil {
		t.Errorf("a document of the broken file was applied; a broken file must apply nothing")
	}
	if _, err := os.Stat(bad); err != nil {
		t.Errorf("the broken file was removed: %v", err)
	}

	// Disabling CoreDNS again removes what it had deployed.
	if err := s.Stop(90 * time.Second); err != nil {
		t.Fatal(err)
	}
	s.Args = replaceFlag(s.Args, "--disable=", "--disable=coredns")
	startExisting(t, s)
	if err := s.WaitLog("k1s is ready", 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "coredns removed, dashboard, helm-controller, ingress and metrics-server deployed", func() error {
		if d, err := deployments(); err != nil || d != "k1s-dashboard k1s-helm-controller k1s-ingress metrics-server" {
			return fmt.Errorf("deployments %q (%v), want k1s-dashboard, k1s-helm-controller, k1s-ingress and metrics-server", d, err)
		}
		if out, err := s.Kubectl("-n", "kube-system", "get", "svc", "kube-dns"); err == nil {
			return fmt.Errorf("kube-dns Service still there: %s", out)
		}
		return nil
	})
	if _, err := os.Stat(filepath.Join(manifests, "coredns.yaml")); err == nil {
		t.Errorf("coredns.yaml still in %s after --disable=coredns", manifests)
	}
}

// replaceFlag replaces the argument starting with prefix by repl.
func replaceFlag(args []string, prefix, repl string) []string {
	out := append([]string(nil), args...)
	for i, a := range out {
		if strings.HasPrefix(a, prefix) {
			out[i] = repl
		}
	}
	return out
}

func grepLines(text, substr string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestFlannelNone: with --flannel-backend=none k1s sets up no Pod network
// (no flannel device, no CNI config) and the node waits for the user's CNI.
func TestFlannelNone(t *testing.T) {
	s := newNodeServer(t, "--flannel-backend=none", "--disable=coredns,ingress")
	startExisting(t, s)
	if err := s.WaitLog("k1s is ready", 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	mustContain(t, s.Log(), "--flannel-backend=none", "server log")
	confs, _ := filepath.Glob(filepath.Join(s.DataDir, "agent", "etc", "cni", "net.d", "*"))
	if len(confs) > 0 {
		t.Errorf("CNI config written with --flannel-backend=none: %v", confs)
	}
	if _, err := os.Stat("/sys/class/net/flannel.1"); err == nil {
		t.Errorf("flannel.1 exists with --flannel-backend=none")
	}
	out, err := s.Kubectl("get", "nodes", "-o", `jsonpath={.items[0].status.conditions[?(@.type=="Ready")].status}`)
	if err != nil {
		t.Fatalf("kubectl get nodes: %v: %s", err, out)
	}
	if out == "True" {
		t.Errorf("the node is Ready without any CNI config")
	}
}

// TestManifestsPrune: what a file of the manifests folder created goes away
// with the file or its document, also when the file goes while k1s is down;
// a Namespace stays unless its manifest opts in with k1s.io/prune=true.
func TestManifestsPrune(t *testing.T) {
	// No node here, so metrics-server could not run, and a registered but
	// unavailable metrics.k8s.io would hold every Namespace deletion.
	s := startServer(t, "--disable=metrics-server")
	manifests := filepath.Join(s.DataDir, "server", "manifests")
	// The server may not have staged its add-ons yet.
	if err := os.MkdirAll(manifests, 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(manifests, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	remove := func(name string) {
		t.Helper()
		if err := os.Remove(filepath.Join(manifests, name)); err != nil {
			t.Fatal(err)
		}
	}
	cm := func(ns, name string) string {
		return "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: " + name + ", namespace: " + ns + "}\ndata: {k: v}\n"
	}
	ns := func(name, annotations string) string {
		return "apiVersion: v1\nkind: Namespace\nmetadata: {name: " + name + annotations + "}\n"
	}
	// waitFor polls until `kubectl get KIND NAME` finds it (want) or not.
	waitFor := func(want bool, args ...string) {
		t.Helper()
		what := strings.Join(args, " ")
		eventually(t, 90*time.Second, what+fmt.Sprintf(" present=%v", want), func() error {
			out, err := s.Kubectl(append([]string{"get"}, args...)...)
			switch {
			case want && err != nil:
				return fmt.Errorf("not there yet: %v %s", err, out)
			case !want && err == nil:
				return fmt.Errorf("still there: %s", out)
			case !want && !strings.Contains(out, "NotFound"):
				return fmt.Errorf("kubectl failed otherwise: %s", out)
			}
			return nil
		})
	}

	write("app.yaml", ns("kept", "")+"---\n"+ns("goes", ", annotations: {k1s.io/prune: \"true\"}")+"---\n"+
		cm("kept", "one")+"---\n"+cm("kept", "two"))
	write("other.yaml", cm("default", "other"))
	waitFor(true, "-n", "kept", "configmap", "two")
	waitFor(true, "configmap", "other")
	if out, err := s.Kubectl("-n", "kept", "get", "configmap", "one", "-o", "jsonpath={.metadata.labels.k1s\\.io/manifest}"); err != nil || out != "app" {
		t.Fatalf("label k1s.io/manifest = %q (%v), want app", out, err)
	}

	// One document removed: only its object goes.
	write("app.yaml", ns("kept", "")+"---\n"+ns("goes", ", annotations: {k1s.io/prune: \"true\"}")+"---\n"+cm("kept", "one"))
	waitFor(false, "-n", "kept", "configmap", "two")
	waitFor(true, "-n", "kept", "configmap", "one")

	// The file removed while k1s is down: pruned at the next start.
	if err := s.Stop(90 * time.Second); err != nil {
		t.Fatal(err)
	}
	remove("app.yaml")
	startExisting(t, s)
	waitFor(false, "-n", "kept", "configmap", "one")
	waitFor(false, "namespace", "goes")
	if err := s.WaitLog("Keeping Namespace kept although its manifest app.yaml was removed", 30*time.Second); err != nil {
		t.Errorf("the log does not say why Namespace kept stays: %v", err)
	}
	if out, err := s.Kubectl("get", "namespace", "kept", "-o", "jsonpath={.status.phase}"); err != nil || out != "Active" {
		t.Errorf("namespace kept (no k1s.io/prune) = %q (%v), want it Active", out, err)
	}
	if _, err := s.Kubectl("get", "configmap", "other"); err != nil {
		t.Errorf("another file's object was pruned: %v", err)
	}

	// A file removed while k1s runs.
	remove("other.yaml")
	waitFor(false, "configmap", "other")
}
