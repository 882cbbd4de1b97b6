package etcd

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"time"

	"github.com/sirupsen/logrus"
	clientv3 "go.etcd.io/etcd/client/v3"
	etcdutl "go.etcd.io/etcd/etcdutl/v3/snapshot"

	"github.com/k1s-io/k1s/internal/atomicfile"
	"github.com/k1s-io/k1s/internal/config"
	"github.com/k1s-io/k1s/internal/snapshot"
)

// ClientConfig is a client configuration for cfg's member with the
// member's client certificate, for one member only (a snapshot is taken
// from one member).
func ClientConfig(ctx context.Context, cfg *config.Server) (clientv3.Config, error) {
	f := Files(cfg)
	tc, err := ClientTLS(f.ServerCA(), f.ClientCert(), f.ClientKey())
	if err != nil {
		return clientv3.Config{}, fmt.Errorf("the embedded etcd's client certificate: %w", err)
	}
	return clientv3.Config{Endpoints: []string{ClientURL}, TLS: tc, DialTimeout: 5 * time.Second, Context: ctx}, nil
}

// ErrNotRunning says that no member answers on the client port.
var ErrNotRunning = errors.New("start the server: an etcd snapshot is taken from the running member")

// Running checks that something listens on the member's client port.
func Running() error {
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", fmt.Sprint(ClientPort)), 2*time.Second)
	if err != nil {
		return fmt.Errorf("%w (no etcd member answers on %s: %v)", ErrNotRunning, ClientURL, err)
	}
	return c.Close()
}

// SaveSnapshot takes a snapshot of cfg's running member into dir (see
// snapshot.SaveEtcd).
func SaveSnapshot(ctx context.Context, cfg *config.Server, dir, name string, now time.Time) (snapshot.Info, error) {
	if err := Running(); err != nil {
		return snapshot.Info{}, err
	}
	cc, err := ClientConfig(ctx, cfg)
	if err != nil {
		return snapshot.Info{}, err
	}
	return snapshot.SaveEtcd(ctx, cc, dir, name, now)
}

// revisionBumpFallback moves the revision on when the replaced member's
// revision cannot be read (a damaged database): far past anything a k1s
// cluster writes between two snapshots.
const revisionBumpFallback = 1_000_000_000

// RestoreSnapshot replaces cfg's member data with the etcd snapshot at
// path (checked first: checksum file, kind, checksum) while no member
// runs. etcd's own restore code writes a one-member cluster of this
// member (its name and peer URL) into a new directory, with the revision
// moved past the replaced member's and everything before it marked
// compacted, so clients holding newer resource versions re-list. Only
// then is the member's directory renamed to <etcd-dir>.pre-restore-<time>
// (kept, returned; "" when there was none) and the new one put in its
// place. A failure before that changes nothing.
func RestoreSnapshot(ctx context.Context, cfg *config.Server, path string, now time.Time, log logrus.FieldLogger) (string, error) {
	if err := snapshot.Verify(ctx, path, snapshot.Etcd); err != nil {
		return "", err
	}
	dir := cfg.EtcdDir()
	tmp := dir + ".restoring"
	if err := os.RemoveAll(tmp); err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	m := etcdutl.NewV3(zapToLogrus(cfg.Debug))
	bump := uint64(revisionBumpFallback)
	snap, err := m.Status(path)
	if err != nil {
		return "", fmt.Errorf("reading the etcd snapshot %s: %w", path, err)
	}
	if _, err := os.Stat(memberDB(dir)); err == nil {
		if old, err := m.Status(memberDB(dir)); err != nil {
			log.Warnf("cannot read the revision of the member to replace (%v): moving the revision on by %d", err, bump)
		} else {
			bump = uint64(max(old.Revision-snap.Revision, 0)) + 1
		}
	}
	name, peer := Name(cfg), PeerURL(cfg)
	if err := m.Restore(etcdutl.RestoreConfig{
		SnapshotPath:        path,
		Name:                name,
		OutputDataDir:       tmp,
		PeerURLs:            []string{peer},
		InitialCluster:      name + "=" + peer,
		InitialClusterToken: clusterToken,
		RevisionBump:        bump,
		MarkCompacted:       true,
	}); err != nil {
		return "", fmt.Errorf("restoring the etcd snapshot %s: %w", path, err)
	}
	if err := os.Chmod(tmp, 0o700); err != nil {
		return "", err
	}
	kept := ""
	if _, err := os.Stat(dir); err == nil {
		kept = dir + ".pre-restore-" + now.UTC().Format("20060102t150405z")
		if err := os.Rename(dir, kept); err != nil {
			return "", err
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return kept, err
	}
	return kept, atomicfile.SyncDir(cfg.DBDir())
}

// memberDB is the bbolt database of the member whose data dir is dir.
func memberDB(dir string) string { return dir + "/member/snap/db" }

// Snapshot takes a snapshot of the running member m into dir, through
// m's client (scheduled snapshots).
func (m *Member) Snapshot(ctx context.Context, dir, name string, now time.Time) (snapshot.Info, error) {
	tc, err := ClientTLS(m.CAFile, m.CertFile, m.KeyFile)
	if err != nil {
		return snapshot.Info{}, err
	}
	cc := clientv3.Config{Endpoints: m.Endpoints[:1], TLS: tc, DialTimeout: 5 * time.Second, Context: ctx}
	return snapshot.SaveEtcd(ctx, cc, dir, name, now)
}
