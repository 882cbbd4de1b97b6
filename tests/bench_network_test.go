package tests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/k1s-io/k1s/tests/harness"
)

// BenchmarkNetwork measures (run by `make bench`, which appends the
// results to docs/benchmarks.md through K1S_BENCH_REPORT):
//   - a node with every default add-on (it waits for CoreDNS and k1s-ingress):
//     RSS and CPU of its processes and its Pods' processes, idle;
//   - Pod-to-Pod TCP throughput between two nodes with vxlan and host-gw,
//     against host-to-host throughput over the same veths.
func BenchmarkNetwork(b *testing.B) {
	var report strings.Builder
	report.WriteString("\n## Cluster networking (`go test -run '^$' -bench BenchmarkNetwork -benchtime 1x ./tests/`)\n\n")
	b.Run("addons-idle", func(b *testing.B) {
		rss, cpu, procs := addonsIdle(b, 60*time.Second, 60*time.Second)
		b.ReportMetric(rss, "MB-RSS")
		b.ReportMetric(cpu, "%CPU")
		fmt.Fprintf(&report, "Idle node with every default add-on (one `k1s server` in a network namespace, the add-on bundle imported; after the CoreDNS and k1s-ingress Pods are Ready, 60 s settle, 60 s window): "+
			"**RSS %.0f MB** (sum over %d processes: k1s, containerd, shims and the add-on containers), **CPU %.2f %%** of one core.\n\n", rss, procs, cpu)
	})
	fmt.Fprintf(&report, "| backend | host → host over the veths (Mbit/s) | Pod → Pod across nodes (Mbit/s) | ratio |\n|---|---|---|---|\n")
	for _, backend := range []string{"vxlan", "host-gw"} {
		b.Run(backend, func(b *testing.B) {
			host, pod := throughput(b, backend)
			b.ReportMetric(pod/host, "pod/host")
			fmt.Fprintf(&report, "| %s | %.0f | %.0f | %.2f |\n", backend, host, pod, pod/host)
		})
	}
	report.WriteString("\nThroughput: one TCP stream for 5 s (`netcheck send`), median of 3, from node a2 to node a3 of a three-node lab cluster (server and two agents, each in its own network namespace on one bridge); the host figure runs the same probe in the two nodes' namespaces.\n")
	benchReport(b, report.String())
}

// addonsIdle runs one node with every add-on and measures it idle.
func addonsIdle(b *testing.B, settle, window time.Duration) (rssMB, cpuPct float64, procs int) {
	lab := harness.NewLab(b)
	h := lab.AddHost(b, "s1")
	s := startLabServer(b, h, "--node-name", "s1")
	for _, d := range []string{"coredns", "k1s-ingress"} {
		if out, err := s.Kubectl("-n", "kube-system", "rollout", "status", "deployment/"+d, "--timeout=180s"); err != nil {
			b.Fatalf("%s: %v %s", d, err, out)
		}
	}
	time.Sleep(settle)
	pids := append(harness.NodePIDs(s), podProcs()...)
	u := harness.IdleUsage(pids, window)
	return float64(u.RSSKB) / 1024, u.CPUPercent, len(pids)
}

// podProcs: processes in the Pod cgroups of a node with the default cgroup root.
func podProcs() []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		if strings.Contains(string(cg), ":/kubepods/") {
			pids = append(pids, pid)
		}
	}
	return pids
}

// throughput returns host-to-host and Pod-to-Pod Mbit/s from a2 to a3.
func throughput(b *testing.B, backend string) (host, pod float64) {
	c := startCluster(b, backend)
	apply(b, c.s, `apiVersion: v1
kind: Pod
metadata: {name: sink3}
spec:
  nodeName: a3
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c, image: `+netImage+`, imagePullPolicy: Never, command: [netcheck, sink, ":5201"]}
---
apiVersion: v1
kind: Pod
metadata: {name: cli2}
spec:
  nodeName: a2
  terminationGracePeriodSeconds: 1
  containers: [{name: c, image: `+netImage+`, imagePullPolicy: Never}]
`)
	waitPhase(b, c.s, "sink3", "Running", 2*time.Minute)
	waitPhase(b, c.s, "cli2", "Running", 2*time.Minute)
	sinkIP := podIP(b, c.s, "sink3")

	// The same probe on the hosts: the binary baked into the image.
	probe := filepath.Join(b.TempDir(), "netcheck")
	if err := os.WriteFile(probe, netcheckBin, 0o755); err != nil {
		b.Fatal(err)
	}
	a2, a3 := c.hosts["a2"], c.hosts["a3"]
	sink := a3.Command(context.Background(), probe, "sink", ":5202")
	if err := sink.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = sink.Process.Kill(); _ = sink.Wait() }()
	time.Sleep(500 * time.Millisecond)

	median := func(run func() (string, error)) float64 {
		var rates []float64
		for i := 0; i < 3; i++ {
			out, err := run()
			if err != nil {
				b.Fatalf("%v: %s", err, out)
			}
			r, err := strconv.ParseFloat(strings.TrimSpace(out), 64)
			if err != nil {
				b.Fatalf("rate %q: %v", out, err)
			}
			rates = append(rates, r)
		}
		sort.Float64s(rates)
		return rates[1]
	}
	host = median(func() (string, error) {
		out, err := exec.Command("ip", "netns", "exec", a2.Namespace, probe, "send", a3.IP+":5202").CombinedOutput()
		return string(out), err
	})
	pod = median(func() (string, error) { return c.exec("cli2", "netcheck", "send", sinkIP+":5201") })
	return host, pod
}
