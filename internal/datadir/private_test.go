package datadir

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTightenSecretsAndDirs(t *testing.T) {
	data := t.TempDir()
	files := map[string]os.FileMode{
		"server/tls/server-ca.key":       0o644,
		"server/tls/server-ca.crt":       0o644, // public: stays
		"server/cred/admin.kubeconfig":   0o640,
		"server/token":                   0o604,
		"server/db/state.db":             0o644, // private through its 0700 dir
		"agent/pki/client-kubelet.key":   0o600, // already private: no note
		"agent/node-password":            0o666,
		"agent/containerd/some-file.key": 0o644, // not a private dir: left alone
	}
	for rel, mode := range files {
		p := filepath.Join(data, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(data, 0o755); err != nil {
		t.Fatal(err)
	}
	var notes []string
	if err := Tighten(data, func(s string) { notes = append(notes, s) }); err != nil {
		t.Fatal(err)
	}
	want := map[string]os.FileMode{
		"":                               0o700,
		"server/tls":                     0o700,
		"server/tls/server-ca.key":       0o600,
		"server/tls/server-ca.crt":       0o644,
		"server/cred/admin.kubeconfig":   0o600,
		"server/token":                   0o600,
		"server/db/state.db":             0o644,
		"server/db":                      0o700,
		"agent/pki/client-kubelet.key":   0o600,
		"agent/node-password":            0o600,
		"agent/containerd/some-file.key": 0o644,
	}
	for rel, mode := range want {
		st, err := os.Stat(filepath.Join(data, rel))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s: mode %04o, want %04o", rel, st.Mode().Perm(), mode)
		}
	}
	all := strings.Join(notes, "\n")
	for _, rel := range []string{"server/tls/server-ca.key", "server/token", "agent/node-password"} {
		if !strings.Contains(all, filepath.Join(data, rel)+" was readable by others") {
			t.Errorf("no note for %s in:\n%s", rel, all)
		}
	}
	if strings.Contains(all, "client-kubelet.key") || strings.Contains(all, "server-ca.crt") {
		t.Errorf("notes for files that needed nothing:\n%s", all)
	}
	// A second run has nothing to say.
	notes = nil
	if err := Tighten(data, func(s string) { notes = append(notes, s) }); err != nil || len(notes) > 0 {
		t.Errorf("second run: %v %v", err, notes)
	}
}

// A symlink in place of a private dir is not followed.
func TestTightenFollowsNoSymlink(t *testing.T) {
	data, elsewhere := t.TempDir(), t.TempDir()
	if err := os.Chmod(elsewhere, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(elsewhere, "x.key"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, filepath.Join(data, "server")); err != nil {
		t.Fatal(err)
	}
	if err := Tighten(data, func(string) {}); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(filepath.Join(elsewhere, "x.key")); st.Mode().Perm() != 0o644 {
		t.Errorf("followed the symlink: %04o", st.Mode().Perm())
	}
}
