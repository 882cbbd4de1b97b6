package tests

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
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
	s := settledNode(b, settle, extra...)
	pids := append(harness.NodePIDs(s), podProcs()...)
	u := harness.IdleUsage(pids, window)
	return float64(u.PSSKB) / 1024, u.CPUPercent, len(pids)
}

// settledNode starts a server with its node in a lab host, waits until
// every kube-system Deployment is Available and then for settle.
func settledNode(b *testing.B, settle time.Duration, extra ...string) *harness.Server {
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
	return s
}

// BenchmarkNodeIdle is issue 13's whole-node figure: one server with its
// node and the add-ons the issue names (CoreDNS, k1s-ingress; the others
// are disabled), K1S_BENCH_RUNS times (default 3). Extra server flags come
// from K1S_BENCH_SERVER_ARGS (space-separated); GOGC and GOMEMLIMIT in the
// environment reach k1s and containerd. It reports the median PSS and CPU
// and, per process name, the PSS and CPU of the median run. With
// K1S_BENCH_PROFILE=DIR it also saves a 30 s CPU profile and a heap
// profile of the k1s process from each run there (after the window; the
// apiserver serves them with profiling=true, which the bench then sets).
// Each run starts with the page cache dropped and the k1s binary read
// once (harness.DropPageCache, harness.ReadAll), so that every binary
// compared maps its pages the same way.
func BenchmarkNodeIdle(b *testing.B) {
	const settle, window = 60 * time.Second, 60 * time.Second
	runs := 3
	if v := os.Getenv("K1S_BENCH_RUNS"); v != "" {
		if _, err := fmt.Sscan(v, &runs); err != nil || runs < 1 {
			b.Fatalf("K1S_BENCH_RUNS=%q: want a positive number", v)
		}
	}
	flags := []string{"--disable=metrics-server,helm-controller,dashboard"}
	flags = append(flags, strings.Fields(os.Getenv("K1S_BENCH_SERVER_ARGS"))...)
	profDir := os.Getenv("K1S_BENCH_PROFILE")
	if profDir != "" {
		flags = append(flags, "--kube-apiserver-arg=profiling=true")
	}
	var all []nodeUsage
	for i := 0; i < runs; i++ {
		b.Run(fmt.Sprintf("run%d", i+1), func(b *testing.B) {
			prof := ""
			if profDir != "" {
				prof = filepath.Join(profDir, fmt.Sprintf("cpu-%d.pprof", i+1))
			}
			u := nodeIdleByName(b, settle, window, prof, flags...)
			b.ReportMetric(u.PSS, "MB-PSS")
			b.ReportMetric(u.CPU, "%CPU")
			all = append(all, u)
		})
	}
	if len(all) < runs {
		b.Fatal("a run failed")
	}
	sort.Slice(all, func(i, j int) bool { return all[i].PSS < all[j].PSS })
	med := all[len(all)/2]
	var report strings.Builder
	fmt.Fprintf(&report, "\n## Whole idle node (`BenchmarkNodeIdle`, %s)\n\nServer flags %q, GOGC=%q; %d runs: PSS MB %s, CPU %% of a core %s (median (min–max)).\n\n",
		time.Now().UTC().Format("2006-01-02"),
		strings.Join(flags, " "), os.Getenv("GOGC"), runs, spread(all, func(u nodeUsage) float64 { return u.PSS }),
		spread(all, func(u nodeUsage) float64 { return u.CPU }))
	report.WriteString("| process (median run) | count | PSS MB | anon MB | file MB | CPU % |\n|---|---|---|---|---|---|\n")
	for _, g := range med.Groups {
		fmt.Fprintf(&report, "| %s | %d | %.1f | %.1f | %.1f | %.2f |\n", g.Name, g.Count, g.PSS, g.Anon, g.File, g.CPU)
	}
	fmt.Fprintf(&report, "| total | %d | %.1f | | | %.2f |\n", med.Procs, med.PSS, med.CPU)
	benchReport(b, report.String())
}

// spread is "median (min–max)" of f over us, which are sorted by PSS.
func spread(us []nodeUsage, f func(nodeUsage) float64) string {
	v := make([]float64, len(us))
	for i, u := range us {
		v[i] = f(u)
	}
	sort.Float64s(v)
	return fmt.Sprintf("%.1f (%.1f–%.1f)", v[len(v)/2], v[0], v[len(v)-1])
}

// nodeUsage is one idle node: totals and per process name.
type nodeUsage struct {
	PSS, CPU float64
	Procs    int
	Groups   []procGroup
}

type procGroup struct {
	Name                 string
	Count                int
	PSS, Anon, File, CPU float64
}

// nodeIdleByName is nodeIdle with the sums broken down by process name
// (/proc/PID/comm), and an optional CPU profile of k1s saved to prof.
func nodeIdleByName(b *testing.B, settle, window time.Duration, prof string, extra ...string) nodeUsage {
	if err := harness.DropPageCache(); err != nil {
		b.Fatal(err)
	}
	if err := harness.ReadAll(harness.Bin()); err != nil {
		b.Fatal(err)
	}
	s := settledNode(b, settle, extra...)
	pids := append(harness.NodePIDs(s), podProcs()...)
	type one struct {
		pid             int
		name            string
		pss, anon, file int64
		t0, t1          int64
	}
	ps := make([]one, 0, len(pids))
	for _, p := range pids {
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p))
		if err != nil {
			continue // gone
		}
		o := one{pid: p, name: strings.TrimSpace(string(comm))}
		var e1, e2, e3, e4 error
		o.pss, e1 = harness.SmapsRollupField(p, "Pss:")
		o.anon, e2 = harness.SmapsRollupField(p, "Pss_Anon:")
		o.file, e3 = harness.SmapsRollupField(p, "Pss_File:")
		o.t0, e4 = harness.CPUTicks(p)
		if err := errors.Join(e1, e2, e3, e4); err != nil {
			b.Fatalf("process %d (%s): %v", p, o.name, err)
		}
		o.t1 = -1
		ps = append(ps, o)
	}
	time.Sleep(window)
	for i := range ps {
		if t, err := harness.CPUTicks(ps[i].pid); err == nil {
			ps[i].t1 = t
		}
	}
	groups := map[string]*procGroup{}
	var u nodeUsage
	for _, o := range ps {
		g := groups[o.name]
		if g == nil {
			g = &procGroup{Name: o.name}
			groups[o.name] = g
		}
		cpu := 0.0
		if o.t1 >= 0 {
			cpu = float64(o.t1-o.t0) / harness.ClockTicks / window.Seconds() * 100
		}
		g.Count++
		g.PSS += float64(o.pss) / 1024
		g.Anon += float64(o.anon) / 1024
		g.File += float64(o.file) / 1024
		g.CPU += cpu
		u.PSS += float64(o.pss) / 1024
		u.CPU += cpu
		u.Procs++
	}
	for _, g := range groups {
		u.Groups = append(u.Groups, *g)
	}
	sort.Slice(u.Groups, func(i, j int) bool { return u.Groups[i].PSS > u.Groups[j].PSS })
	if prof != "" {
		out, err := s.Kubectl("get", "--raw", "/debug/pprof/profile?seconds=30")
		if err != nil {
			b.Fatalf("CPU profile: %v", err)
		}
		if err := os.WriteFile(prof, []byte(out), 0o644); err != nil {
			b.Fatal(err)
		}
		heap, err := s.Kubectl("get", "--raw", "/debug/pprof/heap?debug=1")
		if err != nil {
			b.Fatalf("heap profile: %v", err)
		}
		if err := os.WriteFile(strings.TrimSuffix(prof, ".pprof")+"-heap.txt", []byte(heap), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	return u
}
