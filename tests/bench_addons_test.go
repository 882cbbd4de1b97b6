package tests

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/k1s-io/k1s/tests/harness"
)

// BenchmarkAddonCost measures what each add-on costs an idle node: one
// server with every default add-on, then once more with each add-on of
// K1S_ADDON_COST (comma-separated, default "metrics-server") disabled.
// PSS and CPU are summed over the node's processes and its Pods'.
func BenchmarkAddonCost(b *testing.B) {
	const settle, window = 45 * time.Second, 60 * time.Second
	addons := []string{"metrics-server"}
	if v := os.Getenv("K1S_ADDON_COST"); v != "" {
		addons = strings.Split(v, ",")
	}
	var report strings.Builder
	report.WriteString("\n## Idle cost of add-ons (`go test -run '^$' -bench BenchmarkAddonCost -benchtime 1x ./tests/`)\n\n")
	fmt.Fprintf(&report, "One `k1s server` with its node in a network namespace, the air-gap bundle imported; every kube-system Deployment Available, then %s settle and a %s window. PSS and CPU (utime+stime) summed over k1s, containerd, the shims and the Pods' processes.\n\n", settle, window)
	report.WriteString("| server flags | processes | PSS MB | CPU % of a core |\n|---|---|---|---|\n")
	runs := append([]string{""}, addons...)
	for _, a := range runs {
		name, flags := "default", []string{}
		if a != "" {
			name, flags = "without-"+a, []string{"--disable=" + a}
		}
		b.Run(name, func(b *testing.B) {
			pss, cpu, n := nodeIdle(b, settle, window, flags...)
			b.ReportMetric(pss, "MB-PSS")
			b.ReportMetric(cpu, "%CPU")
			label := "every default add-on"
			if len(flags) > 0 {
				label = "`" + flags[0] + "`"
			}
			fmt.Fprintf(&report, "| %s | %d | %.0f | %.2f |\n", label, n, pss, cpu)
		})
	}
	benchReport(b, report.String())
}

// nodeIdle starts a server with its node in a lab host, waits until every
// kube-system Deployment is Available, lets it settle and measures it.
func nodeIdle(b *testing.B, settle, window time.Duration, extra ...string) (pssMB, cpuPct float64, procs int) {
	lab := harness.NewLab(b)
	h := lab.AddHost(b, "s1")
	s := startLabServer(b, h, append([]string{"--node-name", "s1"}, extra...)...)
	b.Cleanup(func() {
		if b.Failed() {
			out, _ := s.Kubectl("-n", "kube-system", "get", "pods", "-o", "wide")
			ev, _ := s.Kubectl("-n", "kube-system", "get", "events", "--field-selector", "type=Warning")
			b.Logf("kube-system Pods:\n%s\nWarning events:\n%s", out, ev)
		}
	})
	eventually(b, 3*time.Minute, "kube-system Deployments Available", func() error {
		out, err := s.Kubectl("-n", "kube-system", "get", "deployments", "-o",
			`jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Available")].status} {end}`)
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if out == "" || strings.Contains(out, "=False") || strings.Contains(out, "= ") {
			return fmt.Errorf("not all Available: %s", out)
		}
		return nil
	})
	time.Sleep(settle)
	pids := append(harness.NodePIDs(s), podProcs()...)
	u := harness.IdleUsage(pids, window)
	return float64(u.PSSKB) / 1024, u.CPUPercent, len(pids)
}
