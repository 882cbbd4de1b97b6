package tests

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/k1s-io/k1s/internal/selfextract"
	"github.com/k1s-io/k1s/tests/harness"
	"github.com/k1s-io/k1s/tests/images"
)

// The release files install.sh fetches for amd64 (the release's dist/).
var distFiles = []string{"k1s", harness.BundleName, "k1s-killall.sh"}

// checkout is the repository root of the binary under test.
func checkout() string {
	if checkoutRoot != "" {
		return checkoutRoot
	}
	return filepath.Dir(filepath.Dir(harness.Bin()))
}

// checkoutRoot, when set, overrides checkout() (see runDirectly).
var checkoutRoot string

// runDirectly points K1S_BIN, for the rest of t, at the k1s inside the
// release file under test (unpacked into a temporary folder), so that
// kubectl calls unpack nothing into the default /var/lib/k1s; checkout()
// keeps naming the repository.
func runDirectly(t *testing.T) {
	t.Helper()
	root := checkout()
	f, err := os.Open(harness.Bin())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr, err := selfextract.ReadTrailer(f)
	if err != nil {
		return // a plain k1s
	}
	res, err := selfextract.Ensure(f, tr, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	checkoutRoot = root
	t.Cleanup(func() { checkoutRoot = "" })
	t.Setenv("K1S_BIN", res.Target)
}

// makeDist writes a release directory for amd64 into dir: exe as k1s, the
// air-gap bundle, install.sh, k1s-killall.sh and sha256sum-amd64.txt.
func makeDist(t *testing.T, dir string, exe []byte) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bundle, err := os.ReadFile(harness.Bundle())
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"k1s": exe, harness.BundleName: bundle}
	for _, s := range []string{"install.sh", "k1s-killall.sh"} {
		b, err := os.ReadFile(filepath.Join(checkout(), "scripts", s))
		if err != nil {
			t.Fatal(err)
		}
		files[s] = b
	}
	var sums strings.Builder
	for _, name := range distFiles {
		sum := sha256.Sum256(files[name])
		fmt.Fprintf(&sums, "%s  %s\n", hex.EncodeToString(sum[:]), name)
	}
	files["sha256sum-amd64.txt"] = []byte(sums.String())
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// previousBuild is the binary under test with its k1s version string
// replaced (same length) by another: a second build of k1s that
// install.sh upgrades from. For a release file (launcher and compressed
// payload, as in dist/) the payload is unpacked, changed and packed
// again. It returns the bytes and the two versions.
func previousBuild(t *testing.T) ([]byte, string, string) {
	t.Helper()
	unpackDir := t.TempDir()
	cmd := exec.Command(harness.Bin(), "--version")
	cmd.Env = harness.Env("K1S_DATA_DIR=" + unpackDir) // a release file unpacks there, not in /var/lib/k1s
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	cur := strings.TrimPrefix(strings.SplitN(string(out), "\n", 2)[0], "k1s version ")
	prev := "v0.0.0-previous+"
	if len(cur) < len(prev)+1 {
		t.Fatalf("version %q too short to derive another of the same length", cur)
	}
	prev += strings.Repeat("0", len(cur)-len(prev))
	f, err := os.Open(harness.Bin())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr, trErr := selfextract.ReadTrailer(f)
	exe, err := os.ReadFile(harness.Bin())
	if err != nil {
		t.Fatal(err)
	}
	launcher := []byte(nil)
	if trErr == nil {
		launcher = exe[:tr.Offset]
		if exe, err = os.ReadFile(selfextract.Target(unpackDir, tr)); err != nil {
			t.Fatal(err)
		}
	}
	if bytes.Count(exe, []byte(cur)) == 0 {
		t.Fatalf("version %q not found in %s", cur, harness.Bin())
	}
	exe = bytes.ReplaceAll(exe, []byte(cur), []byte(prev))
	if launcher == nil {
		return exe, prev, cur
	}
	var rel bytes.Buffer
	rel.Write(launcher)
	if err := selfextract.Pack(&rel, int64(len(launcher)), bytes.NewReader(exe)); err != nil {
		t.Fatal(err)
	}
	return rel.Bytes(), prev, cur
}

// serveDists serves root on addr:0; /broken/ answers every file with half
// its bytes and then drops the connection (a failed download).
func serveDists(t *testing.T, root, addr string) string {
	t.Helper()
	files := http.FileServer(http.Dir(root))
	mux := http.NewServeMux()
	mux.Handle("/", files)
	mux.HandleFunc("/broken/", func(w http.ResponseWriter, r *http.Request) {
		b, err := os.ReadFile(filepath.Join(root, "current", filepath.Base(r.URL.Path)))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		if strings.HasSuffix(r.URL.Path, ".txt") || strings.HasSuffix(r.URL.Path, ".sh") {
			_, _ = w.Write(b)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		_, _ = w.Write(b[:len(b)/2])
		panic(http.ErrAbortHandler)
	})
	l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(mux)
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}

// install is one installation of k1s with all its paths below Dir.
type install struct {
	Dir, Bin, Svc, Etc, Data, Run, Kubelet string
	prefix                                 []string // nsenter into a lab host, for an agent
	name                                   string   // k1s or k1s-agent
}

func newInstall(dir, name string, prefix []string) *install {
	return &install{Dir: dir, Bin: filepath.Join(dir, "bin"), Svc: filepath.Join(dir, "svc"), Etc: filepath.Join(dir, "etc"),
		Data: filepath.Join(dir, "data"), Run: filepath.Join(dir, "run"), Kubelet: filepath.Join(dir, "kubelet"),
		prefix: prefix, name: name}
}

// flags are the k1s flags that keep this install's state below Dir.
func (in *install) flags() []string {
	return []string{"--data-dir", in.Data, "--run-dir", in.Run, "--kubelet-arg=root-dir=" + in.Kubelet,
		"--config", filepath.Join(in.Etc, "config.yaml"), "--private-registry", filepath.Join(in.Etc, "registries.yaml")}
}

// env is what install.sh gets besides the caller's settings.
func (in *install) env(url string) []string {
	return []string{"INSTALL_K1S_ARTIFACT_URL=" + url, "INSTALL_K1S_BIN_DIR=" + in.Bin,
		"INSTALL_K1S_SERVICE_DIR=" + in.Svc, "INSTALL_K1S_CONFIG_DIR=" + in.Etc}
}

// run runs `curl -sfL URL/install.sh | SHELL -s - args…` (in the
// install's network namespace) and returns its output and error.
func (in *install) run(shell, url string, env []string, args ...string) (string, error) {
	// fd 7 is a copy of the output pipe, as a caller's lock or pipe would
	// be: a k1s started in the background must not keep it open, or the
	// caller waits for it (WaitDelay turns that into an error).
	script := fmt.Sprintf("exec 7>&1; curl -sfL %s/install.sh | %s -s - %s", url, shell, strings.Join(args, " "))
	argv := append(append([]string(nil), in.prefix...), "sh", "-c", script)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.WaitDelay = 20 * time.Second
	cmd.Env = harness.Env(append(in.env(url), env...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// pid is the running k1s of a no-init install, from its pid file.
func (in *install) pid(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(in.Svc, in.name+".pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func (in *install) log() string {
	b, _ := os.ReadFile(filepath.Join(in.Svc, in.name+".log"))
	return string(b)
}

// uninstall runs the uninstall script install.sh wrote.
func (in *install) uninstall() (string, error) {
	argv := append(append([]string(nil), in.prefix...), filepath.Join(in.Bin, in.name+"-uninstall.sh"))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = harness.Env()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// cleanup undoes the install when the test ends: its uninstall script if
// it is still there, else k1s-killall.sh for its directories.
func (in *install) cleanup(t *testing.T, cgroupRoot string) {
	t.Cleanup(func() {
		if _, err := os.Stat(filepath.Join(in.Bin, in.name+"-uninstall.sh")); err == nil {
			out, err := in.uninstall()
			if err != nil {
				t.Errorf("cleanup: %s-uninstall.sh: %v\n%s", in.name, err, out)
			}
		}
		if _, err := os.Stat(in.Data); err == nil {
			argv := append(append([]string(nil), in.prefix...), "bash", filepath.Join(checkout(), "scripts", "k1s-killall.sh"))
			cmd := exec.Command(argv[0], argv[1:]...)
			cmd.Env = harness.Env("K1S_DATA_DIR="+in.Data, "K1S_RUN_DIR="+in.Run, "K1S_KUBELET_DIR="+in.Kubelet, "K1S_CGROUP_ROOT="+cgroupRoot)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("cleanup: k1s-killall.sh: %v\n%s", err, out)
			}
		}
		if t.Failed() {
			t.Logf("log of %s:\n%s", in.name, tailString(in.log(), 40))
		}
	})
}

func tailString(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

var counters = regexp.MustCompile(`\[\d+:\d+\]|counter packets \d+ bytes \d+`)

// hostState lists everything an install could leave on this host and in
// the lab host ns: processes running from or mentioning dirs, mounts,
// links, routes, iptables and nftables rules (without counters), files
// below paths, and the top level of every cgroup hierarchy.
func hostState(t *testing.T, ns string, dirs []string, paths []string) []string {
	t.Helper()
	var out []string
	add := func(kind, s string) {
		for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
			if l = strings.TrimSpace(counters.ReplaceAllString(l, "")); l != "" && !strings.HasPrefix(l, "#") {
				out = append(out, kind+" "+l)
			}
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	self := strconv.Itoa(os.Getpid())
	for _, p := range procs {
		if filepath.Base(p) == self {
			continue
		}
		exe, _ := os.Readlink(p + "/exe")
		cmdline, _ := os.ReadFile(p + "/cmdline")
		line := exe + " " + strings.ReplaceAll(string(cmdline), "\x00", " ")
		for _, d := range dirs {
			if strings.Contains(line, d) {
				add("process", line)
				break
			}
		}
	}
	mounts, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	add("mount", string(mounts))
	for _, where := range []struct{ kind, ns string }{{"host", ""}, {"ns", ns}} {
		run := func(name string, args ...string) string {
			argv := append([]string{name}, args...)
			if where.ns != "" {
				argv = append([]string{"ip", "netns", "exec", where.ns}, argv...)
			}
			b, err := exec.Command(argv[0], argv[1:]...).Output()
			if err != nil {
				t.Fatalf("%s: %v", strings.Join(argv, " "), err)
			}
			return string(b)
		}
		links := run("ip", "-o", "link", "show")
		for _, l := range strings.Split(strings.TrimSpace(links), "\n") {
			if f := strings.Fields(l); len(f) > 1 {
				add(where.kind+" link", f[1])
			}
		}
		add(where.kind+" route", run("ip", "route", "show", "table", "all"))
		add(where.kind+" route6", run("ip", "-6", "route", "show", "table", "all"))
		add(where.kind+" iptables", iptablesRules(run("iptables-save")))
		add(where.kind+" ip6tables", iptablesRules(run("ip6tables-save")))
		add(where.kind+" nft", nftOwnTables(run("nft", "list", "ruleset")))
	}
	for _, root := range paths {
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil // absent is a state too: it lists nothing
			}
			info, err := d.Info()
			if err != nil {
				return nil
			}
			v := info.Mode().String()
			if info.Mode().IsRegular() {
				v += fmt.Sprintf(" %d %s", info.Size(), info.ModTime())
			}
			out = append(out, "file "+p+" "+v)
			return nil
		})
	}
	cg, _ := filepath.Glob("/sys/fs/cgroup/*/*")
	for _, c := range cg {
		if fi, err := os.Stat(c); err == nil && fi.IsDir() {
			out = append(out, "cgroup "+c)
		}
	}
	sort.Strings(out)
	return out
}

// iptablesRules keeps the rules, the user chains and built-in chains
// whose policy is not ACCEPT: empty tables that iptables itself created
// once a table was used are no rules.
func iptablesRules(save string) string {
	var keep []string
	for _, l := range strings.Split(save, "\n") {
		f := strings.Fields(l)
		switch {
		case strings.HasPrefix(l, "-A "):
			keep = append(keep, l)
		case strings.HasPrefix(l, ":") && len(f) > 1 && f[1] != "ACCEPT":
			keep = append(keep, f[0]+" "+f[1])
		}
	}
	return strings.Join(keep, "\n")
}

// nftOwnTables drops the tables of iptables-nft (its rules are compared
// through iptables-save) and keeps every other table, e.g. kube-proxy's
// and flannel's, in full.
func nftOwnTables(ruleset string) string {
	var keep []string
	skip := false
	for _, l := range strings.Split(ruleset, "\n") {
		if strings.HasPrefix(l, "table ") {
			f := strings.Fields(l)
			switch f[len(f)-2] {
			case "filter", "nat", "mangle", "raw", "security":
				skip = true
			default:
				skip = false
			}
		}
		if !skip {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

func diffLists(before, after []string) (gone, added []string) {
	b, a := map[string]bool{}, map[string]bool{}
	for _, s := range before {
		b[s] = true
	}
	for _, s := range after {
		a[s] = true
	}
	for _, s := range before {
		if !a[s] {
			gone = append(gone, s)
		}
	}
	for _, s := range after {
		if !b[s] {
			added = append(added, s)
		}
	}
	return
}

// waitDeployments waits until each Deployment in kube-system has a ready replica.
func waitDeployments(t *testing.T, kc string, names ...string) {
	t.Helper()
	for _, d := range names {
		eventually(t, 3*time.Minute, "deployment "+d+" ready", func() error {
			out, err := harness.Kubectl(kc, "-n", "kube-system", "get", "deployment", d, "-o", "jsonpath={.status.readyReplicas}")
			if err != nil {
				return err
			}
			if strings.TrimSpace(out) == "" || strings.TrimSpace(out) == "0" {
				return fmt.Errorf("readyReplicas %q", out)
			}
			return nil
		})
	}
}

func waitNodeReady(t *testing.T, kc, node string) {
	t.Helper()
	eventually(t, 3*time.Minute, "node "+node+" Ready", func() error {
		out, err := harness.Kubectl(kc, "get", "node", node, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		if err != nil {
			return err
		}
		if out != "True" {
			return fmt.Errorf("Ready=%q", out)
		}
		return nil
	})
}

// TestInstall: install.sh, served from a local HTTP server, installs a
// server without an init system (Ready node, CoreDNS and k1s-ingress
// running) and an agent in a network namespace that joins it; refuses a
// download that fails or does not match its checksum, changing nothing;
// upgrades the server to another build keeping its data and the
// containers of running Pods; and the uninstall scripts leave the host as
// it was before.
func TestInstall(t *testing.T) {
	lab := harness.NewLab(t)
	h := lab.AddHost(t, "inst1")
	base := t.TempDir()
	root := filepath.Join(base, "www")
	prevExe, prevVersion, curVersion := previousBuild(t)
	makeDist(t, filepath.Join(root, "previous"), prevExe)
	prevExe = nil
	cur, err := os.ReadFile(harness.Bin())
	if err != nil {
		t.Fatal(err)
	}
	makeDist(t, filepath.Join(root, "current"), cur)
	// A release whose k1s differs in one byte from what its checksum list says.
	cur[len(cur)/2] ^= 0xff
	makeDist(t, filepath.Join(root, "mismatch"), cur)
	sums, _ := os.ReadFile(filepath.Join(root, "current", "sha256sum-amd64.txt"))
	if err := os.WriteFile(filepath.Join(root, "mismatch", "sha256sum-amd64.txt"), sums, 0o644); err != nil {
		t.Fatal(err)
	}
	cur = nil
	runDirectly(t)
	url := serveDists(t, root, lab.GatewayIP)

	srv := newInstall(filepath.Join(base, "server"), "k1s", nil)
	agt := newInstall(filepath.Join(base, "agent"), "k1s-agent", h.NetPrefix())
	cgroupRoot := "/k1s-test-install"
	for _, in := range []*install{srv, agt} {
		for _, d := range []string{in.Bin, in.Svc} { // like /usr/local/bin and /etc/systemd/system: there before
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The server's bin dir is a symlink, as on hosts where /usr/local/bin
	// leads to another disk: the kernel names the running k1s by its real
	// path, and an upgrade must still find and stop it.
	if err := os.Rename(srv.Bin, srv.Bin+"-real"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Base(srv.Bin)+"-real", srv.Bin); err != nil {
		t.Fatal(err)
	}
	watched := []string{srv.Dir, agt.Dir, "/etc/k1s", "/var/lib/k1s", "/run/k1s", "/var/lib/kubelet", "/var/lib/cni", "/run/containerd",
		"/etc/systemd/system/k1s.service", "/etc/systemd/system/k1s-agent.service", "/etc/init.d/k1s", "/etc/init.d/k1s-agent",
		"/etc/conf.d/k1s", "/etc/conf.d/k1s-agent", "/usr/local/bin/k1s", "/usr/local/bin/k1s-killall.sh"}
	before := hostState(t, h.Namespace, []string{base}, watched)

	// The user's config and the test image, as a user would put them there.
	for _, in := range []*install{srv, agt} {
		if err := os.MkdirAll(in.Etc, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(in.Etc, "config.yaml"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	srv.cleanup(t, "")
	imgDir := filepath.Join(srv.Data, "agent", "images")
	if err := os.MkdirAll(imgDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := images.Busybox(filepath.Join(imgDir, "busybox.tar"), busybox, "sleep", "3600"); err != nil {
		t.Fatal(err)
	}
	free, err := harness.FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	ports := make([]string, len(free))
	for i, p := range free {
		ports[i] = strconv.Itoa(p)
	}
	kc := filepath.Join(srv.Etc, "k1s.yaml")
	srvArgs := append([]string{"server", "--write-kubeconfig", kc, "--tls-san", lab.GatewayIP,
		"--https-listen-port", ports[0], "--kube-scheduler-port", ports[1], "--kube-controller-manager-port", ports[2]}, srv.flags()...)

	// 1. The previous build, no init system, under dash.
	out, err := srv.run("dash", url+"/previous", []string{"INSTALL_K1S_FORCE_INIT=none"}, srvArgs...)
	if err != nil {
		t.Fatalf("install.sh (server): %v\n%s", err, out)
	}
	t.Logf("install.sh (server):\n%s", out)
	mustContain(t, out, "started k1s server in the background", "install.sh output")
	if err := waitUntil(func() bool { return strings.Contains(srv.log(), "k1s is ready") }, 3*time.Minute); err != nil {
		t.Fatalf("server not ready: %v\n%s", err, tailString(srv.log(), 30))
	}
	nodes, err := harness.Kubectl(kc, "get", "nodes", "-o", "jsonpath={.items[0].metadata.name}")
	if err != nil {
		t.Fatal(err)
	}
	srvNode := strings.TrimSpace(nodes)
	waitNodeReady(t, kc, srvNode)
	waitDeployments(t, kc, "coredns", "k1s-ingress")
	for _, l := range []string{"kubectl", "crictl", "ctr"} {
		if target, err := os.Readlink(filepath.Join(srv.Bin, l)); err != nil || target != "k1s" {
			t.Errorf("%s/%s: link to %q, %v; want k1s", srv.Bin, l, target, err)
		}
	}
	if v, err := execOutEnv([]string{"K1S_DATA_DIR=" + srv.Data}, filepath.Join(srv.Bin, "k1s"), "--version"); err != nil || !strings.Contains(v, prevVersion) {
		t.Fatalf("installed k1s --version: %q %v; want %s", v, err, prevVersion)
	}

	// 2. An agent in a network namespace, joining with a token file, under busybox ash.
	token, err := os.ReadFile(filepath.Join(srv.Data, "server", "token"))
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(base, "agent-token")
	if err := os.WriteFile(tokenFile, token, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, d := range cgroupDirsOf(cgroupRoot) {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	agt.cleanup(t, cgroupRoot)
	agentArgs := append([]string{"agent", "--node-name", h.Name, "--kubelet-arg=cgroup-root=" + cgroupRoot}, agt.flags()...)
	out, err = agt.run("busybox ash", url+"/current", []string{"INSTALL_K1S_FORCE_INIT=none",
		"K1S_URL=https://" + net.JoinHostPort(lab.GatewayIP, ports[0]), "K1S_TOKEN_FILE=" + tokenFile}, agentArgs...)
	if err != nil {
		t.Fatalf("install.sh (agent): %v\n%s", err, out)
	}
	t.Logf("install.sh (agent):\n%s", out)
	waitNodeReady(t, kc, h.Name)
	secret := strings.TrimSpace(string(token))
	secret = secret[strings.LastIndex(secret, ":")+1:]
	for _, in := range []*install{srv, agt} {
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", in.pid(t)))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(cmdline), secret) {
			t.Errorf("the join token is on %s's command line: %q", in.name, cmdline)
		}
	}

	// 3. A Pod and some data to keep across the upgrade.
	apply(t, &harness.Server{Kubeconfig: kc, Dir: base}, `apiVersion: v1
kind: Pod
metadata: {name: keep, namespace: default}
spec:
  nodeName: `+srvNode+`
  containers: [{name: c, image: `+busybox+`, command: ["sleep", "3600"]}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: keep, namespace: default}
data: {k: v}
`)
	jp := "jsonpath={.status.phase} {.status.containerStatuses[0].containerID} {.status.containerStatuses[0].restartCount}"
	var podBefore string
	eventually(t, 2*time.Minute, "pod keep Running", func() error {
		podBefore, err = harness.Kubectl(kc, "get", "pod", "keep", "-o", jp)
		if err != nil || !strings.HasPrefix(podBefore, "Running containerd://") {
			return fmt.Errorf("%q %v", podBefore, err)
		}
		return nil
	})

	// 4. Failed and mismatching downloads change nothing.
	oldPID := srv.pid(t)
	// The running k1s keeps appending to its log in the svc dir: compare
	// the log by what it held before (not truncated, not replaced), the
	// rest of the dir exactly.
	snapBin, snapSvc, snapImg := snapshot(t, srv.Bin+"-real"), svcWithoutLog(t, srv.Svc), snapshot(t, imgDir)
	svcLog := filepath.Join(srv.Svc, "k1s.log")
	logBefore, err := os.ReadFile(svcLog)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ path, want string }{
		{"/broken", "download of " + url + "/broken/k1s failed"},
		{"/mismatch", "checksum mismatch for k1s"},
	} {
		out, err := srv.run("dash", url+c.path, []string{"INSTALL_K1S_FORCE_INIT=none"}, srvArgs...)
		if err == nil {
			t.Fatalf("install.sh from %s succeeded, want a refusal:\n%s", c.path, out)
		}
		mustContain(t, out, c.want, "install.sh from "+c.path)
		mustContain(t, out, "nothing was changed", "install.sh from "+c.path)
		for what, d := range map[string][]string{
			"bin":    diffSnapshots(snapBin, snapshot(t, srv.Bin+"-real")),
			"svc":    diffSnapshots(snapSvc, svcWithoutLog(t, srv.Svc)),
			"images": diffSnapshots(snapImg, snapshot(t, imgDir)),
		} {
			if len(d) > 0 {
				t.Errorf("install.sh from %s changed the %s dir: %v", c.path, what, d)
			}
		}
		if logNow, err := os.ReadFile(svcLog); err != nil || !bytes.HasPrefix(logNow, logBefore) {
			t.Errorf("install.sh from %s truncated or replaced %s (%v)", c.path, svcLog, err)
		}
		if srv.pid(t) != oldPID || syscall.Kill(oldPID, 0) != nil {
			t.Errorf("install.sh from %s touched the running k1s (PID %d)", c.path, oldPID)
		}
	}

	// 5. Upgrade to the build under test: same data, same containers.
	out, err = srv.run("dash", url+"/current", []string{"INSTALL_K1S_FORCE_INIT=none"}, srvArgs...)
	if err != nil {
		t.Fatalf("install.sh (upgrade): %v\n%s", err, out)
	}
	t.Logf("install.sh (upgrade):\n%s", out)
	mustContain(t, out, fmt.Sprintf("stopping the running k1s (PID %d)", oldPID), "install.sh (upgrade)")
	if srv.pid(t) == oldPID {
		t.Fatalf("upgrade did not restart k1s (PID %d)", oldPID)
	}
	if v, err := execOutEnv([]string{"K1S_DATA_DIR=" + srv.Data}, filepath.Join(srv.Bin, "k1s"), "--version"); err != nil || !strings.Contains(v, curVersion) {
		t.Fatalf("upgraded k1s --version: %q %v; want %s", v, err, curVersion)
	}
	if err := waitUntil(func() bool { return strings.Count(srv.log(), "k1s is ready") == 2 }, 3*time.Minute); err != nil {
		t.Fatalf("upgraded server not ready: %v\n%s", err, tailString(srv.log(), 30))
	}
	waitNodeReady(t, kc, srvNode)
	if out, err := harness.Kubectl(kc, "get", "configmap", "keep", "-o", "jsonpath={.data.k}"); err != nil || out != "v" {
		t.Errorf("ConfigMap after the upgrade: %q %v", out, err)
	}
	// The kubelet reports the container again after its restart; it must be the same one.
	eventually(t, time.Minute, "pod keep unchanged", func() error {
		after, err := harness.Kubectl(kc, "get", "pod", "keep", "-o", jp)
		if err != nil || after != podBefore {
			return fmt.Errorf("pod now %q (%v), before the upgrade %q", after, err, podBefore)
		}
		return nil
	})
	waitNodeReady(t, kc, h.Name)
	waitDeployments(t, kc, "coredns", "k1s-ingress")

	// 6. Uninstall: the agent (in its namespace), then the server.
	_, _ = harness.Kubectl(kc, "delete", "pod", "keep", "--wait=true", "--timeout=60s")
	for _, in := range []*install{agt, srv} {
		out, err := in.uninstall()
		if err != nil {
			t.Fatalf("%s-uninstall.sh: %v\n%s", in.name, err, out)
		}
		t.Logf("%s-uninstall.sh:\n%s", in.name, out)
	}
	after := hostState(t, h.Namespace, []string{base}, watched)
	gone, added := diffLists(before, after)
	if len(gone) > 0 || len(added) > 0 {
		t.Errorf("the host after uninstall differs from before the install:\ngone:\n  %s\nadded:\n  %s",
			strings.Join(gone, "\n  "), strings.Join(added, "\n  "))
	}
	t.Logf("host state compared: %d entries", len(before))
}

func waitUntil(f func() bool, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if f() {
			return nil
		}
		time.Sleep(250 * time.Millisecond)
	}
	return fmt.Errorf("not within %s", timeout)
}

// cgroupDirsOf is path in every cgroup v1 hierarchy.
func cgroupDirsOf(path string) []string {
	var out []string
	entries, _ := os.ReadDir("/sys/fs/cgroup")
	for _, e := range entries {
		full := filepath.Join("/sys/fs/cgroup", e.Name())
		if fi, err := os.Lstat(full); err == nil && fi.IsDir() {
			out = append(out, filepath.Join(full, path))
		}
	}
	return out
}

// TestInstallServiceFiles: with systemd forced, install.sh writes
// k1s.service / k1s-agent.service that `systemd-analyze verify` accepts,
// with Type=notify and the token only in the 0600 env file; with OpenRC
// forced (and the binary already in place: INSTALL_K1S_SKIP_DOWNLOAD), an
// init script that `sh -n` accepts and a 0600 conf file. Nothing is
// enabled or started; the uninstall scripts remove every file again. They
// run in a lab host's network namespace, so k1s-killall.sh (which they
// run) cannot touch the host's network.
func TestInstallServiceFiles(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Fatalf("systemd-analyze is needed (Debian's systemd package): %v", err)
	}
	lab := harness.NewLab(t)
	h := lab.AddHost(t, "units")
	base := t.TempDir()
	root := filepath.Join(base, "www")
	exe, err := os.ReadFile(harness.Bin())
	if err != nil {
		t.Fatal(err)
	}
	makeDist(t, filepath.Join(root, "current"), exe)
	exe = nil
	url := serveDists(t, root, lab.GatewayIP) + "/current"
	const secret = "K10" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef::server:s3cr3t-install-test"
	skip := []string{"INSTALL_K1S_SKIP_START=true", "INSTALL_K1S_SKIP_ENABLE=true"}

	cases := []struct {
		name, init, unit, env string
		extra                 []string
		args                  []string
	}{
		{"server-systemd", "systemd", "k1s.service", "k1s.service.env", nil, []string{"server", "--disable=ingress"}},
		{"agent-systemd", "systemd", "k1s-agent.service", "k1s-agent.service.env",
			[]string{"K1S_URL=https://192.0.2.1:6443", "K1S_TOKEN=" + secret}, []string{"--node-label=a=b"}},
		{"server-openrc", "openrc", "k1s", "k1s.conf", []string{"K1S_TOKEN=" + secret}, []string{"server"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := newInstall(filepath.Join(base, c.name), strings.TrimSuffix(c.unit, ".service"), h.NetPrefix())
			if c.init == "openrc" {
				in.name = "k1s"
			}
			in.cleanup(t, "")
			env := append(append([]string{"INSTALL_K1S_FORCE_INIT=" + c.init}, skip...), c.extra...)
			out, err := in.run("dash", url, env, append(c.args, in.flags()...)...)
			if err != nil {
				t.Fatalf("install.sh: %v\n%s", err, out)
			}
			if c.init == "openrc" { // again, air-gapped: the binary is in place now
				out, err = in.run("dash", url, append(env, "INSTALL_K1S_SKIP_DOWNLOAD=true"), append(c.args, in.flags()...)...)
				if err != nil {
					t.Fatalf("install.sh (INSTALL_K1S_SKIP_DOWNLOAD): %v\n%s", err, out)
				}
				if strings.Contains(out, "downloading") {
					t.Errorf("INSTALL_K1S_SKIP_DOWNLOAD still downloaded:\n%s", out)
				}
			}
			unit := filepath.Join(in.Svc, c.unit)
			body, err := os.ReadFile(unit)
			if err != nil {
				t.Fatal(err)
			}
			if c.init == "systemd" {
				cmd := exec.Command("systemd-analyze", "verify", unit)
				if vout, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(vout)) > 0 {
					t.Errorf("systemd-analyze verify %s: %v\n%s\n%s", unit, err, vout, body)
				}
				for _, want := range []string{"Type=notify", "Delegate=yes", "KillMode=process", "Restart=always", "LimitNOFILE=", "ExecStartPre=", "EnvironmentFile=-" + filepath.Join(in.Svc, c.env)} {
					mustContain(t, string(body), want, unit)
				}
			} else {
				if out, err := exec.Command("sh", "-n", unit).CombinedOutput(); err != nil {
					t.Errorf("sh -n %s: %v\n%s", unit, err, out)
				}
				for _, want := range []string{"#!/sbin/openrc-run", "supervisor=supervise-daemon", `command="` + filepath.Join(in.Bin, "k1s") + `"`} {
					mustContain(t, string(body), want, unit)
				}
			}
			if strings.Contains(string(body), "s3cr3t") {
				t.Errorf("the token is in %s:\n%s", unit, body)
			}
			if fi, err := os.Stat(filepath.Join(in.Svc, c.env)); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("env file %s: %v %v, want mode 0600", c.env, fi.Mode(), err)
			}
			if len(c.extra) > 0 {
				envBody, _ := os.ReadFile(filepath.Join(in.Svc, c.env))
				mustContain(t, string(envBody), "K1S_TOKEN", c.env)
			}
			if out, err := in.uninstall(); err != nil {
				t.Fatalf("uninstall: %v\n%s", err, out)
			}
			for _, d := range []string{in.Bin, in.Svc} {
				if entries, _ := os.ReadDir(d); len(entries) > 0 {
					t.Errorf("uninstall left %d files in %s (%s…)", len(entries), d, entries[0].Name())
				}
			}
			for _, d := range []string{in.Data, in.Etc} {
				if _, err := os.Stat(d); err == nil {
					t.Errorf("uninstall left %s", d)
				}
			}
		})
	}
}

// TestSdNotify: with NOTIFY_SOCKET set, `k1s server` sends READY=1 once it
// is ready (the admin kubeconfig works the moment it arrives) and
// STOPPING=1 on SIGTERM; nothing else before READY=1.
func TestSdNotify(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify.sock")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	if err := os.MkdirAll(filepath.Join(dir, "server"), 0o700); err != nil {
		t.Fatal(err)
	}
	s, err := harness.NewServer(filepath.Join(dir, "server"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop(60 * time.Second) })
	buf := make([]byte, 256)
	_ = l.SetReadDeadline(time.Now().Add(90 * time.Second))
	n, err := l.Read(buf)
	if err != nil {
		t.Fatalf("no notification within 90s: %v\n%s", err, s.Tail(20))
	}
	if got := string(buf[:n]); got != "READY=1" {
		t.Fatalf("first notification %q, want READY=1", got)
	}
	// Ready means usable: the admin kubeconfig works right now.
	if out, err := harness.Kubectl(s.Kubeconfig, "get", "--raw", "/readyz"); err != nil || strings.TrimSpace(out) != "ok" {
		t.Fatalf("at READY=1, kubectl get --raw /readyz: %q %v", out, err)
	}
	mustContain(t, s.Log(), "k1s is ready", "server log at READY=1")
	if err := syscall.Kill(s.PID(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = l.SetReadDeadline(time.Now().Add(30 * time.Second))
	n, err = l.Read(buf)
	if err != nil {
		t.Fatalf("no notification within 30s of SIGTERM: %v", err)
	}
	if got := string(buf[:n]); got != "STOPPING=1" {
		t.Fatalf("notification after SIGTERM %q, want STOPPING=1", got)
	}
	// One SIGTERM is a clean shutdown: k1s exits 0 (a second signal would not be).
	var exitErr error
	if err := waitUntil(func() bool { done, err := s.Exited(); exitErr = err; return done }, time.Minute); err != nil {
		t.Fatalf("server did not exit after SIGTERM: %v", err)
	}
	if exitErr != nil {
		t.Errorf("server exit after SIGTERM: %v\n%s", exitErr, s.Tail(20))
	}
}

// TestInstallRefusesBadSettings: settings install.sh cannot honour stop it
// before it downloads or changes anything, with a message naming the fix.
func TestInstallRefusesBadSettings(t *testing.T) {
	base := t.TempDir()
	in := newInstall(filepath.Join(base, "x"), "k1s", nil)
	script := filepath.Join(checkout(), "scripts", "install.sh")
	for _, c := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"agent without token", []string{"K1S_URL=https://192.0.2.1:6443"}, nil, "an agent needs K1S_TOKEN or K1S_TOKEN_FILE"},
		{"token on the command line", nil, []string{"server", "--token", "abc"}, "do not pass the token as a flag"},
		{"token file missing", []string{"K1S_URL=https://192.0.2.1:6443", "K1S_TOKEN_FILE=" + filepath.Join(base, "absent")}, nil, "cannot be read"},
		{"unknown init", []string{"INSTALL_K1S_FORCE_INIT=upstart"}, nil, "use systemd, openrc or none"},
		{"relative bin dir", []string{"INSTALL_K1S_BIN_DIR=bin"}, nil, "must be an absolute path"},
		{"server with K1S_URL", []string{"K1S_URL=https://192.0.2.1:6443", "K1S_TOKEN=x"}, []string{"server"}, "K1S_URL is set but the command is 'server'"},
		{"skip download without binary", []string{"INSTALL_K1S_SKIP_DOWNLOAD=true"}, nil, "k1s is missing or not executable"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command("dash", append([]string{script}, c.args...)...)
			cmd.Env = harness.Env(append(append(in.env("http://192.0.2.1:1"), "INSTALL_K1S_FORCE_INIT=none"), c.env...)...)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("install.sh succeeded, want a refusal:\n%s", out)
			}
			mustContain(t, string(out), c.want, "install.sh output")
			mustContain(t, string(out), "nothing was changed", "install.sh output")
			if strings.Contains(string(out), "downloading") {
				t.Errorf("install.sh downloaded before refusing:\n%s", out)
			}
			if entries, _ := os.ReadDir(base); len(entries) > 0 {
				t.Errorf("install.sh created %s in %s", entries[0].Name(), base)
			}
		})
	}
}

// TestInstallReleaseURL: without INSTALL_K1S_ARTIFACT_URL the files come
// from the GitHub release of INSTALL_K1S_VERSION, or the latest; when that
// cannot be fetched (no such release, or no network) nothing changes.
func TestInstallReleaseURL(t *testing.T) {
	base := t.TempDir()
	in := newInstall(filepath.Join(base, "x"), "k1s", nil)
	script := filepath.Join(checkout(), "scripts", "install.sh")
	for version, want := range map[string]string{
		"v0.0.0-no-such-release": "https://github.com/k1s-io/k1s/releases/download/v0.0.0-no-such-release/sha256sum-amd64.txt",
		"":                       "https://github.com/k1s-io/k1s/releases/latest/download/sha256sum-amd64.txt",
	} {
		// Should a real release answer, it lands in temp dirs and is not started.
		cmd := exec.Command("dash", append([]string{script, "server"}, in.flags()...)...)
		cmd.Env = harness.Env(append(in.env(""), "INSTALL_K1S_FORCE_INIT=none", "INSTALL_K1S_SKIP_START=true", "INSTALL_K1S_VERSION="+version)...)
		out, err := cmd.CombinedOutput()
		if version != "" && err == nil {
			t.Fatalf("install.sh of a release that does not exist succeeded:\n%s", out)
		}
		mustContain(t, string(out), "downloading "+want, "install.sh output")
		if err != nil {
			mustContain(t, string(out), "download of "+want+" failed", "install.sh output")
			mustContain(t, string(out), "nothing was changed", "install.sh output")
			if entries, _ := os.ReadDir(base); len(entries) > 0 {
				t.Errorf("install.sh created %s in %s", entries[0].Name(), base)
			}
		}
	}
}

// svcWithoutLog is snapshot of a service dir without the running k1s's log.
func svcWithoutLog(t *testing.T, dir string) map[string]string {
	snap := snapshot(t, dir)
	delete(snap, "k1s.log")
	return snap
}
