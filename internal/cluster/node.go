package cluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// startNode starts a node's k1s detached: in its own session, in the
// node's network namespace only (nsenter --net keeps the host's /sys,
// whose cgroup mounts the kubelet needs, and the host's mount namespace,
// so delete sees and removes the node's mounts), output to its log file.
// nsenter execs k1s in place, so the PID is k1s's.
func startNode(exe string, n *NodePlan) (Proc, error) {
	log, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return Proc{}, err
	}
	defer log.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return Proc{}, err
	}
	defer devnull.Close()
	cmd := exec.Command("nsenter", append([]string{"--net=/run/netns/" + n.Netns, "--", exe}, n.Args...)...)
	cmd.Env = nodeEnv()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, log, log
	cmd.Dir = n.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return Proc{}, fmt.Errorf("starting node %s: %w", n.Name, err)
	}
	pr := Proc{PID: cmd.Process.Pid, Start: startTime(cmd.Process.Pid)}
	// Not waited for: the node outlives this command. The kernel reparents
	// it when we exit; until then a zombie is reaped by Release.
	go func() { _, _ = cmd.Process.Wait() }()
	return pr, nil
}

// nodeEnv is this process's environment without K1S_* and KUBECONFIG,
// which would otherwise change what the node's flags say.
func nodeEnv() []string {
	var env []string
	for _, e := range os.Environ() {
		if strings.HasPrefix(e, "K1S_") || strings.HasPrefix(e, "KUBECONFIG=") || strings.HasPrefix(e, "NOTIFY_SOCKET=") {
			continue
		}
		env = append(env, e)
	}
	return env
}

// startTime is field 22 of /proc/PID/stat, 0 if the process is gone.
func startTime(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0
	}
	v, _ := strconv.ParseUint(f[19], 10, 64)
	return v
}

// Alive reports whether the recorded process still runs (same PID and
// start time, not a zombie).
func (p Proc) Alive() bool {
	if p.PID <= 0 || p.Start == 0 || startTime(p.PID) != p.Start {
		return false
	}
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(p.PID) + "/stat")
	i := strings.LastIndexByte(string(b), ')')
	return i >= 0 && !strings.HasPrefix(string(b[i+1:]), " Z")
}

// stop is stopAll for one process.
func (p Proc) stop(grace time.Duration) { stopAll([]Proc{p}, grace) }

// stopAll sends SIGTERM to the recorded processes (each only if it is
// still the same process), SIGKILL to those left after grace, and waits
// until they are gone.
func stopAll(procs []Proc, grace time.Duration) {
	alive := func() []Proc {
		var out []Proc
		for _, p := range procs {
			if p.Alive() {
				out = append(out, p)
			}
		}
		return out
	}
	for _, p := range alive() {
		_ = syscall.Kill(p.PID, syscall.SIGTERM)
	}
	deadline := time.Now().Add(grace)
	for len(alive()) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	for i := 0; i < 50; i++ {
		left := alive()
		if len(left) == 0 {
			return
		}
		for _, p := range left {
			_ = syscall.Kill(p.PID, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// killNetnsProcs SIGKILLs every process in network namespace ns (the
// node's containerd and shims, anything `cluster exec` started) until
// none is left. Each PID's namespace is checked again right before the
// signal, so a PID reused meanwhile is never hit.
func killNetnsProcs(ns string, timeout time.Duration) error {
	var st unix.Stat_t
	if err := unix.Stat("/run/netns/"+ns, &st); err != nil {
		return nil
	}
	want := fmt.Sprintf("net:[%d]", st.Ino)
	deadline := time.Now().Add(timeout)
	for {
		var pids []int
		dirs, _ := filepath.Glob("/proc/[0-9]*")
		for _, d := range dirs {
			pid, _ := strconv.Atoi(filepath.Base(d))
			if pid == os.Getpid() {
				continue
			}
			if link, err := os.Readlink(d + "/ns/net"); err == nil && link == want {
				pids = append(pids, pid)
			}
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes still in netns %s after SIGKILL: %v", ns, pids)
		}
		for _, pid := range pids {
			if fd, err := unix.PidfdOpen(pid, 0); err == nil {
				if link, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); err == nil && link == want {
					_ = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
				}
				unix.Close(fd)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cgroupDirs is a cgroup path in every mounted v1 hierarchy, or in the
// unified hierarchy on a v2 host.
func cgroupDirs(path string) []string {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return []string{filepath.Join("/sys/fs/cgroup", path)}
	}
	var out []string
	entries, _ := os.ReadDir("/sys/fs/cgroup")
	for _, e := range entries {
		full := filepath.Join("/sys/fs/cgroup", e.Name())
		if fi, err := os.Lstat(full); err == nil && fi.IsDir() {
			if _, err := os.Stat(filepath.Join(full, "cgroup.procs")); err == nil {
				out = append(out, filepath.Join(full, path))
			}
		}
	}
	return out
}

// killCgroupProcs SIGKILLs every process in the cgroup trees below dirs
// (the node's containers), until they are empty.
func killCgroupProcs(dirs []string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var pids []int
		for _, root := range dirs {
			_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
				if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
					return nil
				}
				b, _ := os.ReadFile(path)
				for _, f := range strings.Fields(string(b)) {
					if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
						pids = append(pids, pid)
					}
				}
				return nil
			})
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes still in cgroups %v after SIGKILL: %v", dirs, pids)
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// removeCgroups removes the (emptied) cgroup trees, deepest first.
func removeCgroups(dirs []string) error {
	var errs []error
	for _, root := range dirs {
		var all []string
		_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				all = append(all, path)
			}
			return nil
		})
		sort.Sort(sort.Reverse(sort.StringSlice(all)))
		for _, d := range all {
			if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// MountsBelow lists mount points at or below dir, deepest first.
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
	sort.Sort(sort.Reverse(sort.StringSlice(out)))
	return out
}

// unmountBelow detaches every mount below dir (containers' rootfs, Pod
// network namespaces, volumes), deepest first.
func unmountBelow(dir string) error {
	for i := 0; i < 5; i++ {
		m := MountsBelow(dir)
		if len(m) == 0 {
			return nil
		}
		for _, p := range m {
			_ = unix.Unmount(p, unix.MNT_DETACH)
		}
	}
	if m := MountsBelow(dir); len(m) > 0 {
		return fmt.Errorf("mounts left below %s: %v", dir, m)
	}
	return nil
}

// removeCNICache removes the entries the CNI plugins cache in
// /var/lib/cni/results (a fixed path) for the node's Pod sandboxes; its
// address leases live in its run dir and go with it.
func removeCNICache(n *NodePlan) {
	var ids []string
	for _, d := range []string{
		filepath.Join(n.RunDir, "containerd", "io.containerd.grpc.v1.cri", "sandboxes"),
		filepath.Join(n.DataDir, "agent", "containerd", "io.containerd.grpc.v1.cri", "sandboxes"),
	} {
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			ids = append(ids, e.Name())
		}
	}
	for _, id := range ids {
		m, _ := filepath.Glob("/var/lib/cni/results/*-" + id + "-*")
		for _, f := range m {
			_ = os.Remove(f)
		}
	}
}

// teardownNode stops a node and removes everything it made outside its
// namespace: its k1s (by recorded PID), containerd and shims (by
// namespace), containers (by the node's cgroup root), mounts, cgroups and
// cached CNI results. The namespace itself goes afterwards.
func teardownNode(n *NodePlan, pr Proc) error {
	var errs []error
	pr.stop(10 * time.Second)
	if err := killNetnsProcs(n.Netns, 15*time.Second); err != nil {
		errs = append(errs, err)
	}
	cg := cgroupDirs(n.CgroupRoot)
	if err := killCgroupProcs(cg, 15*time.Second); err != nil {
		errs = append(errs, err)
	}
	removeCNICache(n)
	if err := unmountBelow(n.Dir); err != nil {
		errs = append(errs, err)
	}
	if err := removeCgroups(cg); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
