package harness

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ClockTicks is USER_HZ on Linux: the unit of CPUTicks.
const ClockTicks = 100

// NodePIDs are the server's process and those started from its data dir
// (containerd by its config path, shims by their executable).
func NodePIDs(s *Server) []int {
	pids := []int{s.PID()}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == s.PID() {
			continue
		}
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if strings.Contains(string(cmd), s.DataDir) || strings.HasPrefix(exe, s.DataDir) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// StatusField reads a numeric field (e.g. "VmRSS:", in kB) of /proc/<pid>/status.
func StatusField(pid int, field string) (int64, error) { return procField(pid, "status", field) }

// SmapsRollupField reads a kB field (e.g. "Pss:") of /proc/<pid>/smaps_rollup.
func SmapsRollupField(pid int, field string) (int64, error) {
	return procField(pid, "smaps_rollup", field)
}

// procField reads the number after field in /proc/<pid>/<file>.
func procField(pid int, file, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, file))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, field) {
			if f := strings.Fields(line); len(f) >= 2 {
				return strconv.ParseInt(f[1], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("%s not in /proc/%d/%s", field, pid, file)
}

// CPUTicks is utime+stime of pid from /proc/<pid>/stat.
func CPUTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 || i+2 > len(b) {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	// Fields after the ")" that closes the command name; utime and stime are 14th and 15th overall.
	f := strings.Fields(string(b[i+2:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	u, err := strconv.ParseInt(f[11], 10, 64)
	if err != nil {
		return 0, err
	}
	s, err := strconv.ParseInt(f[12], 10, 64)
	return u + s, err
}

// Usage is what IdleUsage measured over a set of processes.
type Usage struct {
	RSSKB, PSSKB int64
	CPUPercent   float64 // utime+stime over the window, % of one core
}

// IdleUsage sums RSS and PSS of pids now, then their CPU over window.
// Processes that are gone are skipped.
func IdleUsage(pids []int, window time.Duration) Usage {
	var u Usage
	var t0, t1 int64
	for _, p := range pids {
		if kb, err := StatusField(p, "VmRSS:"); err == nil {
			u.RSSKB += kb
		}
		if kb, err := SmapsRollupField(p, "Pss:"); err == nil {
			u.PSSKB += kb
		}
		if c, err := CPUTicks(p); err == nil {
			t0 += c
		}
	}
	time.Sleep(window)
	for _, p := range pids {
		if c, err := CPUTicks(p); err == nil {
			t1 += c
		}
	}
	u.CPUPercent = float64(t1-t0) / ClockTicks / window.Seconds() * 100
	return u
}

// ReadAll reads the file at path to its end, so that all of it is in the
// page cache: a benchmark then maps the pages of a binary the same way
// whether or not the linker just wrote it.
func ReadAll(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(io.Discard, f)
	return err
}

// DropPageCache writes back dirty pages and drops the clean page cache of
// the whole machine (root only): how pages came into the cache (written by
// a linker or an image unpack, or read) changes how many a process maps,
// so a memory benchmark starts every run from an empty cache.
func DropPageCache() error {
	syscall.Sync()
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("1"), 0o200)
}
