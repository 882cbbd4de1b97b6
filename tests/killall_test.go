package tests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/k1s-io/k1s/tests/harness"
)

// killallScript is scripts/k1s-killall.sh of the checkout under test.
func killallScript() string { return harness.KillallScript() }

// lockHolderEnv makes the test binary a stand-in for a running k1s: it
// holds the fcntl lock on the named .k1s.lock, as datadir.Acquire does.
const lockHolderEnv = "KILLALL_TEST_HOLD_LOCK"

// TestKillallHelperLockHolder is not a test: run with lockHolderEnv set, it
// takes the lock, says so on stdout and waits to be stopped.
func TestKillallHelperLockHolder(t *testing.T) {
	path := os.Getenv(lockHolderEnv)
	if path == "" {
		t.Skip("helper process for TestKillall*, started by them")
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(2)
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK}
	if err := unix.FcntlFlock(f.Fd(), unix.F_SETLK, &lk); err != nil {
		fmt.Println("error:", err)
		os.Exit(2)
	}
	fmt.Println("locked")
	for {
		time.Sleep(time.Minute)
	}
}

// proc is a process the test started, with a channel closed when it ends.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// startProc starts cmd, and kills it (by its PID) when the test ends.
func startProc(t *testing.T, cmd *exec.Cmd) *proc {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %q: %v", cmd.Args, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		if !p.exited() {
			_ = cmd.Process.Kill()
		}
		<-p.done
	})
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// TestKillallKeepsHostRoutesAndOtherProcesses: k1s-killall.sh, run in a
// lab host whose own network lies inside the cluster CIDR, deletes the
// host-gw route flannel would have made but keeps the host's connected
// route and a static one; it stops the process holding the data dir's lock
// and one running an executable k1s installed, and leaves alone processes
// whose command line merely names the data or run dir.
func TestKillallKeepsHostRoutesAndOtherProcesses(t *testing.T) {
	lab := harness.NewLab(t)
	h := lab.AddHost(t, "killall")
	ctx := context.Background()
	// A LAN inside 10.42.0.0/16 (one end of a veth pair: no dummy links on
	// this kernel), a route like flannel's host-gw ones, and a static route.
	for _, args := range [][]string{
		{"link", "add", "lan0", "type", "veth", "peer", "name", "lan1"},
		{"addr", "add", "10.42.7.1/24", "dev", "lan0"},
		{"link", "set", "lan0", "up"},
		{"link", "set", "lan1", "up"},
		{"route", "add", "10.42.9.0/24", "via", "10.42.7.2"},
		{"route", "add", "10.42.10.0/24", "via", "10.42.7.3", "proto", "static"},
	} {
		if _, err := h.Run(ctx, "ip", args...); err != nil {
			t.Fatal(err)
		}
	}

	dir := t.TempDir()
	s := &harness.Server{Dir: dir, DataDir: filepath.Join(dir, "data"), RunDir: filepath.Join(dir, "run"),
		Prefix: h.NetPrefix(), CgroupRoot: "/k1s-test-killall-none"}
	bin := filepath.Join(s.DataDir, "agent", "bin")
	for _, d := range []string{bin, filepath.Join(s.RunDir, "containerd"), s.KubeletDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}

	// "k1s": holds the data dir's lock.
	holder := exec.Command(os.Args[0], "-test.run=^TestKillallHelperLockHolder$", "-test.count=1")
	holder.Env = append(os.Environ(), lockHolderEnv+"="+filepath.Join(s.DataDir, ".k1s.lock"))
	out, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	k1s := startProc(t, holder)
	buf := make([]byte, 64)
	if n, _ := out.Read(buf); !strings.HasPrefix(string(buf[:n]), "locked") {
		t.Fatalf("lock holder: %q", buf[:n])
	}
	// "A shim": an executable k1s installed in its bin dir.
	sleepPath, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	copyFile(t, sleepPath, filepath.Join(bin, "containerd-shim-runc-v2"))
	if err := os.Chmod(filepath.Join(bin, "containerd-shim-runc-v2"), 0o755); err != nil {
		t.Fatal(err)
	}
	shim := startProc(t, exec.Command(filepath.Join(bin, "containerd-shim-runc-v2"), "600"))
	// Bystanders: their command lines name k1s's paths, their executables are not k1s's.
	var bystanders []*proc
	for _, argv0 := range []string{filepath.Join(bin, "containerd"), filepath.Join(s.RunDir, "containerd", "x")} {
		c := exec.Command(sleepPath, "600")
		c.Args[0] = argv0
		bystanders = append(bystanders, startProc(t, c))
	}

	outK, err := s.Killall()
	if err != nil {
		t.Fatalf("k1s-killall.sh: %v\n%s", err, outK)
	}
	t.Logf("k1s-killall.sh:\n%s", outK)

	routes, err := h.Run(ctx, "ip", "-4", "route", "show")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"10.42.7.0/24 dev lan0 proto kernel", "10.42.10.0/24 via 10.42.7.3 dev lan0 proto static"} {
		if !strings.Contains(routes, want) {
			t.Errorf("route %q is gone after k1s-killall.sh; routes now:\n%s", want, routes)
		}
	}
	if strings.Contains(routes, "10.42.9.0/24") {
		t.Errorf("the host-gw style route 10.42.9.0/24 via 10.42.7.2 is still there:\n%s", routes)
	}
	if !k1s.exited() {
		t.Error("the process holding the data dir's lock (k1s) is still running")
	}
	if !shim.exited() {
		t.Error("the process running <data-dir>/agent/bin/containerd-shim-runc-v2 is still running")
	}
	for _, b := range bystanders {
		if b.exited() {
			t.Errorf("k1s-killall.sh stopped a bystander (%s) because its command line names a k1s path", b.cmd.Args[0])
		}
	}
	if _, err := os.Stat(s.RunDir); !os.IsNotExist(err) {
		t.Errorf("run dir %s not removed: %v", s.RunDir, err)
	}
	if _, err := os.Stat(filepath.Join(s.DataDir, ".k1s.lock")); err != nil {
		t.Errorf("data dir touched: %v", err)
	}
}

// TestKillallRefusesSystemDirs: K1S_RUN_DIR=/run and K1S_DATA_DIR=/ are
// refused with a message naming the variable, and nothing is stopped or
// removed. The script runs in a throw-away sandbox, so that even a script
// that ignored the setting could not harm this machine: new user, mount,
// PID and network namespaces, root inside being an unprivileged user
// outside (it cannot delete the host's files), a tmpfs over /run, and only
// the sandbox's own processes in sight.
func TestKillallRefusesSystemDirs(t *testing.T) {
	const sandbox = `set -u
mount -t proc proc /proc || exit 90
mount -t tmpfs k1s-killall-test /run || exit 90
if [ -d /var/lib/cni ]; then mount -t tmpfs k1s-killall-test /var/lib/cni || exit 90; fi
mkdir -p /run/k1s/containerd && echo x > /run/k1s/containerd/canary && echo x > /run/canary || exit 90
(exec -a /run/k1s/containerd/bystander sleep 600) &
bash -c 'sleep 600; :' bystander --data-dir / &
sleep 0.3
bash "$KILLALL"
echo "rc=$?"
alive=0
for p in $(jobs -p); do kill -0 "$p" 2>/dev/null && alive=$((alive+1)); done
echo "bystanders alive: $alive"
for f in /run/canary /run/k1s/containerd/canary; do [ -f "$f" ] && echo "kept $f"; done
`
	// Root in the sandbox is this unprivileged user outside.
	const outsideID = 100000
	for _, c := range []struct {
		name     string
		env      []string
		refusing string
	}{
		{"run dir /run", []string{"K1S_RUN_DIR=/run", "K1S_DATA_DIR=/run/k1s-data-none"}, "refusing K1S_RUN_DIR=/run:"},
		{"data dir /", []string{"K1S_DATA_DIR=/", "K1S_RUN_DIR=/run/k1s"}, "refusing K1S_DATA_DIR=/:"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, "bash", "-c", sandbox)
			cmd.Env = harness.Env(append(c.env, "KILLALL="+killallScript(), "K1S_CGROUP_ROOT=/k1s-test-killall-none")...)
			cmd.SysProcAttr = &syscall.SysProcAttr{
				Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWNET,
				UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: outsideID, Size: 1}},
				GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: outsideID, Size: 1}},
				Credential:  &syscall.Credential{Uid: 0, Gid: 0},
			}
			outB, err := cmd.CombinedOutput()
			out := string(outB)
			if err != nil {
				t.Fatalf("sandbox: %v\n%s", err, out)
			}
			for _, want := range []string{c.refusing, "nothing was stopped or removed", "rc=2\n", "bystanders alive: 2\n",
				"kept /run/canary\n", "kept /run/k1s/containerd/canary\n"} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
		})
	}
}
