// Package harness starts the real k1s binary for end-to-end tests and
// benchmarks: each server gets its own temp dir, data dir, kubeconfig and
// free ports, and is stopped by the PID it was started with.
package harness

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Bin is the k1s binary under test: $K1S_BIN, or bin/k1s of this checkout.
func Bin() string {
	if b := os.Getenv("K1S_BIN"); b != "" {
		return b
	}
	if d := checkout(); d != "" {
		return filepath.Join(d, "bin", "k1s")
	}
	return "k1s"
}

// checkout is the folder of the go.mod above the working directory, "" if none.
func checkout() string {
	wd, _ := os.Getwd()
	for d := wd; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
	}
	return ""
}

// KillallScript is scripts/k1s-killall.sh of the checkout whose bin/ holds
// Bin, or, for a binary elsewhere (a release build), of this checkout.
func KillallScript() string {
	script := filepath.Join(filepath.Dir(filepath.Dir(Bin())), "scripts", "k1s-killall.sh")
	if _, err := os.Stat(script); err != nil {
		if d := checkout(); d != "" {
			return filepath.Join(d, "scripts", "k1s-killall.sh")
		}
	}
	return script
}

// BundleName is the air-gap image bundle `make images` writes next to bin/k1s.
const BundleName = "k1s-airgap-images-amd64.tar.zst"

// Bundle is the add-on image bundle of the binary under test: $K1S_BUNDLE,
// or the bundle next to Bin.
func Bundle() string {
	if b := os.Getenv("K1S_BUNDLE"); b != "" {
		return b
	}
	return filepath.Join(filepath.Dir(Bin()), BundleName)
}

// FreePort returns a TCP port that is free on every address (see FreePorts).
func FreePort() (int, error) {
	p, err := FreePorts(1)
	if err != nil {
		return 0, err
	}
	return p[0], nil
}

// FreePorts returns n different TCP ports, each free on every address when
// picked. Asking the kernel for port 0 n times can give one port twice (an
// apiserver and a scheduler on one port), and its answers come from the
// ephemeral range, where any outgoing connection may take the port before
// k1s binds it. So the ports come from 20000–29999, below the ephemeral
// range and the NodePort range (30000–32767), and all n are held until the
// last one is found.
func FreePorts(n int) ([]int, error) {
	lo, hi := 20000, 30000
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if eph, err := strconv.Atoi(f[0]); err == nil && eph < hi {
				hi = eph
			}
		}
	}
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	var ports []int
	if hi-lo < 1000 { // an unusual ephemeral range: let the kernel choose
		for len(ports) < n {
			l, err := net.Listen("tcp", ":0")
			if err != nil {
				return nil, err
			}
			held = append(held, l)
			ports = append(ports, l.Addr().(*net.TCPAddr).Port)
		}
		return ports, nil
	}
	for tries := 0; len(ports) < n; tries++ {
		if tries == 2000 {
			return nil, fmt.Errorf("no %d free TCP ports in %d–%d", n, lo, hi-1)
		}
		p := lo + rand.IntN(hi-lo)
		l, err := net.Listen("tcp", ":"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		held = append(held, l)
		ports = append(ports, p)
	}
	return ports, nil
}

// Env is the environment for k1s children: the caller's, minus any K1S_*
// variable of the host that would change what the test asked for.
func Env(extra ...string) []string {
	var env []string
	for _, e := range os.Environ() {
		if strings.HasPrefix(e, "K1S_") || strings.HasPrefix(e, "KUBECONFIG=") {
			continue
		}
		env = append(env, e)
	}
	return append(env, extra...)
}

// Server is one running `k1s server`.
type Server struct {
	Dir        string // everything of this server lives below Dir
	DataDir    string
	Kubeconfig string
	RunDir     string // set for servers with a node
	Port       int
	LogPath    string
	Args       []string
	// Prefix runs the binary through another command (e.g. `ip netns exec NS`).
	Prefix []string
	// CgroupRoot is the kubelet's --cgroup-root, when the test gave one.
	CgroupRoot string
	// Host is where the test reaches the apiserver: 127.0.0.1 unless the
	// server runs in a lab host (PlaceIn).
	Host string

	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// NewServer prepares (but does not start) a control-plane-only server in
// dir with free ports. extra flags are appended to the defaults.
func NewServer(dir string, extra ...string) (*Server, error) {
	return newServer(dir, false, extra...)
}

// NewNodeServer is NewServer with the server's own node enabled and a run
// dir of its own below dir.
func NewNodeServer(dir string, extra ...string) (*Server, error) {
	return newServer(dir, true, extra...)
}

func newServer(dir string, node bool, extra ...string) (*Server, error) {
	ports, err := FreePorts(3)
	if err != nil {
		return nil, err
	}
	s := &Server{
		Dir:        dir,
		DataDir:    filepath.Join(dir, "data"),
		Kubeconfig: filepath.Join(dir, "kubeconfig.yaml"),
		Port:       ports[0],
	}
	// An empty config file keeps the host's /etc/k1s/config.yaml out of the test.
	cfgFile := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgFile, nil, 0o600); err != nil {
		return nil, err
	}
	s.Args = append([]string{"server",
		"--config", cfgFile,
		"--data-dir", s.DataDir,
		"--write-kubeconfig", s.Kubeconfig,
		"--https-listen-port", strconv.Itoa(ports[0]),
		"--kube-scheduler-port", strconv.Itoa(ports[1]),
		"--kube-controller-manager-port", strconv.Itoa(ports[2]),
	}, extra...)
	if node {
		s.RunDir = filepath.Join(dir, "run")
		s.Args = append(s.Args, "--run-dir", s.RunDir, "--kubelet-arg=root-dir="+s.KubeletDir())
		s.Args = withDefaultRegistry(s.Args, dir)
	} else {
		s.Args = append(s.Args, "--disable-agent")
	}
	return s, nil
}

// NewAgent prepares (but does not start) `k1s agent` joining serverURL
// with token, with its data, run and kubelet dirs below dir, and Pod
// cgroups under a cgroup root of its own so that it and the server's node
// do not treat each other's Pods as orphans. prefix, when given, runs it
// through another command (a network namespace).
func NewAgent(dir, serverURL, token string, prefix []string, extra ...string) (*Server, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	cfgFile := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgFile, nil, 0o600); err != nil {
		return nil, err
	}
	a := &Server{Dir: dir, DataDir: filepath.Join(dir, "data"), RunDir: filepath.Join(dir, "run"), Prefix: prefix,
		CgroupRoot: "/k1s-test-" + filepath.Base(dir)}
	// The kubelet requires its cgroup root to exist in every hierarchy.
	for _, d := range cgroupDirs(a.CgroupRoot) {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	a.Args = append([]string{"agent",
		"--config", cfgFile,
		"--server", serverURL,
		"--token", token,
		"--data-dir", a.DataDir,
		"--run-dir", a.RunDir,
		"--kubelet-arg=root-dir=" + a.KubeletDir(),
		"--kubelet-arg=cgroup-root=" + a.CgroupRoot,
	}, extra...)
	a.Args = withDefaultRegistry(a.Args, dir)
	return a, nil
}

// cgroupDirs is a cgroup path in every mounted hierarchy (v1) or in the
// unified one (v2).
func cgroupDirs(path string) []string {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return []string{filepath.Join("/sys/fs/cgroup", path)}
	}
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

// Start launches the server; its output goes to a numbered log file in Dir.
func (s *Server) Start() error {
	for i := 0; ; i++ {
		s.LogPath = filepath.Join(s.Dir, fmt.Sprintf("k1s-%d.log", i))
		if _, err := os.Stat(s.LogPath); errors.Is(err, os.ErrNotExist) {
			break
		}
	}
	log, err := os.Create(s.LogPath)
	if err != nil {
		return err
	}
	argv := append(append(append([]string(nil), s.Prefix...), Bin()), s.Args...)
	s.cmd = exec.Command(argv[0], argv[1:]...)
	s.cmd.Env = Env()
	s.cmd.Stdout, s.cmd.Stderr = log, log
	if err := s.cmd.Start(); err != nil {
		log.Close()
		return err
	}
	s.done = make(chan struct{})
	go func() {
		s.err = s.cmd.Wait()
		log.Close()
		close(s.done)
	}()
	return nil
}

// PID of the running server process.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Exited reports whether the process has ended, and how.
func (s *Server) Exited() (bool, error) {
	select {
	case <-s.done:
		return true, s.err
	default:
		return false, nil
	}
}

// WaitReady polls /readyz as the admin until it answers ok.
func (s *Server) WaitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if done, err := s.Exited(); done {
			return fmt.Errorf("k1s server exited before it was ready (%v); log %s:\n%s\nerrors and warnings:\n%s", err, s.LogPath, s.Tail(30), s.Problems(10))
		}
		code, body, err := s.Get("/readyz", true)
		if err == nil && code == 200 && body == "ok" {
			return nil
		}
		last = fmt.Errorf("HTTP %d %q %v", code, body, err)
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("not ready within %s (last: %v); log tail:\n%s", timeout, last, s.Tail(30))
}

// Get requests path from the apiserver, as the admin or anonymously.
func (s *Server) Get(path string, admin bool) (int, string, error) {
	return s.Request(path, admin, "")
}

// Request requests path with the admin certificate, a bearer token, or nothing.
func (s *Server) Request(path string, admin bool, bearer string) (int, string, error) {
	tc, err := s.tlsConfig(admin)
	if err != nil {
		return 0, "", err
	}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true}}
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("https://%s%s", s.Addr(), path), nil)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, strings.TrimSpace(b.String()), nil
}

func (s *Server) tlsConfig(admin bool) (*tls.Config, error) {
	tlsDir := filepath.Join(s.DataDir, "server", "tls")
	ca, err := os.ReadFile(filepath.Join(tlsDir, "server-ca.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	tc := &tls.Config{RootCAs: pool}
	if admin {
		cert, err := tls.LoadX509KeyPair(filepath.Join(tlsDir, "client-admin.crt"), filepath.Join(tlsDir, "client-admin.key"))
		if err != nil {
			return nil, err
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// Kubectl runs `k1s kubectl` against this server and returns its combined output.
func (s *Server) Kubectl(args ...string) (string, error) {
	if s.Host != "" {
		args = append([]string{"--server", "https://" + s.Addr()}, args...)
	}
	return Kubectl(s.Kubeconfig, args...)
}

// Addr is the apiserver's host:port as the test reaches it.
func (s *Server) Addr() string {
	h := s.Host
	if h == "" {
		h = "127.0.0.1"
	}
	return net.JoinHostPort(h, strconv.Itoa(s.Port))
}

// PlaceIn makes the server (not yet started) run in lab host h: it
// advertises h's address, its certificate names it, and the test reaches
// it there.
func (s *Server) PlaceIn(h *NetHost) {
	s.Prefix = h.NetPrefix()
	s.Host = h.IP
	s.Args = append(s.Args, "--advertise-address", h.IP, "--tls-san", h.IP, "--node-ip", h.IP)
}

// Kubectl runs `k1s kubectl --kubeconfig kc args…`.
func Kubectl(kc string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, Bin(), append([]string{"kubectl", "--kubeconfig", kc}, args...)...)
	cmd.Env = Env()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Stop sends SIGTERM and waits for a clean exit; after timeout it kills
// the process (and reports that as an error). A server that had already
// exited is left as it is: Exited tells how it ended.
func (s *Server) Stop(timeout time.Duration) error {
	if s.cmd == nil || s.cmd.Process == nil {
		return nil
	}
	if done, _ := s.Exited(); done {
		return nil
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		return s.err
	case <-time.After(timeout):
		_ = s.cmd.Process.Kill()
		<-s.done
		return fmt.Errorf("k1s server (PID %d) did not stop within %s after SIGTERM; killed", s.PID(), timeout)
	}
}

// WaitLog waits until the current log contains substr.
func (s *Server) WaitLog(substr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(s.Log(), substr) {
			return nil
		}
		if done, err := s.Exited(); done {
			return fmt.Errorf("k1s server exited (%v) before logging %q; log tail:\n%s\nerrors and warnings:\n%s", err, substr, s.Tail(30), s.Problems(10))
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%q not logged within %s; log tail:\n%s", substr, timeout, s.Tail(30))
}

// ContainerdSocket is the node's containerd socket.
func (s *Server) ContainerdSocket() string {
	return filepath.Join(s.RunDir, "containerd", "containerd.sock")
}

// KubeletDir is the kubelet root dir the harness gives node servers.
func (s *Server) KubeletDir() string { return filepath.Join(s.Dir, "kubelet") }

// Killall runs scripts/k1s-killall.sh for this server's directories: it
// stops the containers, shims and containerd the server left and removes
// its mounts, bridge, iptables chains and Pod cgroups.
func (s *Server) Killall() (string, error) {
	argv := append(append([]string(nil), s.Prefix...), "bash", KillallScript())
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = Env("K1S_DATA_DIR="+s.DataDir, "K1S_RUN_DIR="+s.RunDir, "K1S_KUBELET_DIR="+s.KubeletDir(), "K1S_CGROUP_ROOT="+s.CgroupRoot)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// HostLeftovers lists node state still on the host: mounts below Dir, the
// Pod bridge, flannel's device and routes, KUBE-/CNI-/FLANNEL-/K1S-NP- iptables
// chains and nftables tables, Pod cgroups.
func HostLeftovers(dir string) []string {
	var left []string
	for _, m := range MountsBelow(dir) {
		left = append(left, "mount "+m)
	}
	for _, dev := range []string{"k1s0", "flannel.1"} {
		if _, err := os.Stat("/sys/class/net/" + dev); err == nil {
			left = append(left, "device "+dev)
		}
	}
	if out, err := exec.Command("ip", "route", "show", "root", "10.42.0.0/16").Output(); err == nil && len(strings.TrimSpace(string(out))) > 0 {
		left = append(left, "routes "+strings.TrimSpace(string(out)))
	}
	if out, err := exec.Command("iptables-save").Output(); err == nil {
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, ":KUBE-") || strings.HasPrefix(l, ":CNI-") || strings.HasPrefix(l, ":FLANNEL-") || strings.HasPrefix(l, ":K1S-NP-") {
				left = append(left, "iptables chain "+strings.Fields(l)[0][1:])
			}
		}
	}
	if m, _ := filepath.Glob("/sys/fs/cgroup/*/kubepods"); len(m) > 0 {
		left = append(left, "cgroups "+strings.Join(m, " "))
	}
	if out, err := exec.Command("nft", "list", "tables").Output(); err == nil {
		for _, t := range []string{"kube-proxy", "flannel-ipv4"} {
			if strings.Contains(string(out), t) {
				left = append(left, "nftables table "+t)
			}
		}
	}
	if m, _ := filepath.Glob("/sys/fs/cgroup/*/k1s-test-*"); len(m) > 0 {
		left = append(left, "cgroups "+strings.Join(m, " "))
	}
	return left
}

// MountsBelow lists mount points below dir, deepest first.
func MountsBelow(dir string) []string {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && (f[1] == dir || strings.HasPrefix(f[1], dir+"/")) {
			out = append(out, f[1])
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// Tail returns the last n lines of the current log.
func (s *Server) Tail(n int) string {
	return tail(s.LogPath, n)
}

// ComponentTail returns the last n lines of the components' log.
func (s *Server) ComponentTail(n int) string {
	return tail(s.ComponentLogPath(), n)
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Problems returns the first n error, fatal and warning lines of the
// current log, and the error k1s exited with: the cause of a failed start
// is often far from the log's end.
func (s *Server) Problems(n int) string {
	var out []string
	for _, l := range strings.Split(s.Log(), "\n") {
		// "k1s: …" is the error k1s exits with.
		if strings.HasPrefix(l, "k1s: ") || strings.Contains(l, "level=error") || strings.Contains(l, "level=fatal") || strings.Contains(l, "level=warning") {
			out = append(out, l)
			if len(out) == n {
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// Unfinished names the start-up steps of the current log that started but
// never logged ready: where a start that hung was stuck.
func (s *Server) Unfinished() string {
	var started []string
	done := map[string]bool{}
	for _, l := range strings.Split(s.Log(), "\n") {
		_, rest, ok := strings.Cut(l, `msg="step `)
		if !ok {
			continue
		}
		name, state, _ := strings.Cut(rest, ": ")
		switch {
		case strings.HasPrefix(state, "starting"):
			started = append(started, name)
		case strings.HasPrefix(state, "ready"):
			done[name] = true
		}
	}
	var out []string
	for _, n := range started {
		if !done[n] {
			out = append(out, n)
		}
	}
	return strings.Join(out, ", ")
}

// Log returns the whole current log.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.LogPath)
	return string(b)
}

// ComponentLogPath is the log file k1s writes under its data dir: the
// embedded components' klog output in full and k1s's own lines.
func (s *Server) ComponentLogPath() string {
	return filepath.Join(s.DataDir, "logs", "components.log")
}

// ComponentLog returns the current components' log (not its rotated copies).
func (s *Server) ComponentLog() string {
	b, _ := os.ReadFile(s.ComponentLogPath())
	return string(b)
}

// Run runs the k1s binary to completion with a timeout and returns its
// exit code and combined output.
func Run(timeout time.Duration, args ...string) (int, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, Bin(), args...)
	cmd.Env = Env()
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return -1, string(out), fmt.Errorf("k1s %s did not finish within %s", strings.Join(args, " "), timeout)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), string(out), nil
	}
	return 0, string(out), err
}

// RemoveCgroupRoot removes the (empty) cgroup root NewAgent made, for an
// agent that never ran Pods.
func (s *Server) RemoveCgroupRoot() {
	if s.CgroupRoot == "" {
		return
	}
	for _, d := range cgroupDirs(s.CgroupRoot) {
		_ = os.Remove(d)
	}
}

// withDefaultRegistry keeps the host's /etc/k1s/registries.yaml out of a
// test node unless the test names its own.
func withDefaultRegistry(args []string, dir string) []string {
	for _, a := range args {
		if strings.HasPrefix(a, "--private-registry") {
			return args
		}
	}
	return append(args, "--private-registry", filepath.Join(dir, "registries.yaml"))
}
