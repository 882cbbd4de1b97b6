package logging

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"k8s.io/klog/v2"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// logEverything logs one line of each kind and returns the logs' contents:
// the file and the terminal.
func logEverything(t *testing.T, debug bool) (file, term string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "logs")
	var tb syncBuffer
	log, logs, err := Setup(Options{Debug: debug, Dir: dir, Terminal: &tb})
	if err != nil {
		t.Fatal(err)
	}
	klog.Info("klog-info-line")
	klog.InfoS("klog-infos-line", "key", "value")
	klog.V(2).Info("klog-v2-line")
	klog.Background().Info("klog-background-line")
	klog.FromContext(context.Background()).Info("klog-context-line")
	klog.Warning("klog-warning-line")
	klog.ErrorS(errors.New("boom"), "klog-error-line")
	klog.FromContext(context.Background()).Error(errors.New("boom"), "klog-context-error-line")
	klog.Warning("Skipping API apps/v1beta1 because it has no resources.")
	klog.Warning(`[core] [Server #1] grpc: Server.processRPC failed to write status: connection error: desc = "transport is closing"`)
	logrus.Info("kine-info-line") // kine logs through logrus without a component
	logrus.Warn("kine-warning-line")
	log.Info("k1s-info-line")
	log.Debug("k1s-debug-line")
	log.Warn("k1s-warning-line")
	if err := logs.Close(); err != nil {
		t.Fatal(err)
	}
	klog.Info("klog-after-close")
	b, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	return string(b), tb.String()
}

func wantOnce(t *testing.T, where, text string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if n := strings.Count(text, l); n != 1 {
			t.Errorf("%s holds %q %d times, want once:\n%s", where, l, n, text)
		}
	}
}

func wantNone(t *testing.T, where, text string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if strings.Contains(text, l) {
			t.Errorf("%s holds %q, want it absent:\n%s", where, l, text)
		}
	}
}

// Without --debug, the first go to the file only; the others to both.
var (
	fileOnlyLines = []string{"klog-info-line", "klog-infos-line", "klog-background-line", "klog-context-line", "kine-info-line", "Skipping API apps/v1beta1", "grpc: Server.processRPC failed"}
	bothLines     = []string{"klog-warning-line", "klog-error-line", "klog-context-error-line", "kine-warning-line"}
	k1sLines      = []string{"k1s-info-line", "k1s-warning-line"}
)

func TestRouting(t *testing.T) {
	file, term := logEverything(t, false)
	wantOnce(t, "file", file, fileOnlyLines...)
	wantOnce(t, "file", file, bothLines...)
	wantOnce(t, "file", file, k1sLines...)
	wantNone(t, "file", file, "klog-v2-line", "k1s-debug-line", "klog-after-close")

	wantNone(t, "terminal", term, fileOnlyLines...)
	wantOnce(t, "terminal", term, bothLines...)
	wantOnce(t, "terminal", term, k1sLines...)
	wantNone(t, "terminal", term, "klog-v2-line", "k1s-debug-line", "klog-after-close")
	if !strings.Contains(file, "component=k1s") {
		t.Errorf("k1s's lines in the file lack their component field:\n%s", file)
	}
}

func TestRoutingDebug(t *testing.T) {
	file, term := logEverything(t, true)
	for where, text := range map[string]string{"file": file, "terminal": term} {
		wantOnce(t, where, text, fileOnlyLines...)
		wantOnce(t, where, text, bothLines...)
		wantOnce(t, where, text, k1sLines...)
		wantOnce(t, where, text, "klog-v2-line", "k1s-debug-line")
	}
}

func TestModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	// An existing directory and file with open modes are made private.
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, logs, err := Setup(Options{Dir: dir, Terminal: &syncBuffer{}})
	if err != nil {
		t.Fatal(err)
	}
	klog.Info("a line")
	if err := logs.Close(); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, logs.Path: 0o600} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Mode().Perm(); got != want {
			t.Errorf("%s has mode %v, want %v", path, got, want)
		}
	}

	// A new directory and file are private from the start.
	dir = filepath.Join(t.TempDir(), "new", "logs")
	_, logs, err = Setup(Options{Dir: dir, Terminal: &syncBuffer{}})
	if err != nil {
		t.Fatal(err)
	}
	klog.Info("a line")
	if err := logs.Close(); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, logs.Path: 0o600} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Mode().Perm(); got != want {
			t.Errorf("%s has mode %v, want %v", path, got, want)
		}
	}
}

func TestSetupErrors(t *testing.T) {
	if _, _, err := Setup(Options{}); err == nil {
		t.Error("Setup without a directory succeeded")
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := Setup(Options{Dir: filepath.Join(file, "logs"), Terminal: &syncBuffer{}})
	if err == nil || !strings.Contains(err.Error(), "cannot create log directory") {
		t.Errorf("Setup under a file: %v, want an error naming the log directory", err)
	}
}

// Rotation keeps the directory under (backups+1) × max file size.
func TestRotationCapsTotalSize(t *testing.T) {
	const maxMiB, backups = 1, 2
	dir := filepath.Join(t.TempDir(), "logs")
	_, logs, err := Setup(Options{Dir: dir, Terminal: &syncBuffer{}, MaxFileMiB: maxMiB, MaxBackups: backups})
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Repeat("x", 1000)
	for range 6 * 1024 { // ~6 MiB
		klog.Info(line)
	}
	klog.Warning("the last line")
	if err := logs.Close(); err != nil {
		t.Fatal(err)
	}
	const limit = (backups + 1) * maxMiB << 20
	// Old copies are removed in the background after a rotation.
	var total int64
	var names []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		total, names = 0, nil
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			info, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue // an old copy removed since ReadDir
			}
			if err != nil {
				t.Fatal(err)
			}
			total += info.Size()
			names = append(names, e.Name())
			if info.Mode().Perm() != 0o600 {
				t.Errorf("%s has mode %v, want 0600", e.Name(), info.Mode().Perm())
			}
		}
		if total <= limit && len(names) <= backups+1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if total > limit || len(names) > backups+1 {
		t.Fatalf("logs take %d bytes in %d files %v, want at most %d bytes in %d files", total, len(names), names, limit, backups+1)
	}
	if len(names) < 2 {
		t.Errorf("no rotation happened: %v", names)
	}
	b, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "the last line") {
		t.Errorf("the newest line is not in %s", FileName)
	}
}
