// Command bench measures k1s server start-up and idle cost with the real
// binary and writes docs/benchmarks.md. Run it with `make bench`.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/k1s-io/k1s/tests/harness"
	"github.com/k1s-io/k1s/tests/images"
)

func main() {
	bin := flag.String("bin", "bin/k1s", "k1s binary")
	out := flag.String("out", "docs/benchmarks.md", "report to write")
	starts := flag.Int("starts", 5, "cold starts to time")
	settle := flag.Duration("settle", 60*time.Second, "idle time before RSS is read")
	window := flag.Duration("window", 60*time.Second, "idle window for CPU %")
	idleOnly := flag.Int("idle-runs", 0, "only measure a control-plane-only server's idle memory and CPU this many times, print a table row, write nothing")
	label := flag.String("label", "", "first column of the -idle-runs row")
	heapDir := flag.String("heap-dir", "", "with -idle-runs, save each run's heap profile (debug=1) in this folder")
	logDir := flag.String("log-dir", "", "save each node start's k1s log in this folder (node-start-N.log), to read its step timings")
	var serverArgs listFlag
	flag.Var(&serverArgs, "server-arg", "extra `k1s server` flag for -idle-runs (repeatable)")
	flag.Parse()
	os.Setenv("K1S_BIN", *bin)
	if *idleOnly > 0 {
		ss, err := idleRuns(*idleOnly, serverArgs, *settle, *window, *heapDir)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		if *label == "" {
			*label = strings.Join(append([]string{"`k1s server --disable-agent`"}, serverArgs...), " ")
		}
		fmt.Printf("%s\n%s\n", idleHeader, idleSummary(*label, ss))
		return
	}
	if err := run(*bin, *out, *starts, *settle, *window, *logDir); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// listFlag collects a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func run(bin, out string, starts int, settle, window time.Duration, logDir string) error {
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
	var nodeReady, podRunning []time.Duration
	for i := 0; i < starts; i++ {
		var logPath string
		if logDir != "" {
			logPath = filepath.Join(logDir, fmt.Sprintf("node-start-%d.log", i+1))
		}
		n, p, err := nodeStart(logPath)
		if err != nil {
			return fmt.Errorf("node start %d: %w", i+1, err)
		}
		fmt.Printf("node start %d: node Ready in %s, first Pod Running in %s\n", i+1, n.Round(time.Millisecond), p.Round(time.Millisecond))
		nodeReady, podRunning = append(nodeReady, n), append(podRunning, p)
	}
	nodeRSS, nodeCPU, err := nodeIdle(settle, window)
	if err != nil {
		return err
	}
	fmt.Printf("node idle RSS %.0f MB (PSS %.0f MB), idle CPU %.2f %%\n", nodeRSS.RSS, nodeRSS.PSS, nodeCPU)
	r := report(bin, st.Size(), ready, rss, cpu, settle, window) + nodeReport(nodeReady, podRunning, nodeRSS, nodeCPU, settle, window)
	return os.WriteFile(out, []byte(r), 0o644)
}

// prepare makes a server (not started) in a temp dir of its own; a node
// server gets the bench busybox image in its air-gap folder. cleanup
// removes the dir.
func prepare(node bool) (s *harness.Server, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "k1s-bench-")
	if err != nil {
		return nil, nil, err
	}
	cleanup = func() { os.RemoveAll(dir) }
	if !node {
		s, err = harness.NewServer(dir)
	} else if s, err = harness.NewNodeServer(dir); err == nil {
		imgDir := filepath.Join(s.DataDir, "agent", "images")
		if err = os.MkdirAll(imgDir, 0o700); err == nil {
			err = images.Busybox(filepath.Join(imgDir, "busybox.tar"), benchImage, "sleep", "3600")
		}
	}
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	return s, cleanup, nil
}

const benchImage = "docker.io/k1s-bench/busybox:1"

// stopNode stops the server, its Pods and everything the node left.
func stopNode(s *harness.Server) {
	_, _ = s.Kubectl("delete", "pods", "--all", "--wait=true", "--timeout=60s")
	_ = s.Stop(90 * time.Second)
	if out, err := s.Killall(); err != nil {
		fmt.Fprintf(os.Stderr, "k1s-killall.sh: %v\n%s", err, out)
	}
}

// nodeStart times an empty data dir to node Ready, and to a first Pod
// (created as soon as the API answers) Running. With logPath set, the
// server's log is saved there, also when the start fails.
func nodeStart(logPath string) (nodeReady, podRunning time.Duration, err error) {
	s, cleanup, err := prepare(true)
	if err != nil {
		return 0, 0, err
	}
	defer cleanup()
	if logPath != "" {
		defer func() {
			if werr := os.WriteFile(logPath, []byte(s.Log()), 0o644); werr != nil && err == nil {
				err = werr
			}
		}()
	}
	t0 := time.Now()
	if err := s.Start(); err != nil {
		return 0, 0, err
	}
	defer stopNode(s)
	if err := s.WaitReady(2 * time.Minute); err != nil {
		return 0, 0, err
	}
	deadline := time.Now().Add(3 * time.Minute)
	// Creating a Pod works once the controller-manager made the default ServiceAccount.
	for {
		_, err := s.Kubectl("run", "first", "--image="+benchImage, "--image-pull-policy=Never")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return 0, 0, err
		}
		time.Sleep(50 * time.Millisecond)
	}
	for time.Now().Before(deadline) {
		if nodeReady == 0 {
			out, _ := s.Kubectl("get", "nodes", "-o", `jsonpath={.items[*].status.conditions[?(@.type=="Ready")].status}`)
			if strings.TrimSpace(out) == "True" {
				nodeReady = time.Since(t0)
			}
		}
		if podRunning == 0 {
			out, _ := s.Kubectl("get", "pod", "first", "-o", "jsonpath={.status.phase}")
			if out == "Running" {
				podRunning = time.Since(t0)
			}
		}
		if nodeReady > 0 && podRunning > 0 {
			return nodeReady, podRunning, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return 0, 0, fmt.Errorf("node or pod not ready within 3m; log:\n%s", s.Tail(20))
}

// nodeIdle measures k1s, its containerd and the shims of one running Pod.
func nodeIdle(settle, window time.Duration) (m nodeMem, cpuPct float64, err error) {
	s, cleanup, err := prepare(true)
	if err != nil {
		return m, 0, err
	}
	defer cleanup()
	if err := s.Start(); err != nil {
		return m, 0, err
	}
	defer stopNode(s)
	if err := s.WaitLog("k1s is ready", 3*time.Minute); err != nil {
		return m, 0, err
	}
	if _, err := s.Kubectl("run", "idle", "--image="+benchImage, "--image-pull-policy=Never"); err != nil {
		return m, 0, err
	}
	time.Sleep(settle)
	pids := harness.NodePIDs(s)
	var rssKB, pssKB, k1sKB, t0, t1 int64
	for _, p := range pids {
		if kb, err := harness.StatusField(p, "VmRSS:"); err == nil {
			rssKB += kb
			if p == s.PID() {
				k1sKB = kb
			}
		}
		if kb, err := harness.SmapsRollupField(p, "Pss:"); err == nil {
			pssKB += kb
		}
		if c, err := harness.CPUTicks(p); err == nil {
			t0 += c
		}
	}
	time.Sleep(window)
	for _, p := range pids {
		if c, err := harness.CPUTicks(p); err == nil {
			t1 += c
		}
	}
	m = nodeMem{RSS: float64(rssKB) / 1024, PSS: float64(pssKB) / 1024, K1s: float64(k1sKB) / 1024, Procs: len(pids)}
	return m, float64(t1-t0) / harness.ClockTicks / window.Seconds() * 100, nil
}

// nodeMem is the memory of a node's processes: the sum of their RSS
// (shared pages, such as the binary k1s and its containerd child both map,
// counted in each), of their PSS (shared pages split between them), and
// the k1s process's own RSS.
type nodeMem struct {
	RSS, PSS, K1s float64
	Procs         int
}

func nodeReport(nodeReady, podRunning []time.Duration, m nodeMem, cpu float64, settle, window time.Duration) string {
	var b strings.Builder
	ok := func(pass bool) string {
		if pass {
			return "met"
		}
		return "**missed**"
	}
	list := func(ds []time.Duration) string {
		var s []string
		for _, d := range ds {
			s = append(s, fmt.Sprintf("%.2f", d.Seconds()))
		}
		return strings.Join(s, ", ")
	}
	n, p := median(nodeReady), median(podRunning)
	fmt.Fprintf(&b, "\n## k1s server with its own node (containerd, kubelet, CNI, kube-proxy)\n\n")
	fmt.Fprintf(&b, "| measure | result | target | |\n|---|---|---|---|\n")
	fmt.Fprintf(&b, "| start to node Ready, empty data dir (median of %d) | %.2f s (runs: %s) | ≤ 8 s | %s |\n", len(nodeReady), n.Seconds(), list(nodeReady), ok(n <= 8*time.Second))
	fmt.Fprintf(&b, "| start to first Pod Running, image local (median of %d) | %.2f s (runs: %s) | ≤ 12 s | %s |\n", len(podRunning), p.Seconds(), list(podRunning), ok(p <= 12*time.Second))
	fmt.Fprintf(&b, "| RSS of k1s + containerd + shims (%d processes), one Pod, after %s idle | %.0f MB (k1s itself: %.0f MB) | ≤ 400 MB | %s |\n", m.Procs, settle, m.RSS, m.K1s, ok(m.RSS <= 400))
	fmt.Fprintf(&b, "| PSS of the same (shared pages counted once) | %.0f MB | | |\n", m.PSS)
	fmt.Fprintf(&b, "| CPU of the same over a %s idle window | %.2f %% | | |\n", window, cpu)
	fmt.Fprintf(&b, "\nThe first Pod is created as soon as `/readyz` answers; its image is imported from the air-gap folder at start.\n")
	return b.String()
}

// coldStart times an empty data dir to /readyz ok.
func coldStart() (time.Duration, error) {
	s, cleanup, err := prepare(false)
	if err != nil {
		return 0, err
	}
	defer cleanup()
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
	s, cleanup, err := prepare(false)
	if err != nil {
		return 0, 0, err
	}
	defer cleanup()
	if err := s.Start(); err != nil {
		return 0, 0, err
	}
	defer s.Stop(90 * time.Second)
	if err := s.WaitReady(2 * time.Minute); err != nil {
		return 0, 0, err
	}
	time.Sleep(settle)
	rssKB, err := harness.StatusField(s.PID(), "VmRSS:")
	if err != nil {
		return 0, 0, err
	}
	t0, err := harness.CPUTicks(s.PID())
	if err != nil {
		return 0, 0, err
	}
	time.Sleep(window)
	t1, err := harness.CPUTicks(s.PID())
	if err != nil {
		return 0, 0, err
	}
	return float64(rssKB) / 1024, float64(t1-t0) / harness.ClockTicks / window.Seconds() * 100, nil
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
