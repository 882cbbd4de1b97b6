package etcd

import (
	"context"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/k1s-io/k1s/internal/config"
	"github.com/k1s-io/k1s/internal/snapshot"
)

// freeURL is a plain-HTTP URL on a free loopback port.
func freeURL(t *testing.T) url.URL {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return url.URL{Scheme: "http", Host: l.Addr().String()}
}

// startPlain starts a one-member etcd in dir on free loopback ports
// (plain HTTP: this test is about snapshots, not TLS) and returns a
// client configuration for it.
func startPlain(t *testing.T, dir, name string) (*embed.Etcd, clientv3.Config) {
	t.Helper()
	ec := embed.NewConfig()
	ec.Name, ec.Dir = name, dir
	c, p := freeURL(t), freeURL(t)
	ec.ListenClientUrls, ec.AdvertiseClientUrls = []url.URL{c}, []url.URL{c}
	ec.ListenPeerUrls, ec.AdvertisePeerUrls = []url.URL{p}, []url.URL{p}
	ec.InitialCluster = name + "=" + p.String()
	ec.InitialClusterToken = clusterToken
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zapToLogrus(false))
	e, err := embed.StartEtcd(ec)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		e.Close()
		t.Fatal("etcd not ready in 30s")
	}
	return e, clientv3.Config{Endpoints: []string{c.String()}, DialTimeout: 5 * time.Second}
}

func put(t *testing.T, cc clientv3.Config, kv ...string) int64 {
	t.Helper()
	cli, err := clientv3.New(cc)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	var rev int64
	for i := 0; i+1 < len(kv); i += 2 {
		r, err := cli.Put(context.Background(), kv[i], kv[i+1])
		if err != nil {
			t.Fatal(err)
		}
		rev = r.Header.Revision
	}
	return rev
}

// TestSnapshotSaveAndRestore: SaveEtcd takes a snapshot of a running
// member; RestoreSnapshot puts exactly its keys back as a one-member
// cluster of this member's name, with the revision past the replaced
// member's and compacted below, and keeps the replaced data. A SQLite
// snapshot is refused with nothing changed.
func TestSnapshotSaveAndRestore(t *testing.T) {
	cfg := &config.Server{DataDir: t.TempDir(), AdvertiseAddress: "127.0.0.1"}
	ctx := context.Background()
	e, cc := startPlain(t, cfg.EtcdDir(), Name(cfg))
	put(t, cc, "/registry/kept", "saved", "/registry/deleted-later", "saved")
	snaps := filepath.Join(cfg.DataDir, "server", "snapshots")
	info, err := snapshot.SaveEtcd(ctx, cc, snaps, "before", time.Now())
	if err != nil {
		e.Close()
		t.Fatal(err)
	}
	if info.Kind != snapshot.Etcd || !strings.HasPrefix(filepath.Base(info.Path), "before-") {
		t.Errorf("SaveEtcd = %+v", info)
	}
	if fi, err := os.Stat(info.Path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("snapshot %v %v, want mode 0600", fi, err)
	}
	if left, _ := filepath.Glob(filepath.Join(snaps, ".tmp-*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
	put(t, cc, "/registry/created-later", "later", "/registry/kept", "changed")
	cli, _ := clientv3.New(cc)
	if _, err := cli.Delete(ctx, "/registry/deleted-later"); err != nil {
		t.Fatal(err)
	}
	cli.Close()
	oldRev := put(t, cc, "/registry/last", "x")
	e.Close()

	// A SQLite snapshot is refused before anything changes.
	sq := filepath.Join(t.TempDir(), "sq.db")
	if err := os.WriteFile(sq, []byte("SQLite format 3\x00 and the rest of a database"), 0o600); err != nil {
		t.Fatal(err)
	}
	sum, _ := os.ReadFile(info.Path + ".sha256") // any checksum file: the kind is checked first
	if err := os.WriteFile(sq+".sha256", sum, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := RestoreSnapshot(ctx, cfg, sq, time.Now(), logrus.New()); err == nil || !strings.Contains(err.Error(), "SQLite datastore") {
		t.Errorf("restoring a SQLite snapshot: %v", err)
	}
	if kept, _ := filepath.Glob(cfg.EtcdDir() + ".*"); len(kept) > 0 {
		t.Errorf("a refused restore left %v", kept)
	}

	kept, err := RestoreSnapshot(ctx, cfg, info.Path, time.Now(), logrus.New())
	if err != nil {
		t.Fatal(err)
	}
	if kept == "" || !strings.HasPrefix(kept, cfg.EtcdDir()+".pre-restore-") {
		t.Errorf("kept %q", kept)
	}
	if _, err := os.Stat(filepath.Join(kept, "member", "snap", "db")); err != nil {
		t.Errorf("the replaced member data is not kept: %v", err)
	}
	if _, err := os.Stat(cfg.EtcdDir() + ".restoring"); !os.IsNotExist(err) {
		t.Errorf("the restore's work dir is left: %v", err)
	}

	// The restored member starts as a new cluster of itself, peer URL
	// and name as restored (etcd refuses a mismatch).
	ec := embed.NewConfig()
	ec.Name, ec.Dir = Name(cfg), cfg.EtcdDir()
	c := freeURL(t)
	ec.ListenClientUrls, ec.AdvertiseClientUrls = []url.URL{c}, []url.URL{c}
	peer, _ := url.Parse(PeerURL(cfg))
	peer.Scheme = "http"
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zapToLogrus(false))
	// The restore wrote the membership: the peer URL only needs a port here.
	l := freeURL(t)
	ec.ListenPeerUrls = []url.URL{l}
	ec.AdvertisePeerUrls = []url.URL{{Scheme: "https", Host: peer.Host}}
	ec.InitialCluster = ec.Name + "=" + PeerURL(cfg)
	ec.InitialClusterToken = clusterToken
	e2, err := embed.StartEtcd(ec)
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	select {
	case <-e2.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		t.Fatal("restored etcd not ready in 30s")
	}
	cli, err = clientv3.New(clientv3.Config{Endpoints: []string{c.String()}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	r, err := cli.Get(ctx, "/registry/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, kv := range r.Kvs {
		got = append(got, string(kv.Key)+"="+string(kv.Value))
	}
	if want := "/registry/deleted-later=saved /registry/kept=saved"; strings.Join(got, " ") != want {
		t.Errorf("after the restore: %v, want %s", got, want)
	}
	if r.Header.Revision <= oldRev {
		t.Errorf("revision %d after the restore, want past the replaced member's %d", r.Header.Revision, oldRev)
	}
	if _, err := cli.Get(ctx, "/registry/kept", clientv3.WithRev(oldRev)); err == nil || !strings.Contains(err.Error(), "compacted") {
		t.Errorf("a read at the old revision %d: %v, want compacted", oldRev, err)
	}
	m, err := cli.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Members) != 1 || m.Members[0].Name != Name(cfg) || len(m.Members[0].PeerURLs) != 1 || m.Members[0].PeerURLs[0] != PeerURL(cfg) {
		t.Errorf("members after the restore: %v, want only %s at %s", m.Members, Name(cfg), PeerURL(cfg))
	}
}
