package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/coreos/go-iptables/iptables"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/k1s-io/k1s/internal/atomicfile"
)

// CreateOptions are the inputs of Create besides the cluster.yaml.
type CreateOptions struct {
	Name       string
	Config     *Config
	Images     []string      // image archives imported on every node at start
	Bundle     string        // the air-gap bundle ("" to look next to the executable)
	Kubeconfig string        // where to write the kubeconfig ("": ~/.kube/k1s-NAME.yaml)
	Merge      bool          // merge into Kubeconfig instead of writing a file of its own
	Wait       time.Duration // 0: do not wait for Ready nodes and DNS
	Exe        string        // the k1s executable the nodes run
	Out        io.Writer
}

// Preflight checks what create and delete need, naming what is missing.
func Preflight() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("k1s cluster needs root (it creates network namespaces, a bridge and iptables rules); run it with sudo")
	}
	for _, tool := range []struct{ name, pkg string }{{"ip", "iproute2"}, {"nsenter", "util-linux"}, {"iptables", "iptables"}} {
		if _, err := exec.LookPath(tool.name); err != nil {
			return fmt.Errorf("k1s cluster needs the %s command, which is not in PATH: install it (Debian: apt-get install -y %s)", tool.name, tool.pkg)
		}
	}
	return nil
}

// BundlePath finds the air-gap bundle for this architecture: next to the
// executable (a release or a build tree), else in the default data dir's
// images folder (where install.sh puts it).
func BundlePath(exe string) string {
	name := "k1s-airgap-images-" + runtime.GOARCH + ".tar.zst"
	for _, p := range []string{filepath.Join(filepath.Dir(exe), name), filepath.Join("/var/lib/k1s/agent/images", name)} {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p
		}
	}
	return ""
}

// Create makes a cluster and starts its nodes; it returns while they keep
// running. On an error the cluster is left as it is (logs included) and
// the error says to delete it.
func Create(ctx context.Context, o CreateOptions) (err error) {
	if !NameRE.MatchString(o.Name) {
		return fmt.Errorf("cluster name %q: use lowercase letters, digits and '-', at most 24 characters", o.Name)
	}
	if err := Preflight(); err != nil {
		return err
	}
	for _, img := range o.Images {
		if fi, err := os.Stat(img); err != nil || !fi.Mode().IsRegular() {
			return fmt.Errorf("--image %s: not a readable file", img)
		} else if !isImageArchive(img) {
			return fmt.Errorf("--image %s: want an image archive named *.tar, *.tar.gz, *.tgz or *.tar.zst", img)
		}
	}
	bundle := o.Bundle
	if bundle == "" {
		bundle = BundlePath(o.Exe)
	}
	if bundle == "" {
		fmt.Fprintf(o.Out, "warning: no %s next to %s or in /var/lib/k1s/agent/images: CoreDNS and the ingress cannot start without a registry (give --airgap-bundle)\n",
			"k1s-airgap-images-"+runtime.GOARCH+".tar.zst", o.Exe)
	}
	kc, err := kubeconfigPath(o.Name, o.Kubeconfig, o.Merge)
	if err != nil {
		return err
	}

	unlock, err := lockRoot()
	if err != nil {
		return err
	}
	defer func() {
		if unlock != nil {
			unlock()
		}
	}()
	dir := Dir(o.Name)
	if _, err := os.Stat(dir); err == nil {
		return fmt.Errorf("cluster %q exists already (%s): delete it first with `k1s cluster delete %s`, or choose another name", o.Name, dir, o.Name)
	}
	used, err := UsedNets()
	if err != nil {
		return err
	}
	subnet, err := ChooseSubnet(o.Config.Subnet, used)
	if err != nil {
		return err
	}
	prefixes := map[string]bool{}
	names, _ := Names()
	for _, n := range names {
		if s, err := LoadState(n); err == nil {
			prefixes[s.Plan.Prefix] = true
		}
	}
	prefix, err := PrefixFor(o.Name, func(p string) bool { return prefixes[p] || len(Leftovers(p)) > 0 })
	if err != nil {
		return err
	}
	plan, err := NewPlan(o.Name, dir, prefix, subnet, o.Config)
	if err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	st := &State{Plan: *plan, Created: time.Now().UTC(), Phase: "creating", Procs: map[string]Proc{},
		Kubeconfig: kc, Merged: o.Merge, MadeNetnsMount: !isMountPoint("/run/netns"), path: filepath.Join(dir, "state.json")}
	if err := st.Save(); err != nil {
		os.RemoveAll(dir)
		return err
	}
	if st.MadeNetnsMount {
		if err := os.WriteFile(filepath.Join(StateRoot, netnsMarker), nil, 0o600); err != nil {
			return err
		}
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w\ncluster %s is left as it is (node logs: %s/nodes/*/k1s.log); remove it with `k1s cluster delete %s`", err, o.Name, dir, o.Name)
		}
	}()
	fmt.Fprintf(o.Out, "cluster %s: subnet %s, bridge %s, %d nodes\n", o.Name, plan.Subnet, plan.Bridge, len(plan.Nodes))

	// The host side: bridge, rules, a namespace per node. The state file
	// names all of it (by prefix) already.
	if err := makeBridge(plan); err != nil {
		return err
	}
	ipt, err := iptables.New(iptables.Timeout(30))
	if err != nil {
		return fmt.Errorf("iptables: %w", err)
	}
	pr, err := portRules(plan)
	if err != nil {
		return err
	}
	// Each rule goes first in its chain, so they are inserted last to
	// first to keep their order.
	rules := append(hostRules(plan), pr...)
	for i := len(rules) - 1; i >= 0; i-- {
		r := rules[i]
		if err := st.record(func(s *State) { s.Rules = append(s.Rules, r) }); err != nil {
			return err
		}
		if err := insertRule(ipt, r); err != nil {
			return err
		}
	}
	for i := range plan.Nodes {
		if err := makeNodeNet(plan, &plan.Nodes[i]); err != nil {
			return err
		}
	}

	// Files: the token, each node's dirs, images and cgroup root.
	secret := make([]byte, 24)
	if _, err := rand.Read(secret); err != nil {
		return err
	}
	if err := os.WriteFile(plan.TokenFile, []byte(hex.EncodeToString(secret)+"\n"), 0o600); err != nil {
		return err
	}
	var staged []string
	if bundle != "" {
		staged = append(staged, bundle)
	}
	if len(o.Images) > 0 {
		imgDir := filepath.Join(dir, "images")
		if err := os.MkdirAll(imgDir, 0o700); err != nil {
			return err
		}
		// Copied once: the nodes import at start, maybe after the caller removed the file.
		for _, img := range o.Images {
			dst := filepath.Join(imgDir, filepath.Base(img))
			if err := copyFile(img, dst); err != nil {
				return fmt.Errorf("--image %s: %w", img, err)
			}
			staged = append(staged, dst)
		}
	}
	for i := range plan.Nodes {
		n := &plan.Nodes[i]
		imgs := filepath.Join(n.DataDir, "agent", "images")
		if err := os.MkdirAll(imgs, 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(n.Dir, "config.yaml"), nil, 0o600); err != nil {
			return err
		}
		for _, f := range staged {
			if err := os.Symlink(f, filepath.Join(imgs, filepath.Base(f))); err != nil {
				return err
			}
		}
		// The kubelet needs its cgroup root to exist in every hierarchy.
		for _, d := range cgroupDirs(n.CgroupRoot) {
			if err := st.record(func(s *State) { s.Cgroups = append(s.Cgroups, d) }); err != nil {
				return err
			}
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
	}
	unlock()
	unlock = nil

	// The nodes: the (first) server first; the other servers, which join
	// its etcd, and the agents once its token exists.
	srv := plan.Server()
	if err := startRecorded(st, o.Exe, srv); err != nil {
		return err
	}
	serverToken := filepath.Join(srv.DataDir, "server", "token")
	adminKC := filepath.Join(srv.Dir, "admin.kubeconfig")
	start := time.Now()
	if err := waitFile(ctx, st, srv, serverToken, 120*time.Second); err != nil {
		return err
	}
	for i := range plan.Nodes {
		if n := &plan.Nodes[i]; n != srv {
			if err := startRecorded(st, o.Exe, n); err != nil {
				return err
			}
		}
	}
	if err := waitFile(ctx, st, srv, adminKC, 120*time.Second); err != nil {
		return err
	}
	cfg, err := hostKubeconfig(plan, adminKC)
	if err != nil {
		return err
	}
	if err := clientcmd.WriteToFile(*cfg, filepath.Join(dir, "kubeconfig.yaml")); err != nil {
		return err
	}
	if err := writeUserKubeconfig(cfg, kc, o.Merge); err != nil {
		return err
	}
	if o.Wait > 0 {
		wctx, cancel := context.WithTimeout(ctx, o.Wait)
		defer cancel()
		if err := WaitReady(wctx, st, cfg, func(msg string) {
			fmt.Fprintf(o.Out, "%5.1f s  %s\n", time.Since(start).Seconds(), msg)
		}); err != nil {
			return fmt.Errorf("--wait %s: %w", o.Wait, err)
		}
		fmt.Fprintf(o.Out, "all %d nodes Ready and CoreDNS answers, %.1f s after the server started\n", len(plan.Nodes), time.Since(start).Seconds())
	}
	if err := st.record(func(s *State) { s.Phase = "created" }); err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "cluster %s created: kubeconfig %s (context k1s-%s), apiserver %s\n", o.Name, kc, o.Name, plan.ServerURL)
	if bundle != "" || len(plan.Ports) > 0 {
		warnForwarding(o.Out, plan)
	}
	return nil
}

func warnForwarding(out io.Writer, p *Plan) {
	if len(p.Ports) == 0 {
		return
	}
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); err == nil && strings.TrimSpace(string(b)) != "1" {
		fmt.Fprintln(out, "note: net.ipv4.ip_forward is 0: the port mappings answer on this host (127.0.0.1 included) but not to other machines; `sysctl -w net.ipv4.ip_forward=1` opens them")
	}
}

func startRecorded(st *State, exe string, n *NodePlan) error {
	pr, err := startNode(exe, n)
	if err != nil {
		return err
	}
	return st.record(func(s *State) { s.Procs[n.Name] = pr })
}

// waitFile waits for a file the server writes, failing early if the
// server exits.
func waitFile(ctx context.Context, st *State, srv *NodePlan, path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
			return nil
		}
		if !st.Procs[srv.Name].Alive() {
			return fmt.Errorf("node %s exited before writing %s; its log %s ends:\n%s", srv.Name, path, srv.LogPath, tail(srv.LogPath, 15))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node %s did not write %s within %s; see %s", srv.Name, path, timeout, srv.LogPath)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// WaitReady waits until every planned node is a Ready Node and the
// cluster DNS answers a lookup of the kubernetes Service from the
// server's namespace. A node process that exits ends the wait.
// progress, if not nil, is told each new reason to wait.
func WaitReady(ctx context.Context, st *State, cfg *clientcmdapi.Config, progress func(string)) error {
	rc, err := clientcmd.NewDefaultClientConfig(*cfg, nil).ClientConfig()
	if err != nil {
		return err
	}
	rc.Timeout = 5 * time.Second
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	p := &st.Plan
	last := ""
	for {
		for i := range p.Nodes {
			n := &p.Nodes[i]
			if !st.Procs[n.Name].Alive() {
				return fmt.Errorf("node %s exited; its log %s ends:\n%s", n.Name, n.LogPath, tail(n.LogPath, 15))
			}
		}
		ready, msg := nodesReady(ctx, cs, p)
		if ready {
			msg = dnsAnswers(ctx, p)
			if msg == "" {
				return nil
			}
		}
		if msg != last && progress != nil {
			progress(msg)
		}
		last = msg
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready: %s", last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func nodesReady(ctx context.Context, cs kubernetes.Interface, p *Plan) (bool, string) {
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return false, "listing nodes: " + err.Error()
	}
	ready := map[string]bool{}
	for _, n := range nodes.Items {
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				ready[n.Name] = true
			}
		}
	}
	var missing []string
	for _, n := range p.Nodes {
		if !ready[n.Name] {
			missing = append(missing, n.Name)
		}
	}
	if len(missing) > 0 {
		return false, "nodes not Ready: " + strings.Join(missing, ", ")
	}
	return true, ""
}

// dnsAnswers asks the cluster DNS, from inside the server's namespace
// (where kube-proxy's rules make the Service IP work), for the kubernetes
// Service; "" means it answered.
func dnsAnswers(ctx context.Context, p *Plan) string {
	srv := p.Server()
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return dialInNetns(ctx, srv.Netns, network, net.JoinHostPort(p.ClusterDNS, "53"))
	}}
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	addrs, err := r.LookupHost(lctx, "kubernetes.default.svc.cluster.local.")
	if err != nil || len(addrs) == 0 {
		// Only the last part of the error: the rest names a random source port.
		msg := fmt.Sprint(err)
		if i := strings.LastIndex(msg, ": "); i >= 0 {
			msg = msg[i+2:]
		}
		return fmt.Sprintf("CoreDNS at %s does not answer yet: %s", p.ClusterDNS, msg)
	}
	return ""
}

// dialInNetns opens a connection from network namespace ns: the socket is
// made on a thread switched into ns and keeps that namespace.
func dialInNetns(ctx context.Context, ns, network, addr string) (net.Conn, error) {
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is not unlocked: it ends with the goroutine rather
		// than going back to the pool in the wrong namespace.
		fd, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- res{nil, err}
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			ch <- res{nil, fmt.Errorf("setns %s: %w", ns, err)}
			return
		}
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		ch <- res{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// hostKubeconfig is the server's admin kubeconfig renamed to k1s-NAME
// and pointed at the server's address on the bridge.
func hostKubeconfig(p *Plan, adminPath string) (*clientcmdapi.Config, error) {
	in, err := clientcmd.LoadFromFile(adminPath)
	if err != nil {
		return nil, err
	}
	ctx, ok := in.Contexts[in.CurrentContext]
	if !ok {
		return nil, fmt.Errorf("%s: no current context", adminPath)
	}
	cl, au := in.Clusters[ctx.Cluster], in.AuthInfos[ctx.AuthInfo]
	if cl == nil || au == nil {
		return nil, fmt.Errorf("%s: incomplete context %q", adminPath, in.CurrentContext)
	}
	name := "k1s-" + p.Name
	cl.Server = p.ServerURL
	out := clientcmdapi.NewConfig()
	out.Clusters[name] = cl
	out.AuthInfos[name] = au
	out.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	out.CurrentContext = name
	return out, nil
}

// kubeconfigPath is where create writes the kubeconfig: the flag, or
// ~/.kube/k1s-NAME.yaml (with --merge: $KUBECONFIG's first file or
// ~/.kube/config).
func kubeconfigPath(name, flag string, merge bool) (string, error) {
	if flag != "" {
		return filepath.Abs(flag)
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no home directory for the kubeconfig (%v): give --kubeconfig", err)
	}
	if merge {
		if env := os.Getenv("KUBECONFIG"); env != "" {
			return filepath.Abs(filepath.SplitList(env)[0])
		}
		return filepath.Join(home, ".kube", "config"), nil
	}
	return filepath.Join(home, ".kube", "k1s-"+name+".yaml"), nil
}

// writeUserKubeconfig writes cfg to path (0600), or merges its entries
// into the file there, making the cluster the current context.
func writeUserKubeconfig(cfg *clientcmdapi.Config, path string, merge bool) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	out := cfg
	if merge {
		cur, err := clientcmd.LoadFromFile(path)
		if errors.Is(err, os.ErrNotExist) {
			cur = clientcmdapi.NewConfig()
		} else if err != nil {
			return fmt.Errorf("--merge into %s: %w", path, err)
		}
		for k, v := range cfg.Clusters {
			cur.Clusters[k] = v
		}
		for k, v := range cfg.AuthInfos {
			cur.AuthInfos[k] = v
		}
		for k, v := range cfg.Contexts {
			cur.Contexts[k] = v
		}
		cur.CurrentContext = cfg.CurrentContext
		out = cur
	}
	b, err := clientcmd.Write(*out)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, b, 0o600)
}

// removeUserKubeconfig undoes writeUserKubeconfig.
func removeUserKubeconfig(name, path string, merged bool) error {
	if path == "" {
		return nil
	}
	if !merged {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	cur, err := clientcmd.LoadFromFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	k := "k1s-" + name
	delete(cur.Clusters, k)
	delete(cur.AuthInfos, k)
	delete(cur.Contexts, k)
	if cur.CurrentContext == k {
		cur.CurrentContext = ""
	}
	b, err := clientcmd.Write(*cur)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, b, 0o600)
}

// netnsMarker in StateRoot: a cluster made /run/netns a mount point.
const netnsMarker = ".netns-mount-made"

// Delete stops a cluster's nodes and removes everything it made, also
// what a create killed half-way made: by the state file, and by prefix.
func Delete(name string, out io.Writer) error {
	if err := Preflight(); err != nil {
		return err
	}
	st, err := LoadState(name)
	if err != nil {
		// A dir without state.json: create died before making anything.
		if errors.Is(err, ErrNoCluster) && NameRE.MatchString(name) {
			if _, serr := os.Stat(Dir(name)); serr == nil {
				return os.RemoveAll(Dir(name))
			}
		}
		return err
	}
	unlock, err := lockRoot()
	if err != nil {
		return err
	}
	defer unlock()
	p := &st.Plan
	var errs []error
	// Processes first: the server's SIGTERM while the agents still run
	// (so none of them sees its network vanish).
	var procs []Proc
	for _, pr := range st.Procs {
		procs = append(procs, pr)
	}
	stopAll(procs, 10*time.Second)
	for i := range p.Nodes {
		if err := teardownNode(&p.Nodes[i], st.Procs[p.Nodes[i].Name]); err != nil {
			errs = append(errs, fmt.Errorf("node %s: %w", p.Nodes[i].Name, err))
		}
	}
	if err := removeCgroups(st.Cgroups); err != nil {
		errs = append(errs, err)
	}
	// Namespaces (with their veths), found by prefix too.
	if nss, err := run("ip", "netns", "list"); err == nil {
		for _, line := range strings.Split(nss, "\n") {
			if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], p.Prefix+"-") {
				if err := killNetnsProcs(f[0], 15*time.Second); err != nil {
					errs = append(errs, err)
				}
				if _, err := run("ip", "netns", "del", f[0]); err != nil {
					errs = append(errs, err)
				}
			}
		}
	} else {
		errs = append(errs, err)
	}
	if links, err := run("ip", "-o", "link"); err == nil {
		for _, line := range strings.Split(links, "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			l, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			if strings.HasPrefix(l, p.Prefix) {
				if _, err := run("ip", "link", "del", l); err != nil && !strings.Contains(err.Error(), "Cannot find device") {
					errs = append(errs, err)
				}
			}
		}
	}
	if ipt, err := iptables.New(iptables.Timeout(30)); err == nil {
		errs = append(errs, deleteRules(ipt, p.Prefix, st.Rules)...)
	} else {
		errs = append(errs, err)
	}
	if err := removeUserKubeconfig(name, st.Kubeconfig, st.Merged); err != nil {
		errs = append(errs, fmt.Errorf("kubeconfig %s: %w", st.Kubeconfig, err))
	}
	// The cluster that made /run/netns a mount point may not be the last
	// to go: the marker says some cluster did, and the last one undoes it.
	marker := filepath.Join(StateRoot, netnsMarker)
	if _, err := os.Stat(marker); (err == nil || st.MadeNetnsMount) && isMountPoint("/run/netns") {
		if nss, err := run("ip", "netns", "list"); err == nil && strings.TrimSpace(nss) == "" {
			if err := unix.Unmount("/run/netns", unix.MNT_DETACH); err != nil {
				errs = append(errs, fmt.Errorf("umount /run/netns: %w", err))
			} else {
				_ = os.Remove(marker)
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("deleting cluster %s (its state dir %s is kept; run delete again): %w", name, p.Dir, errors.Join(errs...))
	}
	if m := MountsBelow(p.Dir); len(m) > 0 {
		return fmt.Errorf("deleting cluster %s: mounts left below %s: %v", name, p.Dir, m)
	}
	if err := os.RemoveAll(p.Dir); err != nil {
		return err
	}
	fmt.Fprintf(out, "cluster %s deleted\n", name)
	return nil
}

// Info is one line of `k1s cluster list`.
type Info struct {
	Name, Subnet, Server, Phase, Kubeconfig string
	Running, Nodes                          int
}

// List describes every cluster with state on this host.
func List() ([]Info, error) {
	names, err := Names()
	if err != nil {
		return nil, err
	}
	var out []Info
	for _, n := range names {
		st, err := LoadState(n)
		if err != nil {
			out = append(out, Info{Name: n, Phase: "broken (no state; delete it)"})
			continue
		}
		i := Info{Name: n, Subnet: st.Plan.Subnet, Server: st.Plan.ServerURL, Phase: st.Phase, Kubeconfig: st.Kubeconfig, Nodes: len(st.Plan.Nodes)}
		for _, pr := range st.Procs {
			if pr.Alive() {
				i.Running++
			}
		}
		out = append(out, i)
	}
	return out, nil
}

// Kubeconfig returns the cluster's host kubeconfig.
func Kubeconfig(name string) ([]byte, error) {
	st, err := LoadState(name)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(st.Plan.Dir, "kubeconfig.yaml"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("cluster %s has no kubeconfig yet (its server has not written one; phase %s)", name, st.Phase)
	}
	return b, err
}

// Load imports image archives into every node's containerd, and keeps a
// copy in each node's images folder so a restarted node has them too.
func Load(ctx context.Context, name, exe string, files []string, out io.Writer) error {
	if err := Preflight(); err != nil {
		return err
	}
	st, err := LoadState(name)
	if err != nil {
		return err
	}
	for _, f := range files {
		if fi, err := os.Stat(f); err != nil || !fi.Mode().IsRegular() {
			return fmt.Errorf("%s: not a readable file", f)
		}
		if !isImageArchive(f) {
			return fmt.Errorf("%s: want an image archive named *.tar, *.tar.gz, *.tgz or *.tar.zst", f)
		}
	}
	imgDir := filepath.Join(st.Plan.Dir, "images")
	if err := os.MkdirAll(imgDir, 0o700); err != nil {
		return err
	}
	for _, f := range files {
		dst := filepath.Join(imgDir, filepath.Base(f))
		if err := copyFile(f, dst); err != nil {
			return err
		}
		for _, n := range st.Plan.Nodes {
			sock := filepath.Join(n.RunDir, "containerd", "containerd.sock")
			cmd := exec.CommandContext(ctx, exe, "ctr", "--address", sock, "--namespace", "k8s.io", "images", "import", dst)
			cmd.Env = nodeEnv()
			if b, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("loading %s into node %s: %v: %s", f, n.Name, err, strings.TrimSpace(string(b)))
			}
			link := filepath.Join(n.DataDir, "agent", "images", filepath.Base(f))
			_ = os.Remove(link)
			if err := os.Symlink(dst, link); err != nil {
				return err
			}
			fmt.Fprintf(out, "loaded %s into node %s\n", filepath.Base(f), n.Name)
		}
	}
	return nil
}

// ExecArgv is the command line that runs argv in a node's network
// namespace, with the node's containerd as the default for ctr and crictl.
func ExecArgv(name, node string, argv []string) ([]string, []string, error) {
	st, err := LoadState(name)
	if err != nil {
		return nil, nil, err
	}
	n, err := st.Plan.Node(node)
	if err != nil {
		return nil, nil, err
	}
	if len(argv) == 0 {
		argv = []string{"/bin/sh"}
	}
	sock := filepath.Join(n.RunDir, "containerd", "containerd.sock")
	env := append(nodeEnv(), "CONTAINERD_ADDRESS="+sock, "CONTAINER_RUNTIME_ENDPOINT=unix://"+sock,
		"KUBECONFIG="+filepath.Join(st.Plan.Dir, "kubeconfig.yaml"))
	return append([]string{"nsenter", "--net=/run/netns/" + n.Netns, "--"}, argv...), env, nil
}

func isImageArchive(name string) bool {
	for _, s := range []string{".tar", ".tar.gz", ".tgz", ".tar.zst"} {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return atomicfile.WriteFrom(dst, 0o600, func(w io.Writer) error {
		_, err := io.Copy(w, in)
		return err
	})
}
