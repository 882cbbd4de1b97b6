package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Lab is a private L2 network for one test: a Linux bridge in the host
// network namespace with an address (the "server" side), and hosts attached
// to it by veth pairs, each in a network namespace of its own. A k1s server
// in the host namespace is reachable from every lab host at GatewayIP; an
// agent started with NetHost.Command has its own links, routes and iptables,
// which disappear with its namespace.
//
// Everything a Lab creates is named with Prefix, so LabLeftovers(Prefix)
// finds what a cleanup missed and nothing else is ever touched.
type Lab struct {
	Prefix    string // "k1t" + 4 random hex digits
	Bridge    string // Prefix + "br", in the host namespace
	Subnet    string // e.g. "10.201.37.0/24"
	GatewayIP string // the bridge's address: .1 of Subnet
	// ForwardRule is the iptables filter rule (chain and match, without -I/-D)
	// that accepts frames bridged between lab hosts, empty without iptables.
	// With bridge-nf-call-iptables=1 such frames traverse the host's FORWARD
	// chain, so a DROP policy or a Kubernetes rule there would otherwise cut
	// the lab's hosts off from each other.
	ForwardRule []string

	mu     sync.Mutex
	hosts  []*NetHost
	undo   []undoStep // in creation order; Close runs it backwards
	closed bool

	closeOnce sync.Once
	closeErr  error
}

// NetHost is one "machine" of a Lab: a network namespace whose eth0 is on
// the lab's bridge.
type NetHost struct {
	Name      string // as given to AddHost
	Namespace string // Prefix + "-" + Name, as in `ip netns list`
	IP        string // eth0's address (without prefix length)
	HostVeth  string // the veth end in the host namespace, a bridge port
	lab       *Lab
}

type undoStep struct {
	what string
	fn   func() error
}

// labMu serialises subnet choice between labs of one test process, so two
// parallel tests do not pick the same /24.
var labMu sync.Mutex

const labCmdTimeout = 30 * time.Second

// NewLab creates the bridge with a /24 (10.201.X.0/24 from a random X) that
// overlaps no route and no address of this machine, and registers a cleanup
// that deletes everything the lab created, also when the test fails.
func NewLab(t testing.TB) *Lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("NewLab needs root (network namespaces, bridge, veth); running as uid %d", os.Geteuid())
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("NewLab needs the ip command (iproute2): %v", err)
	}
	l := &Lab{}
	// Registered before anything exists, so a Fatalf half-way still cleans up.
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("lab %s cleanup: %v", l.Prefix, err)
		}
	})

	// A fresh prefix: nothing on the machine may carry it already, or our
	// cleanup and LabLeftovers would mistake it for ours.
	for i := 0; ; i++ {
		b := make([]byte, 2)
		_, _ = rand.Read(b)
		l.Prefix = "k1t" + hex.EncodeToString(b)
		if len(LabLeftovers(l.Prefix)) == 0 {
			break
		}
		if i == 20 {
			t.Fatalf("no unused lab prefix found: %v", LabLeftovers(l.Prefix))
		}
	}
	l.Bridge = l.Prefix + "br"

	// The first `ip netns add` on a machine makes /run/netns a mount point;
	// undo that too once no namespace is left (this undo runs last).
	if !isMountPoint("/run/netns") {
		l.push("mount /run/netns", func() error {
			if out, err := exec.Command("ip", "netns", "list").Output(); err != nil || strings.TrimSpace(string(out)) != "" || !isMountPoint("/run/netns") {
				return nil
			}
			return l.run("umount", "/run/netns")
		})
	}

	labMu.Lock()
	defer labMu.Unlock()
	if err := l.run("ip", "link", "add", "name", l.Bridge, "type", "bridge"); err != nil {
		t.Fatalf("lab: creating bridge: %v", err)
	}
	l.push("bridge "+l.Bridge, func() error { return delLink(l.Bridge) })

	subnet, gw, err := l.claimSubnet()
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	l.Subnet, l.GatewayIP = subnet, gw
	if err := l.run("ip", "link", "set", l.Bridge, "up"); err != nil {
		t.Fatalf("lab: %v", err)
	}

	if _, err := exec.LookPath("iptables"); err == nil {
		rule := []string{"FORWARD", "-i", l.Bridge, "-o", l.Bridge,
			"-m", "comment", "--comment", l.Prefix + " lab bridge", "-j", "ACCEPT"}
		if err := l.run("iptables", append([]string{"-w", "-I"}, rule...)...); err != nil {
			t.Fatalf("lab: %v", err)
		}
		l.ForwardRule = rule
		l.push("iptables rule", func() error {
			// Someone may have flushed FORWARD meanwhile: delete only if present.
			if exec.Command("iptables", append([]string{"-w", "-C"}, rule...)...).Run() != nil {
				return nil
			}
			return l.run("iptables", append([]string{"-w", "-D"}, rule...)...)
		})
	}
	return l
}

// claimSubnet gives the bridge the .1 of the first free 10.201.X.0/24,
// trying X from a random start.
func (l *Lab) claimSubnet() (subnet, gw string, err error) {
	n, _ := rand.Int(rand.Reader, big.NewInt(256))
	start := int(n.Int64())
	for i := 0; i < 256; i++ {
		x := (start + i) % 256
		_, cand, _ := net.ParseCIDR(fmt.Sprintf("10.201.%d.0/24", x))
		used, err := usedIPv4Nets()
		if err != nil {
			return "", "", err
		}
		if overlapsAny(cand, used) {
			continue
		}
		gw := fmt.Sprintf("10.201.%d.1", x)
		if err := l.run("ip", "addr", "add", gw+"/24", "dev", l.Bridge); err != nil {
			return "", "", err
		}
		// Another process may have claimed the same /24 since we looked:
		// then it is theirs, and we move on.
		out, err := l.output("ip", "-4", "-o", "addr", "show", "to", cand.String())
		if err != nil {
			return "", "", err
		}
		if onlyDevice(out, l.Bridge) {
			return cand.String(), gw, nil
		}
		if err := l.run("ip", "addr", "del", gw+"/24", "dev", l.Bridge); err != nil {
			return "", "", err
		}
	}
	return "", "", errors.New("no free 10.201.X.0/24 on this machine (ip -4 route show table all)")
}

var hostNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,11}$`)

// AddHost creates a network namespace with a veth pair whose host end is a
// port of the lab's bridge and whose peer is the namespace's eth0 with the
// next address of the subnet; lo is up and the default route goes via
// GatewayIP. name must be unique in the lab: lowercase letters, digits and
// '-', at most 12 bytes.
func (l *Lab) AddHost(t testing.TB, name string) *NetHost {
	t.Helper()
	if !hostNameRE.MatchString(name) {
		t.Fatalf("lab: bad host name %q: want %s", name, hostNameRE)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		t.Fatalf("lab %s: AddHost(%q) after Close", l.Prefix, name)
	}
	for _, h := range l.hosts {
		if h.Name == name {
			t.Fatalf("lab %s: host %q exists already", l.Prefix, name)
		}
	}
	idx := len(l.hosts) + 1
	if idx > 253 {
		t.Fatalf("lab %s: subnet %s is full", l.Prefix, l.Subnet)
	}
	ip := net.ParseIP(l.GatewayIP).To4()
	ip[3] = byte(1 + idx)
	// Interface names have at most 15 bytes, so veths are numbered rather
	// than named after the host.
	h := &NetHost{Name: name, Namespace: l.Prefix + "-" + name, IP: ip.String(),
		HostVeth: fmt.Sprintf("%sv%d", l.Prefix, idx), lab: l}
	// The host is known to Close from here on, so that even a half-made
	// one has its processes killed.
	l.hosts = append(l.hosts, h)

	if err := l.run("ip", "netns", "add", h.Namespace); err != nil {
		t.Fatalf("lab: adding host %q: %v", name, err)
	}
	l.push("netns "+h.Namespace, func() error { return delNetns(h.Namespace) })
	// The peer is created directly in the namespace: an "eth0" in the host
	// namespace would collide with the host's own.
	if err := l.run("ip", "link", "add", h.HostVeth, "type", "veth", "peer", "name", "eth0", "netns", h.Namespace); err != nil {
		t.Fatalf("lab: adding host %q: %v", name, err)
	}
	l.push("veth "+h.HostVeth, func() error { return delLink(h.HostVeth) })
	for _, args := range [][]string{
		{"link", "set", h.HostVeth, "master", l.Bridge},
		{"link", "set", h.HostVeth, "up"},
		{"-n", h.Namespace, "link", "set", "lo", "up"},
		{"-n", h.Namespace, "addr", "add", h.IP + "/24", "dev", "eth0"},
		{"-n", h.Namespace, "link", "set", "eth0", "up"},
		{"-n", h.Namespace, "route", "add", "default", "via", l.GatewayIP},
	} {
		if err := l.run("ip", args...); err != nil {
			t.Fatalf("lab: adding host %q: %v", name, err)
		}
	}
	return h
}

// Close kills every process left in the lab's namespaces and deletes what
// the lab created, newest first. It runs once (NewLab's cleanup calls it
// too) and reports every step that failed.
func (l *Lab) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.closed = true
		var errs []error
		// Processes go first, so none of them sees its network vanish.
		for i := len(l.hosts) - 1; i >= 0; i-- {
			if err := killNetnsProcs(l.hosts[i].Namespace, 10*time.Second); err != nil {
				errs = append(errs, err)
			}
		}
		for i := len(l.undo) - 1; i >= 0; i-- {
			if err := l.undo[i].fn(); err != nil {
				errs = append(errs, fmt.Errorf("deleting %s: %w", l.undo[i].what, err))
			}
		}
		l.undo = nil
		l.closeErr = errors.Join(errs...)
	})
	return l.closeErr
}

func (l *Lab) push(what string, fn func() error) {
	l.undo = append(l.undo, undoStep{what, fn})
}

func (l *Lab) run(name string, args ...string) error {
	_, err := l.output(name, args...)
	return err
}

// output runs a setup command; its error names the command and its output.
func (l *Lab) output(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), labCmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Command returns a command that runs name inside h's network namespace,
// via `ip netns exec`. ip execs name in place, so cmd.Process.Pid is the
// command's own PID. `ip netns exec` also gives the process its own mount
// namespace (a slave of the host's) with a fresh /sys, as a separate
// machine would have: /sys/class/net lists the namespace's links only.
// Consequence: mounts the process makes are not visible from the host's
// /proc/self/mounts, nor from another `ip netns exec`, and go away with
// the last process of that mount namespace.
func (h *NetHost) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.Namespace, name}, args...)...)
}

// NetPrefix runs a command in h's network namespace only (nsenter --net),
// for k1s nodes: unlike `ip netns exec` it keeps the host's /sys, whose
// cgroup mounts the kubelet needs, and the host's mount namespace, so the
// node's mounts stay visible to k1s-killall.sh and leftover checks.
func (h *NetHost) NetPrefix() []string {
	return []string{"nsenter", "--net=/run/netns/" + h.Namespace, "--"}
}

// Run runs a command in h's namespace and returns its combined output; the
// error includes the command and that output.
func (h *NetHost) Run(ctx context.Context, name string, args ...string) (string, error) {
	out, err := h.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("in netns %s: %s %s: %v: %s", h.Namespace, name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// killNetnsProcs SIGKILLs the processes in network namespace ns (all
// started by the test there) until none is left. Each PID is opened as a
// pidfd (os.FindProcess) and its namespace checked again before the
// signal, so a PID reused meanwhile by another process is never hit.
func killNetnsProcs(ns string, timeout time.Duration) error {
	var st syscall.Stat_t
	if err := syscall.Stat("/run/netns/"+ns, &st); err != nil {
		return nil // never created, or deleted already
	}
	want := fmt.Sprintf("net:[%d]", st.Ino)
	deadline := time.Now().Add(timeout)
	for {
		out, err := exec.Command("ip", "netns", "pids", ns).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip netns pids %s: %v: %s", ns, err, strings.TrimSpace(string(out)))
		}
		pids := strings.Fields(string(out))
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes still in netns %s after SIGKILL: %s", ns, describePIDs(pids))
		}
		for _, s := range pids {
			var pid int
			if _, err := fmt.Sscan(s, &pid); err != nil || pid == os.Getpid() {
				continue
			}
			p, err := os.FindProcess(pid)
			if err != nil {
				continue
			}
			if link, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); err == nil && link == want {
				_ = p.Signal(syscall.SIGKILL)
			}
			_ = p.Release()
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func describePIDs(pids []string) string {
	var d []string
	for _, p := range pids {
		comm, _ := os.ReadFile("/proc/" + p + "/comm")
		d = append(d, p+"("+strings.TrimSpace(string(comm))+")")
	}
	return strings.Join(d, " ")
}

func delNetns(ns string) error {
	out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "No such file") {
		return fmt.Errorf("ip netns del %s: %v: %s", ns, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// delLink deletes a link of the host namespace; one already gone (a veth
// goes with its peer's namespace) is fine.
func delLink(name string) error {
	out, err := exec.Command("ip", "link", "del", name).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "Cannot find device") {
		return fmt.Errorf("ip link del %s: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// LabLeftovers lists what carries prefix (a Lab's Prefix; "" means "k1t",
// i.e. any lab): network namespaces, links of the host namespace and
// iptables filter rules. Empty after a lab's cleanup.
func LabLeftovers(prefix string) []string {
	if prefix == "" {
		prefix = "k1t"
	}
	var left []string
	if out, err := exec.Command("ip", "netns", "list").CombinedOutput(); err != nil {
		left = append(left, fmt.Sprintf("ip netns list: %v: %s", err, out))
	} else {
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], prefix) {
				left = append(left, "netns "+f[0])
			}
		}
	}
	if out, err := exec.Command("ip", "-o", "link").CombinedOutput(); err != nil {
		left = append(left, fmt.Sprintf("ip -o link: %v: %s", err, out))
	} else {
		for _, line := range strings.Split(string(out), "\n") {
			// "7: k1t1a2bv1@if2: <BROADCAST,..."
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			if strings.HasPrefix(name, prefix) {
				left = append(left, "link "+name)
			}
		}
	}
	if _, err := exec.LookPath("iptables"); err == nil {
		if out, err := exec.Command("iptables", "-w", "-S").CombinedOutput(); err == nil {
			for _, line := range strings.Split(string(out), "\n") {
				if strings.Contains(line, prefix) {
					left = append(left, "iptables "+line)
				}
			}
		}
	}
	return left
}

// usedIPv4Nets lists the destinations of every IPv4 route (all tables,
// except default routes) and every IPv4 address with its prefix.
func usedIPv4Nets() ([]*net.IPNet, error) {
	var used []*net.IPNet
	routes, err := exec.Command("ip", "-4", "route", "show", "table", "all").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("ip -4 route show table all: %v: %s", err, routes)
	}
	routeTypes := map[string]bool{"unicast": true, "local": true, "broadcast": true, "multicast": true,
		"throw": true, "unreachable": true, "prohibit": true, "blackhole": true, "nat": true, "anycast": true}
	for _, line := range strings.Split(string(routes), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && routeTypes[f[0]] {
			f = f[1:]
		}
		if len(f) == 0 || f[0] == "default" {
			continue
		}
		if n := parseNet(f[0]); n != nil {
			used = append(used, n)
		}
	}
	addrs, err := exec.Command("ip", "-4", "-o", "addr", "show").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("ip -4 -o addr show: %v: %s", err, addrs)
	}
	for _, line := range strings.Split(string(addrs), "\n") {
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "inet" {
				if n := parseNet(f[i+1]); n != nil {
					used = append(used, n)
				}
			}
		}
	}
	return used, nil
}

// parseNet reads "a.b.c.d/n" or a bare address (a /32).
func parseNet(s string) *net.IPNet {
	if !strings.Contains(s, "/") {
		s += "/32"
	}
	_, n, err := net.ParseCIDR(s)
	if err != nil || n.IP.To4() == nil {
		return nil
	}
	return n
}

func overlapsAny(n *net.IPNet, others []*net.IPNet) bool {
	for _, o := range others {
		if o.Contains(n.IP) || n.Contains(o.IP) {
			return true
		}
	}
	return false
}

// onlyDevice reports whether every line of `ip -o addr` output is about dev.
func onlyDevice(out, dev string) bool {
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[1] != dev {
			return false
		}
	}
	return true
}

// isMountPoint reports whether path is listed in /proc/self/mounts.
func isMountPoint(path string) bool {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[1] == path {
			return true
		}
	}
	return false
}
