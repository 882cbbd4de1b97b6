package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/k1s-io/k1s/tests/harness"
)

// TestSnapshots: `k1s snapshot save` takes a snapshot while the server
// runs; scheduled snapshots follow --snapshot-schedule and keep
// --snapshot-retention; `--cluster-reset --cluster-reset-restore-path`
// brings back exactly the saved objects, keeps the replaced database, and
// refuses a damaged snapshot with nothing changed.
func TestSnapshots(t *testing.T) {
	s := startServer(t, "--snapshot-schedule", "@every 2s", "--snapshot-retention", "2")
	kc := func(args ...string) string {
		t.Helper()
		out, err := s.Kubectl(args...)
		if err != nil {
			t.Fatal(out, err)
		}
		return out
	}
	kc("create", "configmap", "kept", "--from-literal=v=saved")
	kc("create", "configmap", "deleted-later", "--from-literal=v=saved")
	kc("create", "secret", "generic", "s", "--from-literal=v=saved")

	out := k1sCmd(t, s, "snapshot", "save", "--name", "before")
	snapDir := filepath.Join(s.DataDir, "server", "snapshots")
	matches, _ := filepath.Glob(filepath.Join(snapDir, "before-*.db"))
	if len(matches) != 1 {
		t.Fatalf("snapshot save (%s): %v in %s, want one before-*.db", strings.TrimSpace(out), matches, snapDir)
	}
	saved := matches[0]
	mustContain(t, out, saved, "save output")
	for _, p := range []string{saved, saved + ".sha256"} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 0600", p, fi, err)
		}
	}

	// Scheduled: several taken, two kept, the manual one never pruned.
	eventually(t, time.Minute, "scheduled snapshots pruned to --snapshot-retention", func() error {
		if !strings.Contains(s.Log(), "removed old snapshots scheduled-") {
			return fmt.Errorf("no scheduled snapshot removed yet")
		}
		ls := k1sCmd(t, s, "snapshot", "ls")
		if n := strings.Count(ls, "\nscheduled-"); n != 2 || !strings.Contains(ls, "\nbefore-") {
			return fmt.Errorf("snapshot ls shows %d scheduled ones, want 2, and the manual one:\n%s", n, ls)
		}
		return nil
	})

	// The cluster moves on.
	kc("create", "configmap", "created-later", "--from-literal=v=later")
	kc("patch", "configmap", "kept", "--type=merge", "-p", `{"data":{"v":"changed"}}`)
	kc("delete", "configmap", "deleted-later")
	if err := s.Stop(90 * time.Second); err != nil {
		t.Fatal(err)
	}
	base := append([]string{}, s.Args...)

	t.Run("damaged snapshot is refused", func(t *testing.T) {
		before := withoutLogs(snapshot(t, s.DataDir))
		bad := filepath.Join(t.TempDir(), "bad.db")
		copyFile(t, saved, bad)
		copyFile(t, saved+".sha256", bad+".sha256")
		data, err := os.ReadFile(bad)
		if err != nil {
			t.Fatal(err)
		}
		data[len(data)/2] ^= 0xff
		if err := os.WriteFile(bad, data, 0o600); err != nil {
			t.Fatal(err)
		}
		code, out, err := harness.Run(60*time.Second, append(append([]string{}, base...), "--cluster-reset", "--cluster-reset-restore-path", bad)...)
		if err != nil || code == 0 {
			t.Fatalf("exit %d %v, want a refusal:\n%s", code, err, out)
		}
		mustContain(t, out, "is damaged", "refusal")
		mustContain(t, out, "nothing was changed", "refusal")
		if d := diffSnapshots(before, withoutLogs(snapshot(t, s.DataDir))); len(d) > 0 {
			t.Errorf("a refused restore changed the data dir: %v", d)
		}
	})

	s.Args = append(append([]string{}, base...), "--cluster-reset", "--cluster-reset-restore-path", saved)
	startExisting(t, s)
	mustContain(t, s.Log(), "datastore restored from snapshot "+saved, "server log")
	if got := kc("get", "configmaps", "-o", "jsonpath={range .items[*]}{.metadata.name}={.data.v} {end}"); !strings.Contains(got, "kept=saved") || !strings.Contains(got, "deleted-later=saved") || strings.Contains(got, "created-later") {
		t.Errorf("ConfigMaps after the restore: %q, want kept=saved and deleted-later=saved, no created-later", got)
	}
	if got := kc("get", "secret", "s", "-o", "jsonpath={.data.v}"); got != "c2F2ZWQ=" { // base64 "saved"
		t.Errorf("Secret after the restore: %q", got)
	}
	kept, _ := filepath.Glob(filepath.Join(s.DataDir, "server", "db", "state.db.pre-restore-*"))
	if len(kept) == 0 {
		t.Errorf("the replaced database was not kept beside the restored one")
	}

	// A restart with the same flags (as a service manager does) does not
	// restore again over what happened since.
	kc("create", "configmap", "after-restore", "--from-literal=v=new")
	if err := s.Stop(90 * time.Second); err != nil {
		t.Fatal(err)
	}
	startExisting(t, s)
	mustContain(t, s.Log(), "already restored from", "server log after a restart with the same flags")
	if got := kc("get", "configmap", "after-restore", "-o", "jsonpath={.data.v}"); got != "new" {
		t.Errorf("a restart with --cluster-reset lost what was written after the restore: %q", got)
	}
}
