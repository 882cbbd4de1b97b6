// Command bench measures k1s server start-up and idle cost with the real
// binary and writes docs/benchmarks.md. Run it with `make bench`.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/k1s-io/k1s/tests/harness"
)

func main() {
	bin := flag.String("bin", "bin/k1s", "k1s binary")
	out := flag.String("out", "docs/benchmarks.md", "report to write")
	starts := flag.Int("starts", 5, "cold starts to time")
	settle := flag.Duration("settle", 60*time.Second, "idle time before RSS is read")
	window := flag.Duration("window", 60*time.Second, "idle window for CPU %")
	flag.Parse()
	os.Setenv("K1S_BIN", *bin)
	if err := run(*bin, *out, *starts, *settle, *window); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(bin, out string, starts int, settle, window time.Duration) error {
	st, err := os.Stat(bin)
	if err != nil {
		return err
	}
	var ready []time.Duration
	for i := 0; i < starts; i++ {
		d, err := coldStart()
		if err != nil {
			return fmt.Errorf("cold start %d: %w", i+1, err)
		}
		fmt.Printf("cold start %d: ready in %s\n", i+1, d.Round(time.Millisecond))
		ready = append(ready, d)
	}
	rss, cpu, err := idle(settle, window)
	if err != nil {
		return err
	}
	fmt.Printf("idle RSS %.0f MB, idle CPU %.2f %%\n", rss, cpu)
	return os.WriteFile(out, []byte(report(bin, st.Size(), ready, rss, cpu, settle, window)), 0o644)
}

// coldStart times an empty data dir to /readyz ok.
func coldStart() (time.Duration, error) {
	dir, err := os.MkdirTemp("", "k1s-bench-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	s, err := harness.NewServer(dir)
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	if err := s.Start(); err != nil {
		return 0, err
	}
	defer s.Stop(90 * time.Second)
	if err := s.WaitReady(2 * time.Minute); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

// idle starts a server, lets it settle, then reads its RSS and its CPU use
// over window.
func idle(settle, window time.Duration) (rssMB, cpuPct float64, err error) {
	dir, err := os.MkdirTemp("", "k1s-bench-")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(dir)
	s, err := harness.NewServer(dir)
	if err != nil {
		return 0, 0, err
	}
	if err := s.Start(); err != nil {
		return 0, 0, err
	}
	defer s.Stop(90 * time.Second)
	if err := s.WaitReady(2 * time.Minute); err != nil {
		return 0, 0, err
	}
	time.Sleep(settle)
	rssKB, err := statusField(s.PID(), "VmRSS:")
	if err != nil {
		return 0, 0, err
	}
	t0, err := cpuTicks(s.PID())
	if err != nil {
		return 0, 0, err
	}
	time.Sleep(window)
	t1, err := cpuTicks(s.PID())
	if err != nil {
		return 0, 0, err
	}
	const clkTck = 100 // USER_HZ on Linux
	return float64(rssKB) / 1024, float64(t1-t0) / clkTck / window.Seconds() * 100, nil
}

func statusField(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, field) {
			f := strings.Fields(line)
			return strconv.ParseInt(f[1], 10, 64)
		}
	}
	return 0, fmt.Errorf("%s not in /proc/%d/status", field, pid)
}

// cpuTicks is utime+stime of pid from /proc/pid/stat.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the ")" that closes the command name; utime and stime are 14th and 15th overall.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	u, err := strconv.ParseInt(f[11], 10, 64)
	if err != nil {
		return 0, err
	}
	s, err := strconv.ParseInt(f[12], 10, 64)
	return u + s, err
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				model = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	mem := int64(0)
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		fmt.Sscanf(strings.SplitN(string(b), "\n", 2)[0], "MemTotal: %d kB", &mem)
	}
	kernel, _ := exec.Command("uname", "-r").Output()
	return fmt.Sprintf("%d cores (%s), %.0f GiB RAM, Linux %s, %s", runtime.NumCPU(), model,
		float64(mem)/1024/1024, strings.TrimSpace(string(kernel)), runtime.Version())
}

func report(bin string, size int64, ready []time.Duration, rss, cpu float64, settle, window time.Duration) string {
	var b strings.Builder
	var rs []string
	for _, d := range ready {
		rs = append(rs, fmt.Sprintf("%.2f", d.Seconds()))
	}
	ok := func(pass bool) string {
		if pass {
			return "met"
		}
		return "**missed**"
	}
	m := median(ready)
	fmt.Fprintf(&b, "# Benchmarks\n\n")
	fmt.Fprintf(&b, "Written by `make bench` (`go run ./tests/bench -bin bin/k1s -out docs/benchmarks.md`) on %s.\n\n", time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintf(&b, "Machine: %s.\n\n", machine())
	fmt.Fprintf(&b, "## k1s server (control plane only, `--disable-agent`, embedded SQLite)\n\n")
	fmt.Fprintf(&b, "| measure | result | target | |\n|---|---|---|---|\n")
	fmt.Fprintf(&b, "| start to `/readyz` ok, empty data dir (median of %d) | %.2f s (runs: %s) | ≤ 5 s | %s |\n", len(ready), m.Seconds(), strings.Join(rs, ", "), ok(m <= 5*time.Second))
	fmt.Fprintf(&b, "| RSS after %s idle | %.0f MB | ≤ 300 MB | %s |\n", settle, rss, ok(rss <= 300))
	fmt.Fprintf(&b, "| CPU over a %s idle window (100 %% = one core) | %.2f %% | ≤ 2 %% | %s |\n", window, cpu, ok(cpu <= 2))
	fmt.Fprintf(&b, "| binary size (`%s`, stripped, `providerless`) | %.0f MB | | |\n", "bin/k1s", float64(size)/1e6)
	fmt.Fprintf(&b, "\nStart time is measured from process start to the first `/readyz` answer `ok` (polled every 100 ms as the admin).\n")
	fmt.Fprintf(&b, "RSS is `VmRSS` of the k1s process (it includes the resident pages of the binary itself); CPU is utime+stime from `/proc/<pid>/stat`.\n")
	return b.String()
}
