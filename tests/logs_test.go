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

// maxTerminalLines bounds what k1s prints before "k1s is ready"; with the
// components' klog output on the terminal it was about 1,180 lines.
const maxTerminalLines = 100

// apiserverLine is an INFO line of the kube-apiserver's klog output.
const apiserverLine = "Serving securely on"

// klogInfo matches the header of a klog INFO line.
var klogInfo = regexp.MustCompile(`(?m)^I\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ [^ ]+:\d+\] .*$`)

// checkLogs checks that the terminal of a ready server s shows k1s's step
// lines and few others, and that <data-dir>/logs holds the components'
// klog output, private to root.
func checkLogs(t *testing.T, s *harness.Server, steps ...string) {
	t.Helper()
	if err := s.WaitLog("k1s is ready", 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	term := s.Log()
	i := strings.Index(term, "k1s is ready")
	before := strings.Split(strings.TrimRight(term[:i], "\n"), "\n")
	t.Logf("%d terminal lines before \"k1s is ready\"", len(before))
	if len(before) >= maxTerminalLines {
		t.Errorf("%d terminal lines before \"k1s is ready\", want fewer than %d:\n%s", len(before), maxTerminalLines, term[:i])
	}
	for _, step := range steps {
		mustContain(t, term, "step "+step+": ready", "terminal")
	}
	if strings.Contains(term, apiserverLine) {
		t.Errorf("the apiserver's INFO line %q is on the terminal", apiserverLine)
	}
	if info := klogInfo.FindAllString(term, 5); len(info) > 0 {
		t.Errorf("klog INFO lines on the terminal, e.g. %q", info)
	}

	comp := s.ComponentLog()
	mustContain(t, comp, apiserverLine, s.ComponentLogPath())
	mustContain(t, comp, "k1s is ready", s.ComponentLogPath()+" (k1s's own lines)")
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
