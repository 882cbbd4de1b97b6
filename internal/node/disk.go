package node

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// The kubelet's default hard eviction thresholds (k1s keeps them): below
// them it taints the node with disk pressure, evicts Pods and schedules
// no new ones.
const (
	imagefsMinFree = 15 // percent, imagefs.available
	nodefsMinFree  = 10 // percent, nodefs.available
)

// lowDiskWarning says, for a filesystem with avail of total bytes free to
// unprivileged users (what the kubelet counts), why Pods will not run
// there; "" when there is room.
func lowDiskWarning(dir string, avail, total uint64) string {
	if total == 0 {
		return ""
	}
	pct := float64(avail) * 100 / float64(total)
	if pct >= imagefsMinFree {
		return ""
	}
	which := fmt.Sprintf("images (imagefs.available < %d%%)", imagefsMinFree)
	if pct < nodefsMinFree {
		which = fmt.Sprintf("Pods and images (nodefs.available < %d%%)", nodefsMinFree)
	}
	return fmt.Sprintf("only %.1f%% of the disk holding %s is free (%.1f of %.1f GiB): the kubelet will report disk pressure for %s, evict Pods and start no new ones; free space there or move --data-dir",
		pct, dir, float64(avail)/(1<<30), float64(total)/(1<<30), which)
}

// diskWarning statfs's dir; errors are not fatal (the kubelet says more).
func diskWarning(dir string) string {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return ""
	}
	bs := uint64(st.Bsize)
	return lowDiskWarning(dir, st.Bavail*bs, st.Blocks*bs)
}
