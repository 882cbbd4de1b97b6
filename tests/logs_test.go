package tests

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/k1s-io/k1s/tests/harness"
)

// maxTerminalLines bounds what k1s prints before it is ready. With the
// components' klog output on the terminal it was about 600 lines (server
// with a node, in these tests) to 1,180 (make run). Now a server with a
// node prints ~65 lines of its own plus 30-40 upstream start-up errors
// whose number depends on timing (and, here, on the add-on images the
// tests do not ship); a control plane alone ~35 in all.
const maxTerminalLines = 150

// INFO lines of the components' klog output: the apiserver's (klog's
// global logger) and the kubelet's (a contextual logger).
const (
	apiserverLine = "Serving securely on"
	kubeletLine   = "Starting kubelet main sync loop"
)

// klogInfo matches the header of a klog INFO line.
var klogInfo = regexp.MustCompile(`(?m)^I\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ [^ ]+:\d+\] .*$`)

// checkLogs checks that the terminal of s, once it logged ready, shows
// k1s's step lines, few other lines and no klog INFO line, and that
// <data-dir>/logs holds the components' INFO lines, private to root.
func checkLogs(t *testing.T, s *harness.Server, ready string, infoLines []string, steps ...string) {
	t.Helper()
	if err := s.WaitLog(ready, 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	term := s.Log()
	i := strings.Index(term, ready)
	before := strings.Split(strings.TrimRight(term[:i], "\n"), "\n")
	t.Logf("%d terminal lines before %q", len(before), ready)
	if len(before) >= maxTerminalLines {
		t.Errorf("%d terminal lines before %q, want fewer than %d:\n%s", len(before), ready, maxTerminalLines, term[:i])
	}
	for _, step := range steps {
		mustContain(t, term, "step "+step+": ready", "terminal")
	}
	if info := klogInfo.FindAllString(term, 5); len(info) > 0 {
		t.Errorf("klog INFO lines on the terminal, e.g. %q", info)
	}

	comp := s.ComponentLog()
	mustContain(t, comp, ready, s.ComponentLogPath()+" (k1s's own lines)")
	for _, l := range infoLines {
		mustContain(t, comp, l, s.ComponentLogPath())
		if strings.Contains(term, l) {
			t.Errorf("the INFO line %q is on the terminal", l)
		}
	}
	for path, want := range map[string]os.FileMode{filepath.Dir(s.ComponentLogPath()): 0o700, s.ComponentLogPath(): 0o600} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Mode().Perm(); got != want {
			t.Errorf("%s has mode %v, want %v", path, got, want)
		}
	}
}
