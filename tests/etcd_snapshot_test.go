package tests

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/k1s-io/k1s/tests/harness"
)

// k1sIn runs `k1s ARGS --data-dir <s's>` in lab host h's network
// namespace, where s's etcd member serves on 127.0.0.1:2379 (and its
// admin kubeconfig finds its apiserver). The bound is for the slowest
// caller, a key rotation that waits for every server.
func k1sIn(h *harness.NetHost, s *harness.Server, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	cmd := h.Command(ctx, harness.Bin(), append(args, "--data-dir", s.DataDir)...)
	cmd.Env = harness.Env()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("k1s %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// TestEmbeddedEtcdSnapshot: on a --cluster-init server, `k1s snapshot
// save` takes an etcd snapshot of the running member (listed with kind
// etcd; refused with a clear error where no member runs), scheduled
// snapshots follow --snapshot-schedule and --snapshot-retention, and
// `--cluster-reset --cluster-reset-restore-path` brings back exactly the
// saved objects as a one-member cluster, keeps the replaced member data,
// and does not restore again on a restart with the same flags; a SQLite
// snapshot is refused with nothing changed.
func TestEmbeddedEtcdSnapshot(t *testing.T) {
	lab := harness.NewLab(t)
	h := lab.AddHost(t, "es")
	s := newLabServer(t, h, 0, "--cluster-init", "--snapshot-schedule", "@every 3s", "--snapshot-retention", "2")
	keepLogsOnFailure(t, s)
	startExisting(t, s)
	kc := func(args ...string) string {
		t.Helper()
		out, err := kubectlVia(s.Kubeconfig, s, args...)
		if err != nil {
			t.Fatal(out, err)
		}
		return out
	}
	kc("create", "configmap", "first", "--from-literal=v=saved")

	began := time.Now()
	out, err := k1sIn(h, s, "snapshot", "save", "--name", "before")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("BENCH k1s snapshot save (etcd) took %s", time.Since(began).Round(10*time.Millisecond))
	snapDir := filepath.Join(s.DataDir, "server", "snapshots")
	matches, _ := filepath.Glob(filepath.Join(snapDir, "before-*.db"))
	if len(matches) != 1 {
		t.Fatalf("snapshot save (%s): %v in %s, want one before-*.db", strings.TrimSpace(out), matches, snapDir)
	}
	saved := matches[0]
	mustContain(t, out, "saved etcd snapshot "+saved, "save output")
	for _, p := range []string{saved, saved + ".sha256"} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 0600", p, fi, err)
		}
	}
	// On the host, outside the server's namespace, no member answers.
	cmd := exec.Command(harness.Bin(), "snapshot", "save", "--data-dir", s.DataDir)
	cmd.Env = harness.Env()
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "start the server: an etcd snapshot is taken from the running member") {
		t.Errorf("snapshot save with no member running: %v, want a refusal:\n%s", err, out)
	}

	eventually(t, time.Minute, "scheduled etcd snapshots pruned to --snapshot-retention", func() error {
		if !strings.Contains(s.Log(), "removed old snapshots scheduled-") {
			return fmt.Errorf("no scheduled snapshot removed yet")
		}
		ls, err := k1sIn(h, s, "snapshot", "ls")
		if err != nil {
			return err
		}
		var scheduled, before int
		for _, l := range strings.Split(ls, "\n") {
			f := strings.Fields(l)
			switch {
			case len(f) < 2:
			case strings.HasPrefix(f[0], "scheduled-") && f[1] == "etcd":
				scheduled++
			case strings.HasPrefix(f[0], "before-") && f[1] == "etcd":
				before++
			}
		}
		if scheduled != 2 || before != 1 {
			return fmt.Errorf("snapshot ls shows %d scheduled etcd snapshots (want 2) and %d manual ones (want 1):\n%s", scheduled, before, ls)
		}
		return nil
	})

	// The cluster moves on.
	kc("delete", "configmap", "first")
	kc("create", "configmap", "second", "--from-literal=v=later")
	if err := s.Stop(90 * time.Second); err != nil {
		t.Fatal(err)
	}
	base := withoutArg(s.Args, "--cluster-init")

	// A SQLite snapshot (sound checksum) is refused, nothing changed.
	sq := filepath.Join(t.TempDir(), "sqlite.db")
	data := append([]byte("SQLite format 3\x00"), make([]byte, 4096)...)
	sum := sha256.Sum256(data)
	if err := os.WriteFile(sq, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sq+".sha256", []byte(hex.EncodeToString(sum[:])+"  sqlite.db\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.Args = append(slices.Clone(base), "--cluster-reset", "--cluster-reset-restore-path", sq)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	refusal := waitExit(t, s, time.Minute)
	for _, want := range []string{"is a snapshot of k1s's SQLite datastore, and this server runs embedded etcd", "nothing was changed"} {
		if !strings.Contains(refusal, want) {
			t.Errorf("the refusal of a SQLite snapshot does not say %q:\n%s", want, s.Tail(20))
		}
	}
	if left, _ := filepath.Glob(filepath.Join(s.DataDir, "server", "db", "*")); len(left) != 1 {
		t.Errorf("a refused restore changed server/db: %v, want etcd only", left)
	}

	s.Args = append(slices.Clone(base), "--cluster-reset", "--cluster-reset-restore-path", saved)
	restored := time.Now()
	startExisting(t, s)
	t.Logf("BENCH server restored from an etcd snapshot and ready in %s", time.Since(restored).Round(100*time.Millisecond))
	mustContain(t, s.Log(), "datastore restored from snapshot "+saved+" as a one-member etcd cluster", "server log")
	if got := kc("get", "configmaps", "-o", "jsonpath={range .items[*]}{.metadata.name}={.data.v} {end}"); !strings.Contains(got, "first=saved") || strings.Contains(got, "second") {
		t.Errorf("ConfigMaps after the restore: %q, want first=saved and no second", got)
	}
	kept, _ := filepath.Glob(filepath.Join(s.DataDir, "server", "db", "etcd.pre-restore-*", "member"))
	if len(kept) != 1 {
		t.Errorf("the replaced etcd member data is not kept beside the restored one: %v", kept)
	}
	if voters, all, err := etcdMembers(h, s); err != nil || len(voters) != 1 || all != 1 {
		t.Errorf("after the restore: voters %v of %d members, %v; want this one only", voters, all, err)
	}

	// A restart with the same flags (as a service manager does) does not
	// restore again over what happened since.
	kc("create", "configmap", "after-restore", "--from-literal=v=new")
	if err := s.Stop(90 * time.Second); err != nil {
		t.Fatal(err)
	}
	startExisting(t, s)
	mustContain(t, s.Log(), "already restored from", "server log after a restart with the same flags")
	if strings.Contains(s.Log(), "datastore restored from snapshot") {
		t.Errorf("restored again on a restart with the same flags")
	}
	if got := kc("get", "configmap", "after-restore", "-o", "jsonpath={.data.v}"); got != "new" {
		t.Errorf("a restart with --cluster-reset lost what was written after the restore: %q", got)
	}
}
