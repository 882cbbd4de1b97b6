package datadir

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The fcntl lock is per process, so "another server" is this test binary
// re-executed as a child running TestHelperProcess.
const (
	helperModeEnv = "K1S_DATADIR_TEST_HELPER"
	helperDirEnv  = "K1S_DATADIR_TEST_DIR"
)

// TestHelperProcess is not a test: in "hold" mode it takes the lock, says so
// on stdout and waits to be killed; in "try" mode it reports whether Acquire
// succeeded and exits.
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperModeEnv)
	if mode == "" {
		t.Skip("helper process only")
	}
	dir := os.Getenv(helperDirEnv)
	l, err := Acquire(dir)
	switch mode {
	case "hold":
		if err != nil {
			fmt.Printf("error: %v\n", err)
			os.Exit(2)
		}
		fmt.Println("locked")
		for { // until killed; a bare select{} would trip the deadlock detector
			time.Sleep(time.Minute)
		}
	case "try":
		if err != nil {
			fmt.Printf("error: %v\n", err)
		} else {
			fmt.Println("locked")
			l.Release()
		}
		os.Exit(0)
	}
}

func helper(t *testing.T, mode, dir string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperModeEnv+"="+mode, helperDirEnv+"="+dir)
	cmd.Stderr = os.Stderr
	return cmd
}

// holdInChild starts a child that holds the lock on dir and returns it once
// the lock is taken.
func holdInChild(t *testing.T, dir string) *exec.Cmd {
	t.Helper()
	cmd := helper(t, "hold", dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	select {
	case s := <-line:
		if s != "locked" {
			t.Fatalf("child could not take the lock: %q", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("child did not take the lock in time")
	}
	return cmd
}

// tryInChild reports what Acquire says in a separate process.
func tryInChild(t *testing.T, dir string) string {
	t.Helper()
	out, err := helper(t, "try", dir).Output()
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func TestAcquireCreatesDirAndOnlyTheLockFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	l, err := Acquire(dir)
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	defer l.Release()
	st, err := os.Stat(dir)
	if err != nil || !st.IsDir() {
		t.Fatalf("data dir not created: %v", err)
	}
	if st.Mode().Perm() != 0o700 {
		t.Errorf("data dir mode %o, want 700", st.Mode().Perm())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != ".k1s.lock" {
		t.Errorf("data dir holds %v, want only .k1s.lock", entries)
	}
}

func TestAcquireLeavesExistingFilesAlone(t *testing.T) {
	dir := t.TempDir()
	lock := filepath.Join(dir, ".k1s.lock")
	if err := os.WriteFile(lock, []byte("old content"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := Acquire(dir)
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	defer l.Release()
	if b, _ := os.ReadFile(lock); string(b) != "old content" {
		t.Errorf("lock file content changed to %q", b)
	}
}

func TestAcquireRefusesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k1s")
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := Acquire(path)
	if err == nil {
		l.Release()
		t.Fatal("Acquire on a regular file succeeded")
	}
	for _, w := range []string{path, "is a file, not a directory", "--data-dir"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
	if b, _ := os.ReadFile(path); string(b) != "x" {
		t.Error("the file was modified")
	}
}

func TestAcquireUnderAFileFails(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if l, err := Acquire(filepath.Join(file, "sub")); err == nil {
		l.Release()
		t.Fatal("Acquire below a regular file succeeded")
	}
}

func TestAcquireInUseByAnotherProcess(t *testing.T) {
	dir := t.TempDir()
	child := holdInChild(t, dir)
	pid := child.Process.Pid

	l, err := Acquire(dir)
	if err == nil {
		l.Release()
		t.Fatal("Acquire succeeded while another process holds the lock")
	}
	for _, w := range []string{dir, "in use by another k1s server or agent", fmt.Sprintf("(PID %d)", pid)} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}

	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	child.Wait()

	l, err = Acquire(dir)
	if err != nil {
		t.Fatalf("Acquire after the holder died: %v", err)
	}
	if err := l.Release(); err != nil {
		t.Errorf("Release: %v", err)
	}
}

func TestReleaseLetsOthersAcquire(t *testing.T) {
	dir := t.TempDir()
	l, err := Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := tryInChild(t, dir)
	if want := fmt.Sprintf("(PID %d)", os.Getpid()); !strings.Contains(got, "in use") || !strings.Contains(got, want) {
		t.Fatalf("child while we hold the lock: %q, want in-use error naming %s", got, want)
	}
	if err := l.Release(); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if got := tryInChild(t, dir); got != "locked" {
		t.Fatalf("child after Release: %q, want it to take the lock", got)
	}

	// And this process can take it again.
	l2, err := Acquire(dir)
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	if got := tryInChild(t, dir); !strings.Contains(got, "in use") {
		t.Errorf("child after re-Acquire: %q, want in-use", got)
	}
	if err := l2.Release(); err != nil {
		t.Errorf("Release: %v", err)
	}
}

func TestReleaseIsIdempotent(t *testing.T) {
	l, err := Acquire(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Release(); err != nil {
		t.Fatalf("first Release: %v", err)
	}
	if err := l.Release(); err != nil {
		t.Errorf("second Release: %v", err)
	}
	var nilLock *Lock
	if err := nilLock.Release(); err != nil {
		t.Errorf("Release on nil: %v", err)
	}
}
