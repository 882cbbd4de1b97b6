package release

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/k1s-io/k1s/internal/selfextract"
	"github.com/k1s-io/k1s/tests/harness"
)

// timedRun runs argv with K1S_DATA_DIR=dataDir and returns its wall time
// and peak RSS (ru_maxrss survives the launcher's exec, so it is the
// larger of unpacking and of k1s itself).
func timedRun(b *testing.B, dataDir string, argv ...string) (time.Duration, int64) {
	b.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = harness.Env("K1S_DATA_DIR=" + dataDir)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	if err != nil {
		b.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return took, cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss << 10
}

func medianOf(d []time.Duration) time.Duration {
	s := append([]time.Duration{}, d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// BenchmarkRelease measures dist/k1s, the file install.sh downloads: its
// size, `k1s --version` on a first start (empty data dir: the payload is
// unpacked), on a second start (already unpacked), and the unpacked k1s
// run directly for comparison; medians of 5. With K1S_BENCH_REPORT set it
// appends a section to that report.
//
//	K1S_DIST=$PWD/dist go test -run '^$' -bench BenchmarkRelease -benchtime 1x ./tests/release
func BenchmarkRelease(b *testing.B) {
	d := os.Getenv("K1S_DIST")
	if d == "" {
		wd, _ := os.Getwd()
		d = filepath.Join(filepath.Dir(filepath.Dir(wd)), "dist")
	}
	exe := filepath.Join(d, "k1s")
	f, err := os.Open(exe)
	if err != nil {
		b.Fatalf("%v: run `make release-amd64` first", err)
	}
	st, _ := f.Stat()
	tr, err := selfextract.ReadTrailer(f)
	f.Close()
	if err != nil {
		b.Fatal(err)
	}
	const runs = 5
	var cold, warm, direct []time.Duration
	var coldRSS, warmRSS int64
	for i := 0; i < b.N; i++ {
		for r := 0; r < runs; r++ {
			dir := b.TempDir()
			c, rss := timedRun(b, dir, exe, "--version")
			cold, coldRSS = append(cold, c), max(coldRSS, rss)
			w, rss := timedRun(b, dir, exe, "--version")
			warm, warmRSS = append(warm, w), max(warmRSS, rss)
			dd, _ := timedRun(b, dir, selfextract.Target(dir, tr), "--version")
			direct = append(direct, dd)
			os.RemoveAll(dir)
		}
	}
	mib := float64(st.Size()) / (1 << 20)
	b.ReportMetric(mib, "MiB")
	b.ReportMetric(medianOf(cold).Seconds(), "s-first-start")
	b.ReportMetric(medianOf(warm).Seconds(), "s-second-start")
	report := fmt.Sprintf(`
## Release executable (%s; `+"`go test -run '^$' -bench BenchmarkRelease -benchtime 1x ./tests/release`"+`)

| measure | result | target | |
|---|---|---|---|
| release executable, amd64 (launcher + zstd payload) | %.2f MiB (%d bytes; launcher %.2f MiB, payload %.1f MiB unpacked) | ≤ 70 MiB | %s |
| first start, empty data dir: `+"`k1s --version`"+` incl. unpack (median of %d) | %s (runs: %s) | | |
| second start, already unpacked (median of %d) | %s (runs: %s) | | |
| the unpacked k1s run directly (median of %d) | %s | | |
| peak RSS of a first start (unpack, then k1s) / of a second start | %.0f MB / %.0f MB | | |
`, time.Now().UTC().Format("2006-01-02"), mib, st.Size(), float64(tr.Offset)/(1<<20), float64(tr.Size)/(1<<20),
		metOrMissed(mib <= 70), runs, medianOf(cold).Round(time.Millisecond), durations(cold), runs,
		medianOf(warm).Round(time.Millisecond), durations(warm), runs, medianOf(direct).Round(time.Millisecond),
		float64(coldRSS)/1e6, float64(warmRSS)/1e6)
	b.Log(report)
	if p := os.Getenv("K1S_BENCH_REPORT"); p != "" {
		rf, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			b.Fatal(err)
		}
		defer rf.Close()
		if _, err := rf.WriteString(report); err != nil {
			b.Fatal(err)
		}
	}
}

func metOrMissed(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

func durations(d []time.Duration) string {
	s := make([]string, len(d))
	for i, x := range d {
		s[i] = fmt.Sprintf("%.2f", x.Seconds())
	}
	return strings.Join(s, ", ")
}
