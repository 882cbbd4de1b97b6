package tests

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/k1s-io/k1s/tests/harness"
)

// BenchmarkDatastoreChurn (run by `make bench`, which appends the result
// to docs/benchmarks.md through K1S_BENCH_REPORT): a control-plane-only
// server on SQLite creates and deletes 10,000 ConfigMaps of 10 KiB three
// times (8 writers), then idles until compaction and housekeeping have
// caught up, while one writer updates a ConfigMap every 100 ms. It reports
// the database file plus WAL against the bytes its rows hold (live data and
// retained revisions; target ≤ 2×) and the write latencies.
func BenchmarkDatastoreChurn(b *testing.B) {
	const (
		objects, size, rounds, writers = 10000, 10 << 10, 3, 8
		interval                       = time.Minute
	)
	s, err := harness.NewServer(b.TempDir(), "--datastore-compact-interval="+interval.String())
	if err != nil {
		b.Fatal(err)
	}
	startExisting(b, s)
	cfg, err := clientcmd.BuildConfigFromFlags("", s.Kubeconfig)
	if err != nil {
		b.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 5000, 5000
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	dbPath := filepath.Join(s.DataDir, "server", "db", "state.db")
	blob := strings.Repeat("x", size)
	cms := cs.CoreV1().ConfigMaps("default")

	// parallel runs op(i) for i in [0, objects) on writers goroutines and
	// returns the latencies.
	parallel := func(op func(i int) error) []time.Duration {
		var mu sync.Mutex
		var lat []time.Duration
		var wg sync.WaitGroup
		next := make(chan int)
		for range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					began := time.Now()
					if err := op(i); err != nil {
						b.Error(err)
					}
					mu.Lock()
					lat = append(lat, time.Since(began))
					mu.Unlock()
				}
			}()
		}
		for i := range objects {
			next <- i
		}
		close(next)
		wg.Wait()
		return lat
	}
	var churn []time.Duration
	began := time.Now()
	for range rounds {
		churn = append(churn, parallel(func(i int) error {
			_, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("churn-%d", i)}, Data: map[string]string{"b": blob}}, metav1.CreateOptions{})
			return err
		})...)
		churn = append(churn, parallel(func(i int) error {
			return cms.Delete(ctx, fmt.Sprintf("churn-%d", i), metav1.DeleteOptions{})
		})...)
	}
	churnTime := time.Since(began)
	peak := fileSize(dbPath) + fileSize(dbPath+"-wal")

	// Idle, apart from one writer, until the churn's rows are compacted
	// and the free pages returned (two compaction intervals at least).
	probe := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "probe"}, Data: map[string]string{"b": blob}}
	if _, err := cms.Create(ctx, probe, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	var idle []time.Duration
	idleBegan := time.Now()
	for n := 0; ; n++ {
		rows, free, pageSize, err := dbState(dbPath)
		if err == nil && rows == 0 && free*pageSize < 1<<20 && fileSize(dbPath+"-wal") < 1<<20 {
			break
		}
		if time.Since(idleBegan) > 4*interval {
			b.Fatalf("%s after the churn: %d of its rows left, %d KiB free pages (%v)", 4*interval, rows, free*pageSize>>10, err)
		}
		for range 20 {
			probe.Data["n"] = fmt.Sprint(n)
			t0 := time.Now()
			if _, err := cms.Update(ctx, probe, metav1.UpdateOptions{}); err != nil {
				b.Fatal(err)
			}
			idle = append(idle, time.Since(t0))
			time.Sleep(100 * time.Millisecond)
		}
	}
	idleTime := time.Since(idleBegan)
	file := fileSize(dbPath) + fileSize(dbPath+"-wal")
	rows, held, err := dbHeld(dbPath)
	if err != nil {
		b.Fatal(err)
	}
	ratio := float64(file) / float64(held)
	b.ReportMetric(ratio, "file/held")
	b.ReportMetric(float64(pct(churn, 99).Microseconds())/1000, "ms-p99-churn")

	var r strings.Builder
	fmt.Fprintf(&r, "\n## Bounded SQLite database (`go test -run '^$' -bench BenchmarkDatastoreChurn -benchtime 1x ./tests/`)\n\n")
	fmt.Fprintf(&r, "Control-plane-only server, `--datastore-compact-interval=%s`: %d× create and delete %d ConfigMaps of 10 KiB (%d writers, %s, %.0f writes/s), then idle with one update every 100 ms until the churn's rows are compacted and the file's free pages returned (%s).\n\n",
		interval, rounds, objects, writers, churnTime.Round(time.Second), float64(len(churn))/churnTime.Seconds(), idleTime.Round(time.Second))
	fmt.Fprintf(&r, "| measure | result | target | |\n|---|---|---|---|\n")
	fmt.Fprintf(&r, "| db + WAL right after the churn | %.1f MB | | |\n", mb(peak))
	fmt.Fprintf(&r, "| db + WAL after compaction and housekeeping | %.2f MB | | |\n", mb(file))
	fmt.Fprintf(&r, "| bytes held by the rows then (live objects and retained revisions, %d rows) | %.2f MB | | |\n", rows, mb(held))
	fmt.Fprintf(&r, "| file ÷ held | %.2f | ≤ 2 | %s |\n", ratio, met(ratio <= 2))
	fmt.Fprintf(&r, "| write latency during the churn, p50 / p99 / max | %s / %s / %s | | |\n", ms(pct(churn, 50)), ms(pct(churn, 99)), ms(pct(churn, 100)))
	fmt.Fprintf(&r, "| update latency while idle (compaction, vacuum, checkpoint run), p50 / p99 / max | %s / %s / %s | | |\n", ms(pct(idle, 50)), ms(pct(idle, 99)), ms(pct(idle, 100)))
	r.WriteString("\n\"Held\" is the sum of the name, value and previous value of every row left in kine's table; the rest of the file is SQLite's pages, indexes and free space.\n")
	benchReport(b, r.String())
}

// benchReport appends a benchmark's section to the report `make bench`
// writes (K1S_BENCH_REPORT) and logs it. The file is created when missing,
// so one benchmark can be run on its own (`-test.bench BenchmarkX`).
func benchReport(b *testing.B, section string) {
	b.Helper()
	if out := os.Getenv("K1S_BENCH_REPORT"); out != "" {
		f, err := os.OpenFile(out, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString(section); err != nil {
			b.Fatal(err)
		}
	}
	b.Log(section)
}

// dbHeld is the number of rows in kine's table and the bytes they hold.
func dbHeld(path string) (rows, bytes int64, err error) {
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		return 0, 0, err
	}
	defer db.Close()
	err = db.QueryRow(`SELECT COUNT(*), COALESCE(SUM(LENGTH(name) + COALESCE(LENGTH(value), 0) + COALESCE(LENGTH(old_value), 0)), 0) FROM kine`).Scan(&rows, &bytes)
	return rows, bytes, err
}

// pct is the p-th percentile of d (100: the maximum).
func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s) - 1) * p / 100
	return s[i]
}

func mb(n int64) float64 { return float64(n) / 1e6 }

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}
