// Package preflight checks, before a node starts, that this host can run
// one, and says what to do when it cannot. Problems that would make a
// component fail later are errors; the rest are warnings.
package preflight

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Host is where the checks look; tests point it at a fake tree.
type Host struct {
	Root     string // "/" on a real host
	UID      int
	LookPath func(string) (string, error)
}

// Real is this machine.
func Real() Host { return Host{Root: "/", UID: os.Getuid(), LookPath: exec.LookPath} }

// Result of the checks.
type Result struct {
	Errors   []string
	Warnings []string
}

func (h Host) read(p string) (string, error) {
	b, err := os.ReadFile(filepath.Join(h.Root, p))
	return string(b), err
}

// RequiredControllers are the cgroup controllers the kubelet needs.
var RequiredControllers = []string{"cpu", "cpuacct", "cpuset", "memory", "pids"}

// Check runs every check.
func (h Host) Check() Result {
	var r Result
	if h.UID != 0 {
		r.Errors = append(r.Errors, "k1s must run as root to run a node (or pass --disable-agent)")
	}
	for _, tool := range []string{"iptables", "iptables-save", "iptables-restore"} {
		if _, err := h.LookPath(tool); err != nil {
			r.Errors = append(r.Errors, fmt.Sprintf("%s not found: install it (Debian: apt-get install iptables)", tool))
			break
		}
	}
	if missing := h.missingControllers(); len(missing) > 0 {
		r.Errors = append(r.Errors, fmt.Sprintf("cgroup controllers missing: %s (the kernel must provide them and /sys/fs/cgroup must be mounted)", strings.Join(missing, ", ")))
	}
	if fs, err := h.read("proc/filesystems"); err == nil && !strings.Contains(fs, "\toverlay\n") {
		r.Errors = append(r.Errors, "the kernel does not support the overlay filesystem, which containerd's snapshotter needs")
	}
	if swaps, err := h.read("proc/swaps"); err == nil && len(strings.Split(strings.TrimSpace(swaps), "\n")) > 1 {
		r.Warnings = append(r.Warnings, "swap is on: the kubelet refuses to start with swap unless --kubelet-arg=fail-swap-on=false; consider `swapoff -a`")
	}
	return r
}

// missingControllers reads /proc/cgroups (enabled controllers) and, on a
// cgroup v2 host, cgroup.controllers.
func (h Host) missingControllers() []string {
	have := map[string]bool{}
	if s, err := h.read("sys/fs/cgroup/cgroup.controllers"); err == nil {
		for _, c := range strings.Fields(s) {
			have[c] = true
		}
		have["cpuacct"] = have["cpu"] // v2 folds cpuacct into cpu
	}
	if s, err := h.read("proc/cgroups"); err == nil {
		sc := bufio.NewScanner(strings.NewReader(s))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) == 4 && !strings.HasPrefix(f[0], "#") && f[3] == "1" {
				have[f[0]] = true
			}
		}
	}
	var missing []string
	for _, c := range RequiredControllers {
		if !have[c] {
			missing = append(missing, c)
		}
	}
	return missing
}

// Error joins the errors into one, or is nil.
func (r Result) Error() error {
	if len(r.Errors) == 0 {
		return nil
	}
	return fmt.Errorf("this host cannot run a node: %s", strings.Join(r.Errors, "; "))
}
