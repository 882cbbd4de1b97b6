package secretsenc

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 12, 1, 10, 20, 30, 0, time.UTC)

func TestEnsureFollowsTheFlag(t *testing.T) {
	path := filepath.Join(t.TempDir(), "enc.json")

	use, note, err := Ensure(path, false, now)
	if err != nil || use || note != "" {
		t.Fatalf("off without a file: use=%v note=%q err=%v, want nothing", use, note, err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("off without a file wrote one: %v", err)
	}

	use, note, err = Ensure(path, true, now)
	if err != nil || !use || !strings.Contains(note, "k1s-20261201t102030z") {
		t.Fatalf("on: use=%v note=%q err=%v", use, note, err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("file mode %v %v, want 0600", st.Mode(), err)
	}
	c, _, err := Load(path)
	if err != nil || !c.On || len(c.Keys) != 1 || c.Active() != "k1s-20261201t102030z" {
		t.Fatalf("after on: %+v %v", c, err)
	}
	if raw, _ := base64.StdEncoding.DecodeString(c.Keys[0].Secret); len(raw) != 32 {
		t.Fatalf("key is %d bytes, want 32", len(raw))
	}

	// A second start changes nothing.
	before, _ := os.ReadFile(path)
	if use, note, err = Ensure(path, true, now.Add(time.Hour)); err != nil || !use || note != "" {
		t.Fatalf("second start: use=%v note=%q err=%v", use, note, err)
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Fatal("second start rewrote the file")
	}

	// Off keeps the key for reading, identity first for writing.
	if use, note, err = Ensure(path, false, now); err != nil || !use || !strings.Contains(note, "stay for reading") {
		t.Fatalf("turning off: use=%v note=%q err=%v", use, note, err)
	}
	data, _ := os.ReadFile(path)
	if i, j := strings.Index(string(data), "identity"), strings.Index(string(data), "secretbox"); i < 0 || j < 0 || i > j {
		t.Fatalf("off: identity must come before secretbox:\n%s", data)
	}
	off, _, _ := Load(path)
	if off.On || off.Active() != "" || len(off.Keys) != 1 || off.Keys[0] != c.Keys[0] {
		t.Fatalf("off: %+v", off)
	}

	// Back on with the same key.
	if use, _, err = Ensure(path, true, now); err != nil || !use {
		t.Fatal(err)
	}
	if on, _, _ := Load(path); !on.On || on.Keys[0] != c.Keys[0] {
		t.Fatalf("back on: %+v", on)
	}
}

func TestMarshalIsWhatTheApiserverReads(t *testing.T) {
	k1, _ := NewKey(now, nil)
	k2, _ := NewKey(now, []Key{k1})
	if k1.Name == k2.Name || k2.Name != "k1s-20261201t102030z-2" {
		t.Fatalf("names %s %s", k1.Name, k2.Name)
	}
	data, err := Config{On: true, Keys: []Key{k2, k1}}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"kind": "EncryptionConfiguration"`, `"apiVersion": "apiserver.config.k8s.io/v1"`, `"secrets"`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("missing %s in\n%s", want, data)
		}
	}
	back, err := Parse(data)
	if err != nil || !back.On || len(back.Keys) != 2 || back.Keys[0] != k2 || back.Keys[1] != k1 {
		t.Fatalf("round trip: %+v %v", back, err)
	}
}

func TestParseRefusesWhatK1sWouldLose(t *testing.T) {
	for name, c := range map[string]struct{ json, want string }{
		"other resource": {`{"kind":"EncryptionConfiguration","apiVersion":"apiserver.config.k8s.io/v1","resources":[{"resources":["configmaps"],"providers":[{"identity":{}}]}]}`, `exactly the resource "secrets"`},
		"aescbc":         {`{"kind":"EncryptionConfiguration","apiVersion":"apiserver.config.k8s.io/v1","resources":[{"resources":["secrets"],"providers":[{"aescbc":{"keys":[{"name":"a","secret":"c2VjcmV0"}]}},{"identity":{}}]}]}`, "provider 1 is not one k1s writes"},
		"short key":      {`{"kind":"EncryptionConfiguration","apiVersion":"apiserver.config.k8s.io/v1","resources":[{"resources":["secrets"],"providers":[{"secretbox":{"keys":[{"name":"a","secret":"c2VjcmV0"}]}},{"identity":{}}]}]}`, `"a" is not 32 bytes`},
		"no identity":    {`{"kind":"EncryptionConfiguration","apiVersion":"apiserver.config.k8s.io/v1","resources":[{"resources":["secrets"],"providers":[]}]}`, "no identity provider"},
		"not json":       {`resources: [secrets]`, "not an encryption configuration"},
	} {
		_, err := Parse([]byte(c.json))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", name, err, c.want)
		}
	}
}

func TestEnsureRefusesABrokenFileAndKeepsIt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "enc.json")
	if err := os.WriteFile(path, []byte("{broken"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Ensure(path, true, now); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("broken file: %v, want an error naming it", err)
	}
	if data, _ := os.ReadFile(path); string(data) != "{broken" {
		t.Fatalf("the broken file was replaced: %q", data)
	}
}

func TestKeyOf(t *testing.T) {
	for raw, want := range map[string]string{
		"k8s\x00\x0a\x0fv1":                       "",
		"k8s:enc:secretbox:v1:k1s-a:\x01\x02":     "k1s-a",
		"k8s:enc:aescbc:v1:key1:\x01":             "?",
		"k8s:enc:secretbox:v1:no-terminator-ever": "?",
		`{"kind":"Secret"}`:                       "",
	} {
		if got := KeyOf([]byte(raw)); got != want {
			t.Errorf("KeyOf(%q) = %q, want %q", raw, got, want)
		}
	}
}
