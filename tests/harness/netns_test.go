package harness

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The helper process: this test binary, re-executed inside a lab host by
// the tests below, so that traffic is checked with Go itself rather than
// with whatever ping/nc the machine may lack.
//
//	LAB_HELPER=listen LAB_ADDR=ip:port: accept forever; answer "<LAB_NAME> saw <peer>".
//	LAB_HELPER=dial LAB_ADDR=ip:port: connect, print the answer, exit 1 on error.
func TestLabHelperProcess(t *testing.T) {
	mode, addr := os.Getenv("LAB_HELPER"), os.Getenv("LAB_ADDR")
	switch mode {
	case "":
		return // a normal test run
	case "listen":
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Println("listen:", err)
			os.Exit(1)
		}
		fmt.Println("ready")
		for {
			c, err := ln.Accept()
			if err != nil {
				os.Exit(1)
			}
			fmt.Fprintf(c, "%s saw %s\n", os.Getenv("LAB_NAME"), c.RemoteAddr())
			c.Close()
		}
	case "dial":
		c, err := net.DialTimeout("tcp", addr, 3*time.Second)
		if err != nil {
			fmt.Println("dial:", err)
			os.Exit(1)
		}
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		b, err := io.ReadAll(c)
		fmt.Print(string(b))
		if err != nil {
			fmt.Println("read:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}

func helperCmd(ctx context.Context, h *NetHost, mode, addr string) *exec.Cmd {
	cmd := h.Command(ctx, os.Args[0], "-test.run=^TestLabHelperProcess$")
	cmd.Env = append(os.Environ(), "LAB_HELPER="+mode, "LAB_ADDR="+addr, "LAB_NAME="+h.Name)
	return cmd
}

// dialFrom connects from inside h to addr and returns the peer's answer.
func dialFrom(ctx context.Context, h *NetHost, addr string) (string, error) {
	out, err := helperCmd(ctx, h, "dial", addr).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("dial %s from %s: %v: %s", addr, h.Name, err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// startListener runs the listening helper in h and waits until it listens.
func startListener(t *testing.T, h *NetHost, addr string) *exec.Cmd {
	t.Helper()
	cmd := helperCmd(context.Background(), h, "listen", addr)
	// An io.Pipe rather than StdoutPipe: exec copies into it, so Wait
	// may run while we still read.
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line := make(chan string, 1)
	go func() {
		r := bufio.NewReader(pr)
		s, _ := r.ReadString('\n')
		line <- s
		_, _ = io.Copy(io.Discard, r)
	}()
	select {
	case s := <-line:
		if strings.TrimSpace(s) != "ready" {
			t.Fatalf("listener in %s: %q", h.Name, s)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("listener in %s not ready within 10s", h.Name)
	}
	return cmd
}

func dialHere(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	b, err := io.ReadAll(c)
	return strings.TrimSpace(string(b)), err
}

func needRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipped: network labs need root (ip netns add, bridge, veth); run the tests as root")
	}
}

func TestLab(t *testing.T) {
	needRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	lab := NewLab(t)
	a := lab.AddHost(t, "a")
	b := lab.AddHost(t, "b")
	t.Logf("lab %s: bridge %s subnet %s gateway %s; a=%s (%s) b=%s (%s)",
		lab.Prefix, lab.Bridge, lab.Subnet, lab.GatewayIP, a.IP, a.Namespace, b.IP, b.Namespace)

	listener := startListener(t, b, net.JoinHostPort(b.IP, "7070"))
	listenerDone := make(chan error, 1)
	go func() { listenerDone <- listener.Wait() }()

	t.Run("host to host over the bridge", func(t *testing.T) {
		got, err := dialFrom(ctx, a, net.JoinHostPort(b.IP, "7070"))
		if err != nil {
			t.Fatal(err)
		}
		// b sees a's own address: plain L2, no NAT on the way.
		if want := "b saw " + a.IP + ":"; !strings.HasPrefix(got, want) {
			t.Fatalf("a -> b: got %q, want %q...", got, want)
		}
		if _, err := exec.LookPath("busybox"); err == nil {
			if out, err := a.Run(ctx, "busybox", "ping", "-c", "1", "-W", "2", b.IP); err != nil {
				t.Errorf("ICMP a -> b: %v", err)
			} else {
				t.Logf("a pings b: %s", strings.Split(out, "\n")[1])
			}
		}
	})

	t.Run("root namespace reaches a lab host", func(t *testing.T) {
		got, err := dialHere(net.JoinHostPort(b.IP, "7070"))
		if err != nil {
			t.Fatal(err)
		}
		if want := "b saw " + lab.GatewayIP + ":"; !strings.HasPrefix(got, want) {
			t.Fatalf("root -> b: got %q, want %q...", got, want)
		}
	})

	t.Run("lab host reaches a server in the root namespace", func(t *testing.T) {
		ln, err := net.Listen("tcp", net.JoinHostPort(lab.GatewayIP, "0"))
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		peer := make(chan string, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				peer <- err.Error()
				return
			}
			fmt.Fprintf(c, "server saw %s\n", c.RemoteAddr())
			peer <- c.RemoteAddr().String()
			c.Close()
		}()
		got, err := dialFrom(ctx, a, ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if p := <-peer; !strings.HasPrefix(p, a.IP+":") || got != "server saw "+p {
			t.Fatalf("a -> root server at %s: a read %q, server saw %q", ln.Addr(), got, p)
		}
	})

	t.Run("unassigned address is unreachable", func(t *testing.T) {
		// The reachability checks above can fail: nobody has .254.
		ip := net.ParseIP(lab.GatewayIP).To4()
		ip[3] = 254
		if got, err := dialFrom(ctx, a, net.JoinHostPort(ip.String(), "7070")); err == nil {
			t.Fatalf("a reached unassigned %s: %q", ip, got)
		}
	})

	t.Run("namespace state is invisible from the root namespace", func(t *testing.T) {
		const extra = "198.51.100.7" // TEST-NET-2, on a's lo only
		if _, err := a.Run(ctx, "ip", "addr", "add", extra+"/32", "dev", "lo"); err != nil {
			t.Fatal(err)
		}
		inA, err := a.Run(ctx, "ip", "-4", "-o", "addr")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(inA, extra+"/32") || !strings.Contains(inA, a.IP+"/24") {
			t.Fatalf("a's addresses lack %s or %s:\n%s", extra, a.IP, inA)
		}
		rootAddrs, err := net.InterfaceAddrs()
		if err != nil {
			t.Fatal(err)
		}
		for _, ad := range rootAddrs {
			if ip, _, _ := net.ParseCIDR(ad.String()); ip.String() == extra || ip.String() == a.IP {
				t.Fatalf("root namespace has a's address %s", ad)
			}
		}
		// Fresh /sys: a sees its own links only, not the bridge or the host's.
		sysNet, err := a.Run(ctx, "ls", "/sys/class/net")
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(strings.Fields(sysNet), " "); got != "eth0 lo" {
			t.Fatalf("/sys/class/net in a: %q, want \"eth0 lo\"", got)
		}
		// Mounts made in a stay in a's mount namespace.
		dir := t.TempDir()
		if out, err := a.Run(ctx, "sh", "-c", "mount -t tmpfs lab "+dir+" && grep -c "+dir+" /proc/self/mounts"); err != nil || strings.TrimSpace(out) != "1" {
			t.Fatalf("mount inside a: %q %v", out, err)
		}
		if m := MountsBelow(dir); len(m) != 0 {
			t.Fatalf("a's mount leaked into the root namespace: %v", m)
		}
		// iptables state is per namespace, and goes with it.
		if _, err := exec.LookPath("iptables"); err == nil {
			chain := lab.Prefix + "-T"
			if _, err := a.Run(ctx, "iptables", "-w", "-N", chain); err != nil {
				t.Fatal(err)
			}
			if out, _ := a.Run(ctx, "iptables", "-w", "-S"); !strings.Contains(out, "-N "+chain) {
				t.Fatalf("chain %s missing in a:\n%s", chain, out)
			}
			if out, _ := exec.Command("iptables", "-w", "-S").CombinedOutput(); strings.Contains(string(out), chain) {
				t.Fatalf("a's chain %s visible in the root namespace", chain)
			}
		}
	})

	t.Run("bridged traffic traverses the host's FORWARD chain", func(t *testing.T) {
		testForwardChain(t, ctx, lab, a, b)
	})

	t.Run("Close kills, deletes, leaves nothing", func(t *testing.T) {
		// A stray process left in a namespace: Close must kill it.
		sleeper := a.Command(context.Background(), "sleep", "600")
		if err := sleeper.Start(); err != nil {
			t.Fatal(err)
		}
		if err := lab.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		wait := make(chan error, 1)
		go func() { wait <- sleeper.Wait() }()
		for name, done := range map[string]chan error{"sleep in a": wait, "listener in b": listenerDone} {
			select {
			case err := <-done:
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
					t.Errorf("%s ended with %v, want SIGKILL", name, err)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("%s still running after Close", name)
			}
		}
		if left := LabLeftovers(lab.Prefix); len(left) != 0 {
			t.Fatalf("left after Close: %v", left)
		}
		if err := lab.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	})
}

// testForwardChain shows the gotcha and its remedy: with
// bridge-nf-call-iptables=1, frames bridged from a to b pass the host's
// iptables FORWARD chain (a DROP there cuts them), while root <-> lab
// traffic does not; the lab's own ACCEPT rule comes before anything
// appended later (as a DROP policy would act).
func testForwardChain(t *testing.T, ctx context.Context, lab *Lab, a, b *NetHost) {
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("no iptables")
	}
	if v, _ := os.ReadFile("/proc/sys/net/bridge/bridge-nf-call-iptables"); strings.TrimSpace(string(v)) != "1" {
		t.Skip("bridge-nf-call-iptables is not 1: bridged frames skip iptables here")
	}
	if len(lab.ForwardRule) == 0 {
		t.Fatal("lab installed no FORWARD rule although iptables exists")
	}
	// Only frames on this lab's bridge match, so nothing else on the host is affected.
	drop := []string{"FORWARD", "-i", lab.Bridge, "-o", lab.Bridge,
		"-m", "comment", "--comment", lab.Prefix + " test drop", "-j", "DROP"}
	ipt := func(op string) {
		t.Helper()
		if out, err := exec.Command("iptables", append([]string{"-w", op}, drop...)...).CombinedOutput(); err != nil {
			t.Fatalf("iptables %s: %v: %s", op, err, out)
		}
	}
	bAddr := net.JoinHostPort(b.IP, "7070")

	ipt("-I") // before the lab's ACCEPT
	cleaned := false
	defer func() {
		if !cleaned {
			_ = exec.Command("iptables", append([]string{"-w", "-D"}, drop...)...).Run()
		}
	}()
	if got, err := dialFrom(ctx, a, bAddr); err == nil {
		t.Errorf("a reached b through a FORWARD DROP: %q", got)
	}
	if _, err := dialHere(bAddr); err != nil {
		t.Errorf("root -> b must not go through FORWARD, but failed: %v", err)
	}
	ipt("-D")

	ipt("-A") // after the lab's ACCEPT, as a DROP policy or a later rule
	if _, err := dialFrom(ctx, a, bAddr); err != nil {
		t.Errorf("a -> b with a DROP after the lab's ACCEPT: %v", err)
	}
	ipt("-D")
	cleaned = true
}

// fakeTB turns Fatalf into a recorded failure and keeps cleanups, so a
// test can fail a lab on purpose and then check what the cleanup did.
type fakeTB struct {
	testing.TB
	mu       sync.Mutex
	fatal    string
	cleanups []func()
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Cleanup(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups = append(f.cleanups, fn)
}
func (f *fakeTB) Errorf(format string, args ...any) { f.TB.Errorf(format, args...) }
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.fatal = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}
func (f *fakeTB) runCleanups() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

// inGoroutine runs fn as a test body would run: Fatalf ends it.
func inGoroutine(fn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	<-done
}

func TestLabCleanupAfterFailedSetup(t *testing.T) {
	needRoot(t)
	ft := &fakeTB{TB: t}
	t.Cleanup(ft.runCleanups) // in case we fail before running them; Close runs once
	var lab *Lab
	inGoroutine(func() {
		lab = NewLab(ft)
		lab.AddHost(ft, "one")
	})
	if ft.fatal != "" {
		t.Fatalf("setup: %s", ft.fatal)
	}
	// Squat the name the next veth will get: AddHost fails after creating
	// the namespace, i.e. half-way, with the command's output in the error.
	squat := lab.Prefix + "v2"
	if out, err := exec.Command("ip", "link", "add", squat, "type", "bridge").CombinedOutput(); err != nil {
		t.Fatalf("squatting %s: %v: %s", squat, err, out)
	}
	defer exec.Command("ip", "link", "del", squat).Run()
	inGoroutine(func() { lab.AddHost(ft, "two") })
	if !strings.Contains(ft.fatal, "ip link add "+squat) || !strings.Contains(ft.fatal, "File exists") {
		t.Fatalf("AddHost error should name the command and its output, got: %q", ft.fatal)
	}
	t.Logf("AddHost failed as wanted: %s", ft.fatal)
	if left := LabLeftovers(lab.Prefix); !contains(left, "netns "+lab.Prefix+"-two") {
		t.Fatalf("half-made host should exist before cleanup: %v", left)
	}

	ft.runCleanups() // what the testing package does when the test ends

	// Only the squatter, which the lab did not create, may remain.
	if left := LabLeftovers(lab.Prefix); len(left) != 1 || left[0] != "link "+squat {
		t.Fatalf("after cleanup: %v, want only [link %s]", left, squat)
	}
	if err := exec.Command("ip", "link", "del", squat).Run(); err != nil {
		t.Fatal(err)
	}
	if left := LabLeftovers(lab.Prefix); len(left) != 0 {
		t.Fatalf("leftovers: %v", left)
	}
}

func TestLabParallelLabsGetDistinctSubnets(t *testing.T) {
	needRoot(t)
	l1, l2 := NewLab(t), NewLab(t)
	if l1.Subnet == l2.Subnet || l1.Prefix == l2.Prefix {
		t.Fatalf("two labs share subnet or prefix: %s/%s and %s/%s", l1.Prefix, l1.Subnet, l2.Prefix, l2.Subnet)
	}
	// Each subnet is on exactly one device: its own bridge.
	for _, l := range []*Lab{l1, l2} {
		out, err := exec.Command("ip", "-4", "-o", "addr", "show", "to", l.Subnet).CombinedOutput()
		if err != nil {
			t.Fatal(err)
		}
		if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); len(lines) != 1 || strings.Fields(lines[0])[1] != l.Bridge {
			t.Errorf("addresses in %s: %s", l.Subnet, out)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
