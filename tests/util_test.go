package tests

import (
	"os"
	"os/exec"
	"testing"

	"github.com/k1s-io/k1s/tests/harness"
)

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func execOut(bin string, args ...string) (string, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = harness.Env()
	b, err := cmd.CombinedOutput()
	return string(b), err
}

func execOutEnv(env []string, bin string, args ...string) (string, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = harness.Env(env...)
	b, err := cmd.CombinedOutput()
	return string(b), err
}
