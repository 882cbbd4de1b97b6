package tests

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/k1s-io/k1s/tests/harness"
)

// helmChartTgz is a chart archive as `helm package` makes it: one
// ConfigMap whose data come from the values and the release.
func helmChartTgz(t *testing.T, template string) string {
	t.Helper()
	files := map[string]string{
		"Chart.yaml":               "apiVersion: v2\nname: demo\nversion: 0.1.0\n",
		"values.yaml":              "greeting: default\ncount: 1\n",
		"templates/configmap.yaml": template,
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Name: "demo/" + n, Mode: 0o644, Size: int64(len(files[n])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(files[n])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

const goodTemplate = `apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-cm
data:
  greeting: {{ .Values.greeting | quote }}
  count: {{ .Values.count | quote }}
`

// The pipe into an undefined function fails Helm's rendering.
const brokenTemplate = `apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-cm
data:
  greeting: {{ .Values.greeting | nosuchfunction }}
`

func helmChart(content, values string) string {
	return fmt.Sprintf(`apiVersion: helm.k1s.io/v1
kind: HelmChart
metadata: {name: demo, namespace: default}
spec:
  targetNamespace: helm-demo
  chartContent: %s
  valuesContent: |
    %s
  set:
    count: 3
`, content, values)
}

// TestHelmChart: the helm-controller add-on installs a HelmChart from its
// chartContent into a namespace it creates, upgrades it when the values
// change (and for a HelmChartConfig), reports a chart that does not render
// with a Failed event while the release keeps running, uninstalls it on
// delete, and goes away with --disable=helm-controller on a restart.
func TestHelmChart(t *testing.T) {
	start := time.Now()
	s := startNodeWithAddons(t, "--disable=coredns,servicelb,ingress,metrics-server,local-storage")
	if out, err := s.Kubectl("-n", "kube-system", "rollout", "status", "deployment/k1s-helm-controller", "--timeout=120s"); err != nil {
		out2, _ := s.Kubectl("-n", "kube-system", "describe", "pods", "-l", "app.kubernetes.io/name=k1s-helm-controller")
		t.Fatalf("helm-controller not ready: %v: %s\n%s", err, out, out2)
	}
	if out, err := s.Kubectl("get", "node", "-l", "node-role.kubernetes.io/control-plane=true", "-o", "name"); err != nil || out == "" {
		t.Errorf("the server's node has no control-plane label: %q (%v)", out, err)
	}
	t.Logf("cluster and controller ready after %s", time.Since(start).Round(time.Second))
	logControllerMemory(t, s, "idle, before any chart")
	defer func() {
		if t.Failed() {
			out, _ := s.Kubectl("-n", "kube-system", "logs", "deployment/k1s-helm-controller", "--tail=40")
			t.Logf("controller log:\n%s", out)
		}
	}()
	good := helmChartTgz(t, goodTemplate)

	cm := func(want map[string]string) func() error {
		return func() error {
			out, err := s.Kubectl("-n", "helm-demo", "get", "configmap", "demo-cm", "-o", "jsonpath={.data.greeting} {.data.count}")
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			if w := want["greeting"] + " " + want["count"]; out != w {
				return fmt.Errorf("data %q, want %q", out, w)
			}
			return nil
		}
	}
	status := func(revision, ready string) func() error {
		return func() error {
			out, err := s.Kubectl("get", "helmchart", "demo", "-o", `jsonpath={.status.releaseRevision} {.status.conditions[?(@.type=="Ready")].status}`)
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			if w := revision + " " + ready; out != w {
				return fmt.Errorf("status %q, want %q", out, w)
			}
			return nil
		}
	}
	events := func(reason string) string {
		out, err := s.Kubectl("get", "events", "--field-selector", "involvedObject.name=demo,reason="+reason, "-o", "jsonpath={.items[*].message}")
		if err != nil {
			t.Fatalf("events: %v: %s", err, out)
		}
		return out
	}
	// releases lists Helm's storage Secrets: revision=status.
	releases := func() string {
		out, err := s.Kubectl("-n", "helm-demo", "get", "secrets", "-l", "owner=helm,name=demo", "-o",
			"jsonpath={range .items[*]}{.metadata.labels.version}={.metadata.labels.status} {end}")
		if err != nil {
			t.Fatalf("release secrets: %v: %s", err, out)
		}
		return strings.TrimSpace(out)
	}

	// Install, into a namespace that does not exist yet.
	apply(t, s, helmChart(good, "greeting: hello"))
	eventually(t, 60*time.Second, "ConfigMap of the release", cm(map[string]string{"greeting": "hello", "count": "3"}))
	eventually(t, 20*time.Second, "status revision 1, Ready", status("1", "True"))
	if ev := events("Installed"); !strings.Contains(ev, "revision 1") {
		t.Errorf("Installed event: %q", ev)
	}
	if out, err := s.Kubectl("get", "helmchart", "demo", "-o", "jsonpath={.metadata.finalizers}"); err != nil || !strings.Contains(out, "helm.k1s.io/uninstall") {
		t.Errorf("finalizer: %q (%v)", out, err)
	}
	if r := releases(); r != "1=deployed" {
		t.Errorf("release secrets %q, want 1=deployed", r)
	}

	// Upgrade when the values change.
	apply(t, s, helmChart(good, "greeting: bye"))
	eventually(t, 60*time.Second, "ConfigMap after the upgrade", cm(map[string]string{"greeting": "bye", "count": "3"}))
	eventually(t, 20*time.Second, "status revision 2, Ready", status("2", "True"))
	if ev := events("Upgraded"); !strings.Contains(ev, "revision 2") {
		t.Errorf("Upgraded event: %q", ev)
	}

	// A chart that does not render: a Failed event naming the error, and
	// revision 2 keeps running.
	apply(t, s, helmChart(helmChartTgz(t, brokenTemplate), "greeting: broken"))
	eventually(t, 60*time.Second, "Failed event", func() error {
		if ev := events("Failed"); !strings.Contains(ev, `function "nosuchfunction" not defined`) || !strings.Contains(ev, "helm upgrade demo") {
			return fmt.Errorf("Failed events %q", ev)
		}
		return nil
	})
	eventually(t, 20*time.Second, "status revision 2, not Ready", status("2", "False"))
	if out, err := s.Kubectl("get", "helmchart", "demo", "-o", `jsonpath={.status.conditions[?(@.type=="Failed")].message}`); err != nil || !strings.Contains(out, "nosuchfunction") {
		t.Errorf("Failed condition message %q (%v)", out, err)
	}
	if err := cm(map[string]string{"greeting": "bye", "count": "3"})(); err != nil {
		t.Errorf("the running release changed after a failed upgrade: %v", err)
	}
	if r := releases(); r != "1=superseded 2=deployed" {
		t.Errorf("release secrets %q, want revision 2 still deployed", r)
	}

	// Back to a good chart, with a HelmChartConfig laid over its values.
	apply(t, s, helmChart(good, "greeting: bye"))
	apply(t, s, `apiVersion: helm.k1s.io/v1
kind: HelmChartConfig
metadata: {name: demo, namespace: default}
spec:
  valuesContent: "greeting: from-config"
`)
	eventually(t, 60*time.Second, "ConfigMap with the HelmChartConfig's values", cm(map[string]string{"greeting": "from-config", "count": "3"}))
	eventually(t, 20*time.Second, "status Ready again", func() error {
		out, err := s.Kubectl("get", "helmchart", "demo", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		if err != nil || out != "True" {
			return fmt.Errorf("Ready %q (%v)", out, err)
		}
		return nil
	})

	// A chart file in the manifests folder: installed from the .tgz, upgraded
	// when only the .tgz changes, uninstalled when the files are removed.
	helmFromManifestsFolder(t, s, good)

	// Delete: uninstalled, then the finalizer lets the object go.
	if out, err := s.Kubectl("delete", "helmchart", "demo", "--timeout=60s"); err != nil {
		t.Fatalf("delete: %v: %s", err, out)
	}
	if out, err := s.Kubectl("-n", "helm-demo", "get", "configmap", "demo-cm"); err == nil {
		t.Errorf("ConfigMap still there after the HelmChart was deleted: %s", out)
	} else if !strings.Contains(out, "NotFound") {
		t.Errorf("get configmap: %v: %s", err, out)
	}
	if r := releases(); r != "" {
		t.Errorf("release secrets %q left after uninstall", r)
	}
	if ev := events("Uninstalled"); !strings.Contains(ev, "uninstalled from namespace helm-demo") {
		t.Errorf("Uninstalled event: %q", ev)
	}
	t.Logf("install, upgrade, failure, config and uninstall done after %s", time.Since(start).Round(time.Second))
	logControllerMemory(t, s, "after 4 revisions and an uninstall")
	// K1S_HELM_SETTLE (a duration) adds an idle sample after that long,
	// for docs/benchmarks.md.
	if d, err := time.ParseDuration(os.Getenv("K1S_HELM_SETTLE")); err == nil && d > 0 {
		time.Sleep(d)
		logControllerMemory(t, s, fmt.Sprintf("idle %s after the uninstall", d))
	}

	disableHelmController(t, s)
	t.Logf("total %s", time.Since(start).Round(time.Second))
}

// helmFromManifestsFolder drops a HelmChart with spec.chartFile and its
// .tgz into the server's manifests folder and follows both.
func helmFromManifestsFolder(t *testing.T, s *harness.Server, content string) {
	t.Helper()
	dir := filepath.Join(s.DataDir, "server", "manifests")
	write := func(name string, data []byte) {
		t.Helper()
		// Write beside and rename, so the applier never reads half a file.
		tmp := filepath.Join(dir, "."+name+".tmp")
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	tgz := func(b64 string) []byte {
		raw, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	data := func() (string, error) {
		return s.Kubectl("-n", "helm-file", "get", "configmap", "fromfile-cm", "-o", "jsonpath={.data}")
	}
	write("fromfile.tgz", tgz(content))
	write("fromfile.yaml", []byte(`apiVersion: helm.k1s.io/v1
kind: HelmChart
metadata: {name: fromfile, namespace: kube-system}
spec:
  chartFile: fromfile.tgz
  targetNamespace: helm-file
  valuesContent: "greeting: from-file"
`))
	eventually(t, 60*time.Second, "release of the chart file", func() error {
		out, err := data()
		if err != nil || !strings.Contains(out, `"greeting":"from-file"`) {
			return fmt.Errorf("ConfigMap data %q (%v)", out, err)
		}
		return nil
	})
	// Only the .tgz changes: a new template adds a key.
	write("fromfile.tgz", tgz(helmChartTgz(t, goodTemplate+"  source: second-archive\n")))
	eventually(t, 90*time.Second, "upgrade after the .tgz changed", func() error {
		out, err := data()
		if err != nil || !strings.Contains(out, `"source":"second-archive"`) {
			return fmt.Errorf("ConfigMap data %q (%v)", out, err)
		}
		return nil
	})
	if out, err := s.Kubectl("-n", "kube-system", "get", "helmchart", "fromfile", "-o", "jsonpath={.status.releaseRevision}"); err != nil || out != "2" {
		t.Errorf("revision after the .tgz changed: %q (%v), want 2", out, err)
	}
	// Removing the manifest prunes the HelmChart, which uninstalls it.
	for _, f := range []string{"fromfile.yaml", "fromfile.tgz"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 90*time.Second, "uninstall after the files were removed", func() error {
		out, err := data()
		if err == nil {
			return fmt.Errorf("ConfigMap still there: %s", out)
		}
		if !strings.Contains(out, "NotFound") {
			return fmt.Errorf("get configmap: %v: %s", err, out)
		}
		return nil
	})
}

// disableHelmController restarts s with helm-controller added to its
// --disable list and checks its Deployment and rights are removed, while
// the CRDs stay (data is never deleted by accident).
func disableHelmController(t *testing.T, s *harness.Server) {
	t.Helper()
	if err := s.Stop(90 * time.Second); err != nil {
		t.Fatal(err)
	}
	s.Args = replaceFlag(s.Args, "--disable=", "--disable=coredns,servicelb,ingress,metrics-server,local-storage,helm-controller")
	startExisting(t, s)
	if err := s.WaitLog("k1s is ready", 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "helm-controller removed", func() error {
		for _, obj := range []string{"deployment/k1s-helm-controller", "serviceaccount/k1s-helm-controller", "clusterrolebinding/k1s-helm-controller"} {
			if out, err := s.Kubectl("-n", "kube-system", "get", obj); err == nil {
				return fmt.Errorf("%s still there: %s", obj, out)
			} else if !strings.Contains(out, "NotFound") {
				return fmt.Errorf("get %s: %v: %s", obj, err, out)
			}
		}
		return nil
	})
	if out, err := s.Kubectl("get", "crd", "helmcharts.helm.k1s.io", "-o", "name"); err != nil {
		t.Errorf("the HelmChart CRD was removed with the add-on: %v: %s", err, out)
	}
}

// logControllerMemory logs the controller container's memory and CPU as
// the kubelet's summary API reports them (docs/benchmarks.md quotes these lines).
func logControllerMemory(t *testing.T, s *harness.Server, when string) {
	t.Helper()
	node, err := s.Kubectl("get", "nodes", "-o", "jsonpath={.items[0].metadata.name}")
	if err != nil {
		t.Fatalf("node name: %v: %s", err, node)
	}
	var summary struct {
		Pods []struct {
			PodRef     struct{ Name, Namespace string }
			Containers []struct {
				Name   string
				CPU    struct{ UsageNanoCores uint64 }
				Memory struct{ WorkingSetBytes, RSSBytes uint64 }
			}
		}
	}
	eventually(t, 45*time.Second, "controller memory in the kubelet's stats", func() error {
		out, err := s.Kubectl("get", "--raw", "/api/v1/nodes/"+node+"/proxy/stats/summary")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if err := json.Unmarshal([]byte(out), &summary); err != nil {
			return err
		}
		for _, p := range summary.Pods {
			if p.PodRef.Namespace != "kube-system" || !strings.HasPrefix(p.PodRef.Name, "k1s-helm-controller-") {
				continue
			}
			for _, c := range p.Containers {
				if c.Name == "k1s-helm-controller" && c.Memory.WorkingSetBytes > 0 {
					t.Logf("helm-controller (%s): working set %.1f MiB, RSS %.1f MiB, CPU %.2f %% of a core", when,
						float64(c.Memory.WorkingSetBytes)/(1<<20), float64(c.Memory.RSSBytes)/(1<<20), float64(c.CPU.UsageNanoCores)/1e7)
					return nil
				}
			}
		}
		return fmt.Errorf("no stats for the controller container yet")
	})
}
