package tests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
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

// BenchmarkDatastoreWrites (make bench; issue 15): 2,000 creates of 1 KiB
// ConfigMaps by 8 writers through one apiserver, on SQLite, on one
// embedded-etcd server and on three, side by side in one run; and the
// time a server takes to join the etcd cluster and become ready. Control
// plane only, each server in a lab host of its own.
func BenchmarkDatastoreWrites(b *testing.B) {
	const objects, writers = 2000, 8
	var results []writeResult
	var joins []time.Duration
	measure := func(name string, s *harness.Server) {
		r := writeLoad(b, s, objects, writers)
		r.name = name
		results = append(results, r)
	}
	lab := harness.NewLab(b)

	sq := newLabServer(b, lab.AddHost(b, "wsq"), 0)
	startExisting(b, sq)
	measure("SQLite (kine)", sq)

	one := newLabServer(b, lab.AddHost(b, "we1"), 0, "--cluster-init")
	startExisting(b, one)
	measure("embedded etcd, 1 server", one)

	first := newLabServer(b, lab.AddHost(b, "wh1"), 0, "--cluster-init")
	startExisting(b, first)
	token, err := os.ReadFile(filepath.Join(first.DataDir, "server", "token"))
	if err != nil {
		b.Fatal(err)
	}
	for _, name := range []string{"wh2", "wh3"} {
		s := newLabServer(b, lab.AddHost(b, name), first.Port, "--server", "https://"+first.Addr(), "--token", strings.TrimSpace(string(token)))
		began := time.Now()
		startExisting(b, s)
		joins = append(joins, time.Since(began))
	}
	measure("embedded etcd, 3 servers (writes through the first)", first)

	var r strings.Builder
	fmt.Fprintf(&r, "\n## Writes on SQLite and embedded etcd (`go test -run '^$' -bench BenchmarkDatastoreWrites -benchtime 1x ./tests/`)\n\n")
	fmt.Fprintf(&r, "%d creates of 1 KiB ConfigMaps, %d writers, through one apiserver; control plane only, one process per server, all on this 2-core machine.\n\n", objects, writers)
	fmt.Fprintf(&r, "| datastore | creates/s | p50 | p99 | max |\n|---|---|---|---|---|\n")
	for _, x := range results {
		fmt.Fprintf(&r, "| %s | %.0f | %s | %s | %s |\n", x.name, x.perSec, ms(x.p50), ms(x.p99), ms(x.max))
		b.ReportMetric(x.perSec, strings.Fields(x.name)[0]+"-creates/s")
	}
	fmt.Fprintf(&r, "\nA server joining the embedded etcd (`k1s server --server URL --token T`, learner, then promoted) was ready in %s and %s (second and third server).\n", joins[0].Round(100*time.Millisecond), joins[1].Round(100*time.Millisecond))
	benchReport(b, r.String())
}

type writeResult struct {
	name          string
	perSec        float64
	p50, p99, max time.Duration
}

// writeLoad creates objects ConfigMaps of 1 KiB through s with writers
// goroutines and returns throughput and latencies.
func writeLoad(b *testing.B, s *harness.Server, objects, writers int) (r writeResult) {
	b.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("https://"+s.Addr(), s.Kubeconfig)
	if err != nil {
		b.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 5000, 5000
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	cms := cs.CoreV1().ConfigMaps("default")
	blob := strings.Repeat("x", 1<<10)
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	next := make(chan int)
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				t0 := time.Now()
				_, err := cms.Create(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("w-%d", i)}, Data: map[string]string{"b": blob}}, metav1.CreateOptions{})
				if err != nil {
					b.Error(err)
				}
				mu.Lock()
				lat = append(lat, time.Since(t0))
				mu.Unlock()
			}
		}()
	}
	began := time.Now()
	for i := range objects {
		next <- i
	}
	close(next)
	wg.Wait()
	took := time.Since(began)
	r.perSec = float64(objects) / took.Seconds()
	r.p50, r.p99, r.max = pct(lat, 50), pct(lat, 99), pct(lat, 100)
	return r
}
