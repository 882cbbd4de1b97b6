package tests

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/k1s-io/k1s/tests/harness"
)

// TestDashboard drives k1s-dashboard in Debian's chromium, headless, over
// the dashboard's NodePort: sign in with `k1s dashboard token --admin`, see
// the node Ready and a Deployment's Pods, follow a Pod's log and see lines
// printed after the page opened, scale the Deployment to 3 from the UI and
// see three Pods Running without a reload, then do the same as the
// read-only token and get "forbidden". It takes the screenshots the README
// shows (docs/images/dashboard-*.png; written there with K1S_SCREENSHOTS=1).
func TestDashboard(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is not installed (scripts/install-deps.sh installs it): %v", err)
	}
	s := startNodeWithAddons(t)
	apply(t, s, `apiVersion: apps/v1
kind: Deployment
metadata: {name: counter, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: counter}}
  template:
    metadata: {labels: {app: counter}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: counter
          image: `+busybox+`
          command: ["sh", "-c", "i=0; while true; do i=$((i+1)); echo tick $i; sleep 1; done"]
`)
	for _, d := range []string{"kube-system/k1s-dashboard", "default/counter"} {
		ns, name, _ := strings.Cut(d, "/")
		if out, err := s.Kubectl("-n", ns, "rollout", "status", "deployment/"+name, "--timeout=180s"); err != nil {
			t.Fatalf("deployment %s: %v\n%s", d, err, out)
		}
	}
	token := func(args ...string) string {
		cmd := exec.Command(harness.Bin(), append([]string{"dashboard", "token", "--data-dir", s.DataDir, "--ttl", "1h"}, args...)...)
		cmd.Env = harness.Env()
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("k1s dashboard token %v: %v\n%s", args, err, stderr.String())
		}
		tok := strings.TrimSpace(string(out))
		if strings.Count(tok, ".") != 2 || strings.ContainsAny(tok, " \n") {
			t.Fatalf("k1s dashboard token %v printed %q, want one JWT", args, tok)
		}
		return tok
	}
	adminTok, viewTok := token("--admin"), token()
	// The dashboard's own identity may read nothing; it has no token anyway.
	for _, verb := range []string{"list", "get"} {
		out, err := s.Kubectl("auth", "can-i", verb, "pods", "-A", "--as=system:serviceaccount:kube-system:k1s-dashboard")
		if strings.TrimSpace(out) != "no" {
			t.Errorf("k1s-dashboard's ServiceAccount may %s pods: %q (%v)", verb, out, err)
		}
	}
	if out, _ := s.Kubectl("-n", "kube-system", "get", "pods", "-l", "app.kubernetes.io/name=k1s-dashboard",
		"-o", "jsonpath={.items[0].spec.automountServiceAccountToken} {.items[0].spec.containers[0].volumeMounts[*].mountPath}"); strings.Contains(out, "serviceaccount") || !strings.HasPrefix(out, "false ") {
		t.Errorf("the dashboard Pod mounts a ServiceAccount token: %q", out)
	}

	nodeName := get(t, s, "nodes", "-o", "jsonpath={.items[0].metadata.name}")
	nodeIP := get(t, s, "nodes", "-o", `jsonpath={.items[0].status.addresses[?(@.type=="InternalIP")].address}`)
	base := "https://" + net.JoinHostPort(nodeIP, "30443")
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	eventually(t, time.Minute, "the dashboard answering on "+base, func() error {
		resp, err := hc.Get(base + "/healthz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(body) != "ok\n" {
			return fmt.Errorf("%s %q", resp.Status, body)
		}
		return nil
	})

	// The sign-in page as served: strict CSP, no inline script; a token
	// the cluster does not know is refused with a message.
	resp, err := hc.Get(base + "/login")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	if strings.Contains(string(body), "<script>") || !strings.Contains(string(body), `<script src="/static/app.js"`) {
		t.Errorf("the sign-in page has inline script or lacks app.js:\n%s", body)
	}
	resp, err = hc.PostForm(base+"/login", url.Values{"token": {"not-a-token"}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "did not accept this token") || len(resp.Cookies()) != 0 {
		t.Errorf("sign-in with a bad token: %s, cookies %v\n%s", resp.Status, resp.Cookies(), body)
	}

	// Idle memory, before anyone signed in (for docs/benchmarks.md): the
	// kubelet's summary of the Pod's cgroups; no metrics-server needed.
	idle := dashboardMemory(t, s, nodeName)
	t.Logf("dashboard Pod memory before sign-in: %s", idle)

	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.Flag("ignore-certificate-errors", true),
		chromedp.WindowSize(1280, 900))...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(alloc, chromedp.WithLogf(t.Logf))
	defer cancelBrowser()
	// The first call starts the browser, whose life is its context's: no timeout on that one.
	if err := chromedp.Do(bctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("starting %s: %v", chromium, err)
	}
	ctx, cancel := context.WithTimeout(bctx, 6*time.Minute)
	defer cancel()
	css := func(sel string) chromedp.CSS { return chromedp.CSS(sel) }
	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			html, _ := chromedp.Run(bctx, chromedp.OuterHTML(css("body")))
			t.Fatalf("%s: %v\npage: %s", what, err, html)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(css(sel)))
		if err != nil {
			t.Fatalf("reading %s: %v", sel, err)
		}
		return s
	}
	// until polls the page (no reload) until f accepts it.
	until := func(timeout time.Duration, what string, f func() error) {
		t.Helper()
		eventually(t, timeout, what, f)
	}
	signIn := func(tok string) {
		t.Helper()
		run("signing in", chromedp.Navigate(base+"/login"), chromedp.WaitVisible(css("#token")),
			chromedp.SetValue(css("#token"), tok), chromedp.Click(css("#signin")),
			chromedp.WaitVisible(css("#phases")))
	}
	shots := t.TempDir()
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil || len(png) < 1000 || !bytes.HasPrefix(png, []byte("\x89PNG")) {
			t.Fatalf("screenshot %s: %d bytes, %v", name, len(png), err)
		}
		// Into the test's temp dir; K1S_SCREENSHOTS=1 refreshes the
		// README's copies, so a plain run leaves the tree clean.
		p := filepath.Join(shots, name)
		if os.Getenv("K1S_SCREENSHOTS") == "1" {
			p = filepath.Join("..", "docs", "images", name)
		}
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d bytes)", p, len(png))
	}

	signIn(adminTok)
	if u := text("#user"); u != "system:serviceaccount:kube-system:k1s-dashboard-admin" {
		t.Errorf("signed in as %q", u)
	}
	until(time.Minute, "the node Ready on the overview", func() error {
		if n := text("#nodes"); !regexp.MustCompile(regexp.QuoteMeta(nodeName) + `\s+Ready\s`).MatchString(n) {
			return fmt.Errorf("node table %q", n)
		}
		return nil
	})
	// metrics-server comes up about a minute after the node; then the
	// overview shows usage, without a reload.
	until(2*time.Minute, "node usage from metrics.k8s.io on the overview", func() error {
		if n := text("#nodes"); !regexp.MustCompile(`\d+m \(\d+%\)`).MatchString(n) {
			return fmt.Errorf("node table %q", n)
		}
		return nil
	})
	shot("dashboard-overview.png")

	run("workloads", chromedp.Navigate(base+"/workloads?ns=default"), chromedp.WaitVisible(css("#pods")))
	if w := text("#workloads"); !strings.Contains(w, "counter") || !strings.Contains(w, "1/1") {
		t.Errorf("workloads table %q lacks counter 1/1", w)
	}
	pod := get(t, s, "pods", "-l", "app=counter", "-o", "jsonpath={.items[0].metadata.name}")
	if p := text("#pods"); !strings.Contains(p, pod) || !strings.Contains(p, "Running") {
		t.Errorf("pods table %q lacks %s Running", p, pod)
	}

	// The log: once the page shows it, every line printed so far is at most
	// the Pod's last line per kubectl; a higher tick on the page was printed,
	// and streamed, after the page opened.
	ticks := regexp.MustCompile(`tick (\d+)`)
	maxTick := func(s string) int {
		m := 0
		for _, x := range ticks.FindAllStringSubmatch(s, -1) {
			if n, _ := strconv.Atoi(x[1]); n > m {
				m = n
			}
		}
		return m
	}
	pageTick := func() int { return maxTick(text("#logs")) }
	run("pod page", chromedp.Navigate(base+"/pod?ns=default&name="+pod), chromedp.WaitVisible(css("#containers")))
	until(30*time.Second, "the log on the pod page", func() error {
		if pageTick() == 0 {
			return fmt.Errorf("no tick in the log yet")
		}
		return nil
	})
	last, err := s.Kubectl("logs", pod, "--tail=1")
	atOpen := maxTick(last)
	if err != nil || atOpen == 0 {
		t.Fatalf("kubectl logs %s --tail=1: %q (%v)", pod, last, err)
	}
	start := time.Now()
	until(30*time.Second, "a log line printed after the page opened", func() error {
		if n := pageTick(); n <= atOpen {
			return fmt.Errorf("highest tick on the page %d, the Pod's last line when the page had opened: tick %d", n, atOpen)
		}
		return nil
	})
	t.Logf("log followed: tick %d when the page had opened, a higher one on the page after %s", atOpen, time.Since(start).Round(time.Millisecond))
	if c := text("#conditions"); !strings.Contains(c, "Ready") {
		t.Errorf("conditions %q", c)
	}
	shot("dashboard-pod.png")
	// Follow off stops the stream.
	run("follow off", chromedp.Click(css("#follow")), chromedp.Sleep(500*time.Millisecond))
	paused := pageTick()
	time.Sleep(3 * time.Second)
	if n := pageTick(); n != paused {
		t.Errorf("the log grew from tick %d to %d with follow off", paused, n)
	}

	// Scale to 3 through the confirmation; the Pods appear on the page by its own polling.
	run("scale to 3", chromedp.Navigate(base+"/workloads?ns=default"), chromedp.WaitVisible(css("#replicas-Deployment-counter")),
		chromedp.SetValue(css("#replicas-Deployment-counter"), "3"), chromedp.Click(css("#scale-Deployment-counter")),
		chromedp.WaitVisible(css("#question")))
	if q := text("#question"); q != "Scale Deployment default/counter to 3 replicas?" {
		t.Fatalf("confirmation asks %q", q)
	}
	run("confirm", chromedp.Click(css("#confirm")), chromedp.WaitVisible(css("#message")))
	if m := text("#message"); !strings.Contains(m, "scaled to 3") {
		t.Fatalf("after scaling: %q", m)
	}
	until(2*time.Minute, "three counter Pods Running on the page", func() error {
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`[...document.querySelectorAll("#pods tr.pod")].filter(r => r.querySelector(".podlink").textContent.startsWith("counter-") && r.querySelector(".podstatus").textContent === "Running").length`))
		if err != nil {
			return err
		}
		if n != 3 {
			return fmt.Errorf("%d Running", n)
		}
		return nil
	})

	// The read-only token: the same action is refused, visibly.
	run("sign out", chromedp.Click(css(".signout button")), chromedp.WaitVisible(css("#token")))
	signIn(viewTok)
	run("scale as viewer", chromedp.Navigate(base+"/workloads?ns=default"), chromedp.WaitVisible(css("#replicas-Deployment-counter")),
		chromedp.SetValue(css("#replicas-Deployment-counter"), "1"), chromedp.Click(css("#scale-Deployment-counter")),
		chromedp.WaitVisible(css("#confirm")), chromedp.Click(css("#confirm")), chromedp.WaitVisible(css("#error")))
	if e := text("#error"); !strings.Contains(e, "forbidden: scale deployments default/counter") {
		t.Errorf("viewer's scale: %q, want a forbidden message", e)
	}
	if r := get(t, s, "deployment", "counter", "-o", "jsonpath={.spec.replicas}"); r != "3" {
		t.Errorf("replicas %s after the viewer's refused scale, want 3", r)
	}
	t.Logf("dashboard Pod memory after the session: %s", dashboardMemory(t, s, nodeName))
}

// dashboardMemory is the dashboard Pod's working set and RSS as the
// kubelet's stats summary reports them; it waits for the first sample.
func dashboardMemory(t *testing.T, s *harness.Server, node string) string {
	t.Helper()
	var res string
	eventually(t, time.Minute, "the dashboard Pod in the kubelet's stats summary", func() error {
		raw, err := s.Kubectl("get", "--raw", "/api/v1/nodes/"+node+"/proxy/stats/summary")
		if err != nil {
			return fmt.Errorf("%v: %s", err, raw)
		}
		var sum struct {
			Pods []struct {
				PodRef struct{ Name, Namespace string }
				Memory *struct {
					WorkingSetBytes *uint64
					RSSBytes        *uint64
				}
			}
		}
		if err := json.Unmarshal([]byte(raw), &sum); err != nil {
			return err
		}
		for _, p := range sum.Pods {
			if p.PodRef.Namespace == "kube-system" && strings.HasPrefix(p.PodRef.Name, "k1s-dashboard-") && p.Memory != nil && p.Memory.WorkingSetBytes != nil && p.Memory.RSSBytes != nil && *p.Memory.WorkingSetBytes > 0 {
				res = fmt.Sprintf("working set %.1f MiB, RSS %.1f MiB", float64(*p.Memory.WorkingSetBytes)/(1<<20), float64(*p.Memory.RSSBytes)/(1<<20))
				return nil
			}
		}
		return fmt.Errorf("no memory sample for the dashboard Pod yet")
	})
	return res
}
