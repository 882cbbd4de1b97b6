package bootstrap

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPlanSync(t *testing.T) {
	const ca, enc, sa = "tls/server-ca.crt", "cred/encryption-config.json", "tls/service.key"
	synced := Hashes{ca: "c1", enc: "e1", sa: "s1"}
	cases := []struct {
		name          string
		local, bundle Hashes
		want          Plan
	}{
		{"in sync", Hashes{ca: "c1", enc: "e1", sa: "s1"}, Hashes{ca: "c1", enc: "e1", sa: "s1"}, Plan{}},
		{"changed here (rotate-ca on this server)", Hashes{ca: "c2", enc: "e1", sa: "s1"}, Hashes{ca: "c1", enc: "e1", sa: "s1"}, Plan{Publish: []string{ca}}},
		{"changed elsewhere (a key rotation on another server)", Hashes{ca: "c1", enc: "e1", sa: "s1"}, Hashes{ca: "c1", enc: "e2", sa: "s1"}, Plan{Apply: []string{enc}}},
		{"the same change on both sides", Hashes{ca: "c1", enc: "e2", sa: "s1"}, Hashes{ca: "c1", enc: "e2", sa: "s1"}, Plan{}},
		{"different changes on both sides", Hashes{ca: "c1", enc: "e3", sa: "s1"}, Hashes{ca: "c1", enc: "e2", sa: "s1"}, Plan{Conflict: []string{enc}}},
		{"missing here", Hashes{ca: "c1", sa: "s1"}, Hashes{ca: "c1", enc: "e2", sa: "s1"}, Plan{Apply: []string{enc}}},
		{"missing in the bundle", Hashes{ca: "c1", enc: "e1", sa: "s1"}, Hashes{ca: "c1", sa: "s1"}, Plan{Publish: []string{enc}}},
	}
	for _, c := range cases {
		got := PlanSync(c.local, synced, c.bundle)
		if !slices.Equal(got.Publish, c.want.Publish) || !slices.Equal(got.Apply, c.want.Apply) || !slices.Equal(got.Conflict, c.want.Conflict) {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
		if got.Empty() != c.want.Empty() {
			t.Errorf("%s: Empty() = %v", c.name, got.Empty())
		}
	}
	// The record keeps the last agreement where the sides differ.
	a := Agreed(Hashes{ca: "c2", enc: "e3"}, synced, Hashes{ca: "c2", enc: "e2", sa: "s1"})
	if a[ca] != "c2" || a[enc] != "e1" || a[sa] != "s1" {
		t.Errorf("Agreed = %v", a)
	}
}

func TestMergedAndReplace(t *testing.T) {
	here, there := fakeServerDir(t, "here"), fakeServerDir(t, "there")
	b, err := Collect(there)
	if err != nil {
		t.Fatal(err)
	}
	const enc, ca = "cred/encryption-config.json", "tls/server-ca.crt"
	m, err := b.Merged(here, []string{enc})
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Files[enc]) != "here:"+enc || string(m.Files[ca]) != "there:"+ca {
		t.Errorf("merged: %s / %s", m.Files[enc], m.Files[ca])
	}
	if string(b.Files[enc]) != "there:"+enc {
		t.Error("Merged changed the bundle it started from")
	}
	if _, err := b.Merged(here, []string{"tls/other.key"}); err == nil {
		t.Error("Merged took a file that is not shared")
	}
	backup := filepath.Join(t.TempDir(), "backup")
	written, err := b.Replace(here, backup, []string{ca, enc})
	if err != nil || len(written) != 2 {
		t.Fatalf("Replace = %v, %v", written, err)
	}
	for _, f := range []string{ca, enc} {
		if got, _ := os.ReadFile(filepath.Join(here, f)); string(got) != "there:"+f {
			t.Errorf("%s = %q after Replace", f, got)
		}
		if got, _ := os.ReadFile(filepath.Join(backup, f)); string(got) != "here:"+f {
			t.Errorf("backup of %s = %q", f, got)
		}
	}
	if st, _ := os.Stat(filepath.Join(here, ca)); st.Mode().Perm() != 0o644 {
		t.Errorf("%s mode %v", ca, st.Mode())
	}
	if st, _ := os.Stat(filepath.Join(here, enc)); st.Mode().Perm() != 0o600 {
		t.Errorf("%s mode %v", enc, st.Mode())
	}
	lh, err := LocalHashes(here)
	if err != nil {
		t.Fatal(err)
	}
	if lh[ca] != b.Hashes()[ca] || lh["tls/service.key"] == b.Hashes()["tls/service.key"] {
		t.Errorf("LocalHashes after Replace: %v", lh)
	}
	if _, ok, err := LoadSynced(here); ok || err != nil {
		t.Fatalf("LoadSynced on a new dir = %v, %v", ok, err)
	}
	if err := SaveSynced(here, lh); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := LoadSynced(here); !ok || err != nil || got[ca] != lh[ca] {
		t.Errorf("LoadSynced = %v, %v, %v", got, ok, err)
	}
}

func TestLagging(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	reports := []Applied{
		{Server: "a", EncryptionConfig: "new", Time: now.Unix() - 5},
		{Server: "b", EncryptionConfig: "old", Time: now.Unix() - 5},
		{Server: "gone", EncryptionConfig: "old", Time: now.Add(-AppliedStale - time.Second).Unix()},
	}
	lag, running := Lagging(reports, "new", now)
	if running != 2 || !slices.Equal(lag, []string{"b"}) {
		t.Errorf("Lagging = %v, %d; want [b], 2 (gone is not running)", lag, running)
	}
}

// TestUpdateIsCompareAndSwap: on kine, an update at a stale revision
// fails and leaves the bundle as the winner wrote it.
func TestUpdateIsCompareAndSwap(t *testing.T) {
	cli := startKine(t)
	ctx := context.Background()
	if _, won, err := Publish(ctx, cli, []byte("v1")); err != nil || !won {
		t.Fatal(won, err)
	}
	_, rev, err := GetRev(ctx, cli)
	if err != nil || rev == 0 {
		t.Fatal(rev, err)
	}
	newRev, ok, err := Update(ctx, cli, []byte("v2"), rev)
	if !ok || err != nil {
		t.Fatalf("update at the current revision: %v %v", ok, err)
	}
	if _, ok, err := Update(ctx, cli, []byte("v3"), rev); ok || err != nil {
		t.Fatalf("update at a stale revision: %v %v; want refused", ok, err)
	}
	if got, r, _ := GetRev(ctx, cli); string(got) != "v2" || r != newRev {
		t.Errorf("bundle = %q at revision %d, want v2 at %d (what Update returned)", got, r, newRev)
	}
	if err := PutApplied(ctx, cli, Applied{Server: "s1", EncryptionConfig: "h", Time: 7}); err != nil {
		t.Fatal(err)
	}
	if l, err := ListApplied(ctx, cli); err != nil || len(l) != 1 || l[0].Server != "s1" || l[0].EncryptionConfig != "h" {
		t.Errorf("ListApplied = %+v, %v", l, err)
	}
}

// TestSuccessorChain: a server two rotations behind follows the chain to
// the newest secret; a secret of another cluster follows nowhere.
func TestSuccessorChain(t *testing.T) {
	const s1, s2, s3 = "secret-one-0123456789abcdef", "secret-two-0123456789abcdef", "secret-three-0123456789abcd"
	list, err := AddSuccessor(nil, s1, s2)
	if err != nil {
		t.Fatal(err)
	}
	if list, err = AddSuccessor(list, s2, s3); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(list), s2) || strings.Contains(string(list), s3) {
		t.Fatal("the chain holds a secret in the clear")
	}
	for _, c := range []struct {
		from, want string
		steps      int
	}{{s1, s3, 2}, {s2, s3, 1}, {s3, s3, 0}, {"another-cluster-0123456789ab", "another-cluster-0123456789ab", 0}} {
		got, steps, err := FollowSuccessors(list, c.from)
		if err != nil || got != c.want || steps != c.steps {
			t.Errorf("from %s: %s in %d steps, %v; want %s in %d", c.from, got, steps, err, c.want, c.steps)
		}
	}
}

// TestRotateTokenOnKine: the bundle re-sealed with the new secret opens
// only with it, and the chain leads the old secret there (two
// single-key compare-and-swaps, as kine supports).
func TestRotateTokenOnKine(t *testing.T) {
	cli := startKine(t)
	ctx := context.Background()
	b, err := Collect(fakeServerDir(t, "a"))
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := Seal(secret, b)
	if err != nil {
		t.Fatal(err)
	}
	if _, won, err := Publish(ctx, cli, sealed); err != nil || !won {
		t.Fatal(won, err)
	}
	_, rev, _ := GetRev(ctx, cli)
	const next = "fedcba9876543210fedcba9876543210"
	if _, ok, err := RotateToken(ctx, cli, b, rev, secret, next); !ok || err != nil {
		t.Fatalf("RotateToken = %v, %v", ok, err)
	}
	now, _, _ := GetRev(ctx, cli)
	if _, err := Open(secret, now); !errors.Is(err, ErrWrongToken) {
		t.Errorf("the re-sealed bundle opens with the old secret: %v", err)
	}
	list, _, err := GetSuccessors(ctx, cli)
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := FollowSuccessors(list, secret)
	if err != nil || got != next {
		t.Fatalf("the chain leads to %q, %v", got, err)
	}
	if _, err := Open(got, now); err != nil {
		t.Errorf("the bundle does not open with the chain's secret: %v", err)
	}
	if _, ok, _ := RotateToken(ctx, cli, b, rev, secret, next); ok {
		t.Error("RotateToken at a stale revision succeeded")
	}
}
