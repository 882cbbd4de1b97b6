package tests

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/k1s-io/k1s/tests/harness"
)

// BenchmarkHundredPods (run by `make bench`, which appends the result to
// docs/benchmarks.md through K1S_BENCH_REPORT): a server with its own node
// and no add-ons runs a Deployment of 100 Pods of the pause image (built in
// at start, so nothing is pulled). It reports the time from the create to
// 100 Pods Running (target ≤ 60 s), and, 30 s later, the memory of the node's
// processes with them: k1s, containerd, the shims and the containers.
func BenchmarkHundredPods(b *testing.B) {
	const pods = 100
	s, err := harness.NewNodeServer(b.TempDir(), "--disable=coredns,ingress,servicelb")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if out, err := s.Killall(); err != nil {
			b.Errorf("k1s-killall.sh: %v\n%s", err, out)
		}
	})
	startExisting(b, s)
	if err := s.WaitLog("k1s is ready", 3*time.Minute); err != nil {
		b.Fatal(err)
	}
	eventually(b, time.Minute, "default ServiceAccount", func() error {
		_, err := s.Kubectl("get", "serviceaccount", "default")
		return err
	})
	manifest := fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: hundred}
spec:
  replicas: %d
  selector: {matchLabels: {app: hundred}}
  template:
    metadata: {labels: {app: hundred}}
    spec:
      terminationGracePeriodSeconds: 0
      containers:
      - {name: pause, image: docker.io/k1s-io/pause:1.0, imagePullPolicy: Never}
`, pods)
	path := b.TempDir() + "/hundred.yaml"
	if err := os.WriteFile(path, []byte(manifest), 0o600); err != nil {
		b.Fatal(err)
	}
	began := time.Now()
	if out, err := s.Kubectl("apply", "-f", path); err != nil {
		b.Fatalf("%v\n%s", err, out)
	}
	var running int
	for running < pods {
		if time.Since(began) > 5*time.Minute {
			b.Fatalf("%d of %d Pods Running after 5 min", running, pods)
		}
		time.Sleep(250 * time.Millisecond)
		out, err := s.Kubectl("get", "pods", "-l", "app=hundred", "--field-selector=status.phase=Running", "-o", "name")
		if err != nil {
			continue
		}
		running = strings.Count(out, "pod/")
	}
	allRunning := time.Since(began)
	time.Sleep(30 * time.Second)
	pids := withChildren(harness.NodePIDs(s))
	var rssKB, pssKB, k1sPSS int64
	for _, p := range pids {
		if kb, err := harness.StatusField(p, "VmRSS:"); err == nil {
			rssKB += kb
		}
		if kb, err := harness.SmapsRollupField(p, "Pss:"); err == nil {
			pssKB += kb
			if p == s.PID() {
				k1sPSS = kb
			}
		}
	}
	var r strings.Builder
	fmt.Fprintf(&r, "\n## 100 Pods on one node (`go test -run '^$' -bench BenchmarkHundredPods -benchtime 1x ./tests/`)\n\n")
	fmt.Fprintf(&r, "A server with its own node (`--disable=coredns,ingress,servicelb`), a Deployment of %d Pods of the built-in pause image (`imagePullPolicy: Never`), measured on %s.\n\n", pods, time.Now().UTC().Format("2006-01-02"))
	r.WriteString("| measure | result | target | |\n|---|---|---|---|\n")
	fmt.Fprintf(&r, "| create → %d Pods Running | %.1f s | ≤ 60 s | %s |\n", pods, allRunning.Seconds(), met(allRunning <= time.Minute))
	fmt.Fprintf(&r, "| PSS of the node's %d processes (k1s, containerd, shims, containers), 30 s later | %.0f MB (k1s itself %.0f MB) | report | |\n", len(pids), float64(pssKB)/1024, float64(k1sPSS)/1024)
	fmt.Fprintf(&r, "| RSS of the same (shared pages counted in each) | %.0f MB | | |\n", float64(rssKB)/1024)
	benchReport(b, r.String())
	if out, err := s.Kubectl("delete", "deployment", "hundred", "--wait=true", "--timeout=3m"); err != nil {
		b.Errorf("deleting the Deployment: %v\n%s", err, out)
	}
}

// withChildren adds the children of pids (the shims' containers) to pids.
func withChildren(pids []int) []int {
	in := map[int]bool{}
	for _, p := range pids {
		in[p] = true
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || in[pid] {
			continue
		}
		if ppid, err := harness.StatusField(pid, "PPid:"); err == nil && in[int(ppid)] {
			pids = append(pids, pid)
		}
	}
	return pids
}
