package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/k1s-io/k1s/internal/bootstrap"
	"github.com/k1s-io/k1s/internal/join"
	"github.com/k1s-io/k1s/internal/pki"
)

// sharedDatastore: other servers may use the same datastore (an external
// one, or the embedded etcd others join), so the cluster's CAs and keys go
// through it (package bootstrap) and the controllers are elected.
func (r *run) sharedDatastore() bool {
	if r.store != nil && r.store.Etcd != nil {
		return true
	}
	ep := r.cfg.Datastore.Endpoint
	return ep != "" && !strings.HasPrefix(ep, "sqlite://")
}

// tokenSecret is the secret this server knows before its PKI exists: the
// one given with --token, else the one of a previous start.
func (r *run) tokenSecret() (string, error) {
	given := r.cfg.Token
	if given == "" {
		data, err := os.ReadFile(r.cfg.TokenPath())
		if errors.Is(err, fs.ErrNotExist) {
			return "", nil
		}
		if err != nil {
			return "", err
		}
		given = string(data)
	}
	t, err := pki.ParseToken(given)
	if err != nil {
		return "", fmt.Errorf("--token: %w", err)
	}
	return t.Secret, nil
}

// etcdClient talks to the datastore's etcd API (kine's socket, or the
// external etcd with the datastore's TLS files).
func (r *run) etcdClient(ctx context.Context) (*clientv3.Client, error) {
	cc := clientv3.Config{Endpoints: r.store.Endpoints, DialTimeout: 10 * time.Second, Context: ctx}
	if r.store.CertFile != "" || r.store.CAFile != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if r.store.CAFile != "" {
			ca, err := os.ReadFile(r.store.CAFile)
			if err != nil {
				return nil, err
			}
			tc.RootCAs = x509.NewCertPool()
			tc.RootCAs.AppendCertsFromPEM(ca)
		}
		if r.store.CertFile != "" {
			c, err := tls.LoadX509KeyPair(r.store.CertFile, r.store.KeyFile)
			if err != nil {
				return nil, err
			}
			tc.Certificates = []tls.Certificate{c}
		}
		cc.TLS = tc
	}
	return clientv3.New(cc)
}

// loadClusterSecrets runs before the PKI is made: if another server
// published the cluster's bundle, its files are written here so that
// pki.Ensure finds them instead of creating a cluster of its own. It
// writes nothing when the bundle does not open with this server's token.
func (r *run) loadClusterSecrets(ctx context.Context, kv clientv3.KV) (found bool, err error) {
	sealed, rev, err := bootstrap.GetRev(ctx, kv)
	if err != nil || rev == 0 {
		return false, err
	}
	secret, err := r.tokenSecret()
	if err != nil {
		return true, err
	}
	if secret == "" {
		return true, fmt.Errorf("the datastore %s already holds a k1s cluster: start this server with that cluster's --token (the first server's <data-dir>/server/token), or use another datastore", r.store.Description)
	}
	err = r.applyBundle(sealed, rev, secret)
	if errors.Is(err, bootstrap.ErrWrongToken) {
		next, ok, ferr := r.followToken(ctx, kv, secret)
		if ferr != nil {
			return true, ferr
		}
		if ok {
			err = r.applyBundle(sealed, rev, next)
		}
	}
	if own := r.ownCAHash(); errors.Is(err, bootstrap.ErrWrongToken) && own != "" && own == bootstrap.SealedServerCAHash(sealed) {
		// A member restarting after `k1s token rotate`: it needs nothing
		// from the bundle, and its CAs are what the cluster was made with.
		r.log.Warnf("the cluster's bootstrap bundle in the datastore does not open with this server's token (rotated with `k1s token rotate`?); using this server's own CAs and keys. New servers must be started with the token the bundle was sealed with")
		return true, nil
	}
	return true, err
}

// followToken: the bundle does not open with secret, perhaps because the
// server token was rotated on another server. If this data dir is a
// member already (it has a token file) and the datastore's chain of
// rotations leads from secret to a newer one, the token file takes it
// (the old one is retired) and the newer secret is returned. A server that
// never ran is not let in with an old token this way.
func (r *run) followToken(ctx context.Context, kv clientv3.KV, secret string) (string, bool, error) {
	cur := r.fileTokenSecret()
	if cur == "" {
		return "", false, nil
	}
	list, _, err := bootstrap.GetSuccessors(ctx, kv)
	if err != nil {
		return "", false, err
	}
	next, steps, err := bootstrap.FollowSuccessors(list, secret)
	if err != nil || steps == 0 {
		return "", false, err
	}
	if next != cur {
		if _, err := join.RotateServerToken(r.cfg.TokenPath(), filepath.Join(r.cfg.TLSDir(), "server-ca.crt"), next); err != nil {
			return "", false, fmt.Errorf("taking the server token rotated on another server: %w", err)
		}
		r.log.Warnf("the server token was rotated on another server (k1s token rotate): %s now holds the new one, and the old one is refused for joins. Where this server's configuration gives a token (--token, --token-file, K1S_TOKEN, token:), change it to the new one", r.cfg.TokenPath())
	}
	return next, true, nil
}

// fileTokenSecret is the secret in this data dir's token file, "" if none.
func (r *run) fileTokenSecret() string {
	data, err := os.ReadFile(r.cfg.TokenPath())
	if err != nil {
		return ""
	}
	t, err := pki.ParseToken(string(data))
	if err != nil {
		return ""
	}
	return t.Secret
}

// ownCAHash is the hash of this data dir's server CA, "" if it has none.
func (r *run) ownCAHash() string {
	pem, err := os.ReadFile(filepath.Join(r.cfg.TLSDir(), "server-ca.crt"))
	if err != nil {
		return ""
	}
	return bootstrap.ServerCAHash(pem)
}

// applyBundle writes the bundle's files this server needs before its PKI
// is made. With a record of the last agreement (bootstrap.LoadSynced) it
// takes every file changed in the bundle since (new CAs from another
// server's rotate-ca included) and leaves the ones changed here for
// publishing; without one (a first start, or a data dir from before
// bundle updates) it refuses another cluster's CAs and writes only the
// files missing here.
func (r *run) applyBundle(sealed []byte, rev int64, secret string) error {
	start := time.Now()
	b, err := bootstrap.Open(secret, sealed)
	if err != nil {
		return fmt.Errorf("datastore %s: %w", r.store.Description, err)
	}
	r.bsync = r.newBundleSync(secret)
	r.bsync.use(b, rev)
	dir := r.cfg.ServerDir()
	synced, ok, err := bootstrap.LoadSynced(dir)
	if err != nil {
		return err
	}
	var written []string
	if ok {
		local, err := bootstrap.LocalHashes(dir)
		if err != nil {
			return err
		}
		plan := bootstrap.PlanSync(local, synced, b.Hashes())
		if slices.Contains(plan.Apply, "tls/server-ca.crt") && local["tls/server-ca.crt"] != "" {
			r.log.Warnf("the cluster's CAs were replaced on another server (k1s certificate rotate-ca), or the datastore was restored from a snapshot: taking the datastore's; this server's certificates are issued again from them")
		}
		if written, err = b.Replace(dir, r.bsync.backupDir(), plan.Apply); err != nil {
			return err
		}
	} else {
		if err := b.Check(dir); err != nil {
			return err
		}
		var kept []string
		if written, kept, err = b.Write(dir); err != nil {
			return err
		}
		for _, k := range kept {
			r.log.Warnf("%s differs from the cluster's bootstrap bundle in the datastore; keeping this server's copy, not publishing it (make every server's copy alike, or delete this one to take the bundle's at the next start)", k)
		}
	}
	r.log.Infof("loaded the cluster's CAs and keys from the datastore in %s (%d files written)", time.Since(start).Round(time.Millisecond), len(written))
	return nil
}

// publishClusterSecrets stores this server's shared files as the
// cluster's bundle unless another server was first; then that server's
// files are taken and the PKI made again over them.
func (r *run) publishClusterSecrets(ctx context.Context, kv clientv3.KV) error {
	b, err := bootstrap.Collect(r.cfg.ServerDir())
	if err != nil {
		return err
	}
	t, err := pki.ParseToken(r.pki.Token)
	if err != nil {
		return err
	}
	sealed, err := bootstrap.Seal(t.Secret, b)
	if err != nil {
		return err
	}
	stored, won, err := bootstrap.Publish(ctx, kv, sealed)
	if err != nil {
		return err
	}
	if won {
		r.log.Infof("stored the cluster's CAs and keys in the datastore under %s, encrypted with the token", bootstrap.Key)
		return nil
	}
	// Another server started at the same moment and won: its CAs replace
	// the ones made here, which no one has used yet.
	r.log.Info("another server stored the cluster's CAs and keys first: using them")
	for _, f := range bootstrap.Files {
		if err := os.Remove(filepath.Join(r.cfg.ServerDir(), f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if err := r.applyBundle(stored, 0, t.Secret); err != nil {
		return err
	}
	return r.ensureCredentials()
}
