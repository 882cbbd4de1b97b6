package tests

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMetricsServer: on a fresh cluster the built-in metrics-server
// serves metrics.k8s.io through the aggregator, so `kubectl top` works.
func TestMetricsServer(t *testing.T) {
	s := startNodeWithAddons(t)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := s.Kubectl("-n", "kube-system", "describe", "pods", "-l", "k8s-app=metrics-server")
			t.Logf("metrics-server Pods:\n%s", tailString(out, 40))
			out, _ = s.Kubectl("-n", "kube-system", "logs", "-l", "k8s-app=metrics-server", "--tail=30")
			t.Logf("metrics-server log:\n%s", out)
		}
	})
	eventually(t, 3*time.Minute, "APIService v1beta1.metrics.k8s.io Available", func() error {
		out, err := s.Kubectl("get", "apiservice", "v1beta1.metrics.k8s.io", "-o", `jsonpath={.status.conditions[?(@.type=="Available")].status} {.status.conditions[?(@.type=="Available")].message}`)
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if !strings.HasPrefix(out, "True") {
			return fmt.Errorf("Available: %s", out)
		}
		return nil
	})
	node, err := s.Kubectl("get", "nodes", "-o", "jsonpath={.items[0].metadata.name}")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Minute, "kubectl top nodes lists the node", func() error {
		out, err := s.Kubectl("top", "nodes", "--no-headers")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		f := strings.Fields(out)
		if len(f) < 5 || f[0] != node || !strings.HasSuffix(f[1], "m") || !strings.HasSuffix(f[3], "Mi") {
			return fmt.Errorf("top nodes: %q, want %s with CPU (m) and memory (Mi)", out, node)
		}
		return nil
	})
	// k1s's own components' Prometheus metrics, as the README lists them.
	raw, err := s.Kubectl("get", "--raw", "/metrics")
	if err != nil {
		t.Fatalf("apiserver /metrics: %v", err)
	}
	for _, m := range []string{"apiserver_request_total", "scheduler_schedule_attempts_total", "kubelet_running_pods", "kubeproxy_sync_proxy_rules_duration_seconds"} {
		if !strings.Contains(raw, "\n"+m) {
			t.Errorf("the apiserver's /metrics has no %s", m)
		}
	}
	raw, err = s.Kubectl("get", "--raw", "/api/v1/nodes/"+node+"/proxy/metrics/resource")
	if err != nil || !strings.Contains(raw, "node_cpu_usage_seconds_total") {
		t.Errorf("the kubelet's /metrics/resource through the apiserver: %v\n%s", err, tailString(raw, 5))
	}
	eventually(t, 2*time.Minute, "kubectl top pods -A lists CoreDNS and metrics-server", func() error {
		out, err := s.Kubectl("top", "pods", "-A", "--no-headers")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		for _, want := range []string{"coredns-", "metrics-server-"} {
			if !strings.Contains(out, want) {
				return fmt.Errorf("top pods -A has no %s Pod:\n%s", want, out)
			}
		}
		return nil
	})
}

// TestHorizontalPodAutoscaler: with the built-in metrics-server, an HPA on
// CPU scales a Deployment whose Pods burn CPU for a minute up, and back
// down to one Pod once they are idle. (In `make test-all` only.)
func TestHorizontalPodAutoscaler(t *testing.T) {
	s := startNodeWithAddons(t)
	apply(t, s, fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: burner}
spec:
  replicas: 1
  selector: {matchLabels: {app: burner}}
  template:
    metadata: {labels: {app: burner}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: %s
        imagePullPolicy: Never
        command: ["sh", "-c", "end=$(( $(date +%%s) + 60 )); while [ $(date +%%s) -lt $end ]; do :; done; exec sleep 3600"]
        resources: {requests: {cpu: 50m}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: burner}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: burner}
  minReplicas: 1
  maxReplicas: 3
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
  behavior:
    scaleDown: {stabilizationWindowSeconds: 0}
`, busybox))
	replicas := func() (int, string) {
		out, err := s.Kubectl("get", "hpa", "burner", "-o", "jsonpath={.status.desiredReplicas} {.status.currentMetrics[0].resource.current.averageUtilization}")
		if err != nil {
			return -1, out
		}
		n, _ := strconv.Atoi(strings.Fields(out + " x")[0])
		return n, out
	}
	eventually(t, 4*time.Minute, "the HPA scales the busy Deployment up", func() error {
		if n, out := replicas(); n < 2 {
			return fmt.Errorf("desired replicas and CPU utilization: %q", out)
		}
		return nil
	})
	eventually(t, 5*time.Minute, "the HPA scales the idle Deployment back to 1", func() error {
		if n, out := replicas(); n != 1 {
			return fmt.Errorf("desired replicas and CPU utilization: %q", out)
		}
		return nil
	})
}
