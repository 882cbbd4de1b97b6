package node

import (
	"strings"
	"testing"
)

func TestLowDiskWarning(t *testing.T) {
	const gib = 1 << 30
	if w := lowDiskWarning("/d", 16*gib, 100*gib); w != "" {
		t.Errorf("16%% free: %q, want no warning", w)
	}
	w := lowDiskWarning("/d", 14*gib, 100*gib)
	for _, want := range []string{"14.0%", "/d", "imagefs.available < 15%", "--data-dir"} {
		if !strings.Contains(w, want) {
			t.Errorf("14%% free: %q lacks %q", w, want)
		}
	}
	if w := lowDiskWarning("/d", 5*gib, 100*gib); !strings.Contains(w, "nodefs.available < 10%") {
		t.Errorf("5%% free: %q, want the nodefs threshold named", w)
	}
	if w := lowDiskWarning("/d", 0, 0); w != "" {
		t.Errorf("no size: %q", w)
	}
}
