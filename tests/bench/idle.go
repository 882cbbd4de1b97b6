package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/k1s-io/k1s/tests/harness"
)

// idleSample is one control-plane-only server's memory after the settle
// time and its CPU over the window that follows.
type idleSample struct {
	RSS, PSS, PSSAnon, PSSFile float64 // MB (1 MB = 1024 kB, as the rest of this report)
	CPU                        float64 // % of one core
}

// idleRuns starts n control-plane-only servers one after another (each with
// an empty data dir and the given extra server flags), and measures each
// the same way: settle after /readyz, read VmRSS and smaps_rollup's Pss,
// Pss_Anon and Pss_File, then CPU ticks over window.
// With heapDir set, each run's Go heap profile (debug=1 text, with the
// runtime's MemStats) is saved there after the window; the apiserver then
// needs profiling=true.
func idleRuns(n int, extra []string, settle, window time.Duration, heapDir string) ([]idleSample, error) {
	var out []idleSample
	for i := 0; i < n; i++ {
		heap := ""
		if heapDir != "" {
			heap = filepath.Join(heapDir, fmt.Sprintf("heap-%d.txt", i+1))
		}
		s, err := idleOnce(extra, settle, window, heap)
		if err != nil {
			return out, fmt.Errorf("idle run %d: %w", i+1, err)
		}
		fmt.Printf("idle run %d: RSS %.0f MB, PSS %.0f MB (anon %.0f, file %.0f), CPU %.2f %%\n",
			i+1, s.RSS, s.PSS, s.PSSAnon, s.PSSFile, s.CPU)
		out = append(out, s)
	}
	return out, nil
}

func idleOnce(extra []string, settle, window time.Duration, heapFile string) (m idleSample, err error) {
	dir, err := os.MkdirTemp("", "k1s-bench-")
	if err != nil {
		return m, err
	}
	defer os.RemoveAll(dir)
	s, err := harness.NewServer(dir, extra...)
	if err != nil {
		return m, err
	}
	// The binary's resident pages depend on what of it the page cache
	// holds (a fault maps the cached pages around it too): read it all
	// first, so that every run, and a fresh build, starts alike.
	if err := harness.ReadAll(harness.Bin()); err != nil {
		return m, err
	}
	if err := s.Start(); err != nil {
		return m, err
	}
	defer s.Stop(90 * time.Second)
	if err := s.WaitReady(2 * time.Minute); err != nil {
		return m, err
	}
	time.Sleep(settle)
	pid := s.PID()
	rss, err := harness.StatusField(pid, "VmRSS:")
	if err != nil {
		return m, err
	}
	roll, err := smapsRollup(pid)
	if err != nil {
		return m, err
	}
	t0, err := harness.CPUTicks(pid)
	if err != nil {
		return m, err
	}
	time.Sleep(window)
	t1, err := harness.CPUTicks(pid)
	if err != nil {
		return m, err
	}
	if exited, werr := s.Exited(); exited {
		return m, fmt.Errorf("server exited during the window (%v); log:\n%s", werr, s.Tail(20))
	}
	if heapFile != "" {
		code, body, err := s.Get("/debug/pprof/heap?debug=1", true)
		if err != nil || code != 200 {
			return m, fmt.Errorf("heap profile: %d %v (pass -server-arg=--kube-apiserver-arg=profiling=true): %.200s", code, err, body)
		}
		if err := os.WriteFile(heapFile, []byte(body+"\n"), 0o644); err != nil {
			return m, err
		}
	}
	return idleSample{
		RSS: float64(rss) / 1024, PSS: float64(roll["Pss:"]) / 1024,
		PSSAnon: float64(roll["Pss_Anon:"]) / 1024, PSSFile: float64(roll["Pss_File:"]) / 1024,
		CPU: float64(t1-t0) / harness.ClockTicks / window.Seconds() * 100,
	}, nil
}

// smapsRollup reads the kB fields of /proc/<pid>/smaps_rollup; Pss must be there.
func smapsRollup(pid int) (map[string]int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return nil, err
	}
	m := map[string]int64{}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) == 3 && f[2] == "kB" {
			if v, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				m[f[0]] = v
			}
		}
	}
	if _, ok := m["Pss:"]; !ok {
		return nil, fmt.Errorf("no Pss in smaps_rollup of %d", pid)
	}
	return m, nil
}

// idleSummary is one markdown table row: the median of each figure and its
// run-to-run range.
func idleSummary(label string, ss []idleSample) string {
	col := func(get func(idleSample) float64, format string) string {
		v := make([]float64, len(ss))
		for i, s := range ss {
			v[i] = get(s)
		}
		sort.Float64s(v)
		return fmt.Sprintf(format+" ("+format+"–"+format+")", v[len(v)/2], v[0], v[len(v)-1])
	}
	return fmt.Sprintf("| %s | %s | %s | %s | %s | %s |", label,
		col(func(s idleSample) float64 { return s.PSS }, "%.0f"),
		col(func(s idleSample) float64 { return s.PSSAnon }, "%.0f"),
		col(func(s idleSample) float64 { return s.PSSFile }, "%.0f"),
		col(func(s idleSample) float64 { return s.RSS }, "%.0f"),
		col(func(s idleSample) float64 { return s.CPU }, "%.2f"))
}

// idleHeader heads the rows idleSummary writes.
const idleHeader = "| build / flags | PSS MB | PSS anon MB | PSS file MB | RSS MB | CPU % |\n|---|---|---|---|---|---|"
