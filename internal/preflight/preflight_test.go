package preflight

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func fakeHost(t *testing.T, files map[string]string, tools ...string) Host {
	t.Helper()
	root := t.TempDir()
	for p, c := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	have := map[string]bool{}
	for _, tl := range tools {
		have[tl] = true
	}
	return Host{Root: root, UID: 0, LookPath: func(n string) (string, error) {
		if have[n] {
			return "/usr/sbin/" + n, nil
		}
		return "", errors.New("not found")
	}}
}

const cgroupsV1 = "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpuset\t1\t1\t1\ncpu\t2\t1\t1\ncpuacct\t2\t1\t1\nmemory\t3\t1\t1\npids\t4\t1\t1\n"

var allTools = []string{"iptables", "iptables-save", "iptables-restore"}

func TestGoodHostPasses(t *testing.T) {
	h := fakeHost(t, map[string]string{"proc/cgroups": cgroupsV1, "proc/filesystems": "nodev\ttmpfs\nnodev\toverlay\n", "proc/swaps": "Filename\tType\tSize\tUsed\tPriority\n"}, allTools...)
	r := h.Check()
	if r.Error() != nil || len(r.Warnings) > 0 {
		t.Fatalf("errors %v warnings %v", r.Errors, r.Warnings)
	}
}

func TestProblemsAreNamed(t *testing.T) {
	h := fakeHost(t, map[string]string{
		"proc/cgroups":     strings.Replace(cgroupsV1, "memory\t3\t1\t1", "memory\t3\t1\t0", 1),
		"proc/filesystems": "nodev\ttmpfs\n",
		"proc/swaps":       "Filename\tType\tSize\tUsed\tPriority\n/swapfile file 1024 0 -2\n",
	}, "iptables")
	h.UID = 1000
	r := h.Check()
	msg := r.Error().Error()
	for _, want := range []string{"must run as root", "iptables-save not found", "cgroup controllers missing: memory", "overlay"} {
		if !strings.Contains(msg, want) {
			t.Errorf("want %q in %q", want, msg)
		}
	}
	if len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "swap is on") {
		t.Errorf("warnings %v", r.Warnings)
	}
}

func TestCgroupV2Controllers(t *testing.T) {
	h := fakeHost(t, map[string]string{"sys/fs/cgroup/cgroup.controllers": "cpuset cpu io memory pids\n", "proc/filesystems": "nodev\toverlay\n"}, allTools...)
	if err := h.Check().Error(); err != nil {
		t.Fatal(err)
	}
}
