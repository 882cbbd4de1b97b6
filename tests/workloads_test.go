package tests

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/k1s-io/k1s/tests/harness"
)

func get(t *testing.T, s *harness.Server, args ...string) string {
	t.Helper()
	out, err := s.Kubectl(append([]string{"get"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

func waitFor(t *testing.T, s *harness.Server, timeout time.Duration, what string, args []string, want func(string) bool) string {
	t.Helper()
	var last string
	eventually(t, timeout, what, func() error {
		out, err := s.Kubectl(append([]string{"get"}, args...)...)
		last = strings.TrimSpace(out)
		if err != nil {
			return err
		}
		if !want(last) {
			return fmt.Errorf("got %q", last)
		}
		return nil
	})
	return last
}

func equals(v string) func(string) bool { return func(s string) bool { return s == v } }

// TestWorkloads runs what Kubernetes promises on one k1s node.
func TestWorkloads(t *testing.T) {
	s := startNode(t)

	t.Run("init containers run in order before the app", func(t *testing.T) {
		apply(t, s, `apiVersion: v1
kind: Pod
metadata: {name: inits}
spec:
  volumes: [{name: w, emptyDir: {}}]
  initContainers:
  - {name: first, image: `+busybox+`, imagePullPolicy: Never, command: ["sh", "-c", "echo first >> /w/order"], volumeMounts: [{name: w, mountPath: /w}]}
  - {name: second, image: `+busybox+`, imagePullPolicy: Never, command: ["sh", "-c", "echo second >> /w/order"], volumeMounts: [{name: w, mountPath: /w}]}
  containers:
  - {name: app, image: `+busybox+`, imagePullPolicy: Never, command: ["sh", "-c", "echo app >> /w/order; exec sleep 3600"], volumeMounts: [{name: w, mountPath: /w}]}
`)
		waitPhase(t, s, "inits", "Running", 2*time.Minute)
		eventually(t, 30*time.Second, "order file", func() error {
			out, err := s.Kubectl("exec", "inits", "-c", "app", "--", "cat", "/w/order")
			if err != nil {
				return err
			}
			if strings.Fields(out) == nil || strings.Join(strings.Fields(out), ",") != "first,second,app" {
				return fmt.Errorf("order %q", out)
			}
			return nil
		})
	})

	t.Run("probes and preStop", func(t *testing.T) {
		apply(t, s, `apiVersion: v1
kind: Pod
metadata: {name: probes}
spec:
  terminationGracePeriodSeconds: 5
  volumes: [{name: host, hostPath: {path: `+s.Dir+`/prestop, type: DirectoryOrCreate}}]
  containers:
  - name: live
    image: `+busybox+`
    imagePullPolicy: Never
    command: ["sleep", "3600"]
    livenessProbe: {exec: {command: ["false"]}, periodSeconds: 1, failureThreshold: 1}
  - name: ready
    image: `+busybox+`
    imagePullPolicy: Never
    command: ["sleep", "3600"]
    readinessProbe: {exec: {command: ["cat", "/tmp/ready"]}, periodSeconds: 1}
    volumeMounts: [{name: host, mountPath: /host}]
    lifecycle: {preStop: {exec: {command: ["sh", "-c", "echo stopped > /host/marker"]}}}
`)
		waitFor(t, s, 2*time.Minute, "liveness restarts", []string{"pod", "probes", "-o", `jsonpath={.status.containerStatuses[?(@.name=="live")].restartCount}`},
			func(v string) bool { n, _ := strconv.Atoi(v); return n >= 2 })
		if r := get(t, s, "pod", "probes", "-o", `jsonpath={.status.containerStatuses[?(@.name=="ready")].ready}`); r != "false" {
			t.Fatalf("ready container is ready=%q before /tmp/ready exists", r)
		}
		if _, err := s.Kubectl("exec", "probes", "-c", "ready", "--", "touch", "/tmp/ready"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, s, time.Minute, "readiness", []string{"pod", "probes", "-o", `jsonpath={.status.containerStatuses[?(@.name=="ready")].ready}`}, equals("true"))
		if _, err := s.Kubectl("delete", "pod", "probes", "--wait=true", "--timeout=50s"); err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(s.Dir + "/prestop/marker"); err != nil || strings.TrimSpace(string(b)) != "stopped" {
			t.Fatalf("preStop marker: %q %v", b, err)
		}
	})

	t.Run("two containers share localhost and an emptyDir", func(t *testing.T) {
		apply(t, s, `apiVersion: v1
kind: Pod
metadata: {name: duo}
spec:
  volumes: [{name: shared, emptyDir: {}}]
  containers:
  - {name: web, image: `+busybox+`, imagePullPolicy: Never, command: ["sh", "-c", "mkdir -p /www && echo served-by-web > /www/index.html && exec httpd -f -p 8080 -h /www"]}
  - {name: writer, image: `+busybox+`, imagePullPolicy: Never, command: ["sh", "-c", "echo from-writer > /data/note; exec sleep 3600"], volumeMounts: [{name: shared, mountPath: /data}]}
  - {name: reader, image: `+busybox+`, imagePullPolicy: Never, command: ["sleep", "3600"], volumeMounts: [{name: shared, mountPath: /data}]}
`)
		waitPhase(t, s, "duo", "Running", 2*time.Minute)
		eventually(t, 30*time.Second, "localhost and emptyDir", func() error {
			out, err := s.Kubectl("exec", "duo", "-c", "reader", "--", "sh", "-c", "wget -q -O - http://127.0.0.1:8080/ && cat /data/note")
			if err != nil {
				return err
			}
			if !strings.Contains(out, "served-by-web") || !strings.Contains(out, "from-writer") {
				return fmt.Errorf("got %q", out)
			}
			return nil
		})
		// port-forward reaches the server in the Pod from this host's loopback.
		port, err := harness.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		pf := exec.CommandContext(ctx, harness.Bin(), "kubectl", "--kubeconfig", s.Kubeconfig, "port-forward", "pod/duo", fmt.Sprintf("%d:8080", port))
		pf.Env = harness.Env()
		if err := pf.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cancel(); _ = pf.Wait() }()
		eventually(t, 30*time.Second, "port-forward", func() error {
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if !strings.Contains(string(b), "served-by-web") {
				return fmt.Errorf("body %q", b)
			}
			return nil
		})
	})

	t.Run("ConfigMap and Secret as env and volumes, updates reach the Pod", func(t *testing.T) {
		apply(t, s, `apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {color: blue}
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {password: s3cret}
---
apiVersion: v1
kind: Pod
metadata: {name: consumer}
spec:
  volumes:
  - {name: cm, configMap: {name: settings}}
  - {name: sec, secret: {secretName: creds}}
  containers:
  - name: c
    image: `+busybox+`
    imagePullPolicy: Never
    command: ["sleep", "3600"]
    env:
    - {name: COLOR, valueFrom: {configMapKeyRef: {name: settings, key: color}}}
    - {name: PASSWORD, valueFrom: {secretKeyRef: {name: creds, key: password}}}
    volumeMounts: [{name: cm, mountPath: /cm}, {name: sec, mountPath: /sec}]
`)
		waitPhase(t, s, "consumer", "Running", 2*time.Minute)
		out, err := s.Kubectl("exec", "consumer", "--", "sh", "-c", "echo $COLOR $PASSWORD $(cat /cm/color) $(cat /sec/password)")
		if err != nil || strings.TrimSpace(out) != "blue s3cret blue s3cret" {
			t.Fatalf("env and volumes: %q %v", out, err)
		}
		if _, err := s.Kubectl("patch", "configmap", "settings", "-p", `{"data":{"color":"green"}}`); err != nil {
			t.Fatal(err)
		}
		eventually(t, 2*time.Minute, "ConfigMap update in the volume", func() error {
			out, err := s.Kubectl("exec", "consumer", "--", "cat", "/cm/color")
			if err != nil {
				return err
			}
			if strings.TrimSpace(out) != "green" {
				return fmt.Errorf("color %q", out)
			}
			return nil
		})
	})

	t.Run("Job completes, CronJob creates a Job", func(t *testing.T) {
		apply(t, s, `apiVersion: batch/v1
kind: Job
metadata: {name: once}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: c, image: `+busybox+`, imagePullPolicy: Never, command: ["sh", "-c", "echo done"]}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: every-minute}
spec:
  schedule: "* * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: c, image: `+busybox+`, imagePullPolicy: Never, command: ["true"]}]
`)
		waitFor(t, s, 2*time.Minute, "job succeeded", []string{"job", "once", "-o", "jsonpath={.status.succeeded}"}, equals("1"))
		waitFor(t, s, 150*time.Second, "cronjob made a job", []string{"jobs", "-o", "jsonpath={.items[*].metadata.ownerReferences[*].name}"},
			func(v string) bool { return strings.Contains(v, "every-minute") })
	})

	t.Run("Deployment rolls to a new image with no downtime", func(t *testing.T) {
		apply(t, s, `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  strategy: {rollingUpdate: {maxUnavailable: 0, maxSurge: 1}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: c
        image: `+busybox+`
        imagePullPolicy: Never
        command: ["sh", "-c", "touch /tmp/ready; exec sleep 3600"]
        readinessProbe: {exec: {command: ["cat", "/tmp/ready"]}, periodSeconds: 1}
`)
		waitFor(t, s, 2*time.Minute, "2 ready replicas", []string{"deployment", "web", "-o", "jsonpath={.status.readyReplicas}"}, equals("2"))
		if _, err := s.Kubectl("set", "image", "deployment/web", "c="+busybox2); err != nil {
			t.Fatal(err)
		}
		// Watch ready replicas through the rollout: never below 2.
		deadline := time.Now().Add(2 * time.Minute)
		for {
			ready := get(t, s, "deployment", "web", "-o", "jsonpath={.status.readyReplicas}")
			if n, _ := strconv.Atoi(ready); n < 2 {
				t.Fatalf("ready replicas fell to %q during the rollout", ready)
			}
			images := get(t, s, "pods", "-l", "app=web", "-o", "jsonpath={.items[*].spec.containers[0].image}")
			updated := get(t, s, "deployment", "web", "-o", "jsonpath={.status.updatedReplicas}/{.status.replicas}")
			if f := strings.Fields(images); updated == "2/2" && len(f) == 2 && f[0] == busybox2 && f[1] == busybox2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("rollout not done: %s, images %s", updated, images)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})

	t.Run("StatefulSet pods in order, DaemonSet one per node", func(t *testing.T) {
		apply(t, s, `apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 2
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: c, image: `+busybox+`, imagePullPolicy: Never, command: ["sleep", "3600"]}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers: [{name: c, image: `+busybox+`, imagePullPolicy: Never, command: ["sleep", "3600"]}]
`)
		waitFor(t, s, 2*time.Minute, "statefulset ready", []string{"statefulset", "db", "-o", "jsonpath={.status.readyReplicas}"}, equals("2"))
		t0 := get(t, s, "pod", "db-0", "-o", "jsonpath={.status.containerStatuses[0].state.running.startedAt}")
		t1 := get(t, s, "pod", "db-1", "-o", "jsonpath={.status.containerStatuses[0].state.running.startedAt}")
		if t0 == "" || t1 == "" || t0 > t1 {
			t.Fatalf("db-0 started at %q, db-1 at %q: want -0 first", t0, t1)
		}
		nodes := get(t, s, "nodes", "-o", "name")
		waitFor(t, s, 2*time.Minute, "daemonset on every node", []string{"daemonset", "agent", "-o", "jsonpath={.status.numberReady}"},
			equals(strconv.Itoa(len(strings.Fields(nodes)))))
	})
}
