package cli

import (
	"strings"
	"testing"
)

func TestClusterCreateFlagsAfterName(t *testing.T) {
	argv := []string{"k1s", "cluster", "create", "--wait", "60s", "ci", "--agents", "2", "--merge", "-p", "8080:30080"}
	out, ok := flagsFirst(argv, argv[5:])
	want := "k1s cluster create --wait 60s --agents 2 --merge -p 8080:30080 ci"
	if !ok || strings.Join(out, " ") != want {
		t.Fatalf("got %q %v, want %q", out, ok, want)
	}
	if _, ok := flagsFirst([]string{"k1s", "cluster", "create", "a", "b"}, []string{"a", "b"}); ok {
		t.Fatal("two names should not be accepted")
	}
}
