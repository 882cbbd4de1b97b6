package manifests

import (
	"os"
	"strings"
	"testing"
)

// Builtin holds exactly the *.yaml files of this folder, keyed by name
// without extension, with their content as on disk.
func TestBuiltinMatchesFolder(t *testing.T) {
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".yaml") || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
			continue
		}
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		want[strings.TrimSuffix(name, ".yaml")] = string(b)
	}
	got := Builtin()
	if len(got) != len(want) {
		t.Errorf("Builtin has %d entries, the folder %d *.yaml files", len(got), len(want))
	}
	for name, content := range want {
		if string(got[name]) != content {
			t.Errorf("Builtin()[%q] differs from %s.yaml", name, name)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("Builtin has %q, which is no *.yaml file here", name)
		}
		if strings.Contains(name, ".") || strings.EqualFold(name, "README") {
			t.Errorf("Builtin key %q: want base names without extension, and no README", name)
		}
	}
}

func TestBuiltinReturnsCopies(t *testing.T) {
	first := Builtin()
	for name, b := range first {
		if len(b) == 0 {
			t.Errorf("%s.yaml is empty", name)
			continue
		}
		orig := b[0]
		b[0] ^= 0xff
		if Builtin()[name][0] != orig {
			t.Errorf("changing the bytes of %s changed what the next Builtin returns", name)
		}
	}
}

// The CoreDNS image tag in coredns.yaml is the version cmd/k1s-coredns
// builds (its go.mod), which the Makefile names the image after.
func TestCoreDNSTagMatchesItsModule(t *testing.T) {
	mod, err := os.ReadFile("../cmd/k1s-coredns/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	version := ""
	for _, line := range strings.Split(string(mod), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "github.com/coredns/coredns" {
			version = f[1]
		}
	}
	if version == "" {
		t.Fatal("cmd/k1s-coredns/go.mod requires no github.com/coredns/coredns")
	}
	want := `image: "%{SYSTEM_DEFAULT_REGISTRY}%k1s-io/coredns:` + version + `"`
	if !strings.Contains(string(Builtin()["coredns"]), want) {
		t.Errorf("coredns.yaml has no %s (the version cmd/k1s-coredns/go.mod requires)", want)
	}
}
