package server

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/component-base/metrics/legacyregistry"

	"github.com/k1s-io/k1s/internal/bootstrap"
	"github.com/k1s-io/k1s/internal/etcd"
)

// bundleSync keeps this server's shared files (bootstrap.Files) and the
// cluster's bootstrap bundle alike on a shared datastore. A file changed
// here since the last agreement (`k1s certificate rotate-ca`, a key
// rotation) is published; one changed in the bundle by another server is
// taken: CAs and keys before the PKI is made at start (applyBundle), the
// encryption configuration also while running (the apiserver reloads it;
// new CAs need a restart, which the log asks for). It also reports which encryption configuration this
// server's apiserver has loaded (bootstrap.Applied), which a key rotation
// waits on.
type bundleSync struct {
	r      *run
	secret string // the token secret the bundle opens with
	rev    int64  // the bundle's mod revision when last opened
	bundle *bootstrap.Bundle
	hashes bootstrap.Hashes // of bundle's files
	// synced is this server's record of the last agreement, read once:
	// only pass writes it.
	synced       bootstrap.Hashes
	syncedLoaded bool
	warned       map[string]bool

	loaded     string // hash of the encryption configuration the apiserver has loaded
	reported   string
	reportedAt time.Time
}

// syncEvery is how often a running server compares; a rotation step waits
// for it and for the apiserver's own check (5 s) on every server.
const syncEvery = 3 * time.Second

func (r *run) newBundleSync(secret string) *bundleSync {
	return &bundleSync{r: r, secret: secret, warned: map[string]bool{}}
}

// use makes b, at mod revision rev, the bundle compared with.
func (s *bundleSync) use(b *bootstrap.Bundle, rev int64) {
	s.bundle, s.rev, s.hashes = b, rev, b.Hashes()
}

func (s *bundleSync) warnOnce(key, format string, args ...any) {
	if !s.warned[key] {
		s.warned[key] = true
		s.r.log.Warnf(format, args...)
	}
}

// backupDir is where files replaced by the bundle's are kept.
func (s *bundleSync) backupDir() string {
	return filepath.Join(s.r.cfg.ServerDir(), "bootstrap-replaced-"+time.Now().UTC().Format("20060102T150405Z"))
}

// open reads the bundle, and opens it again when it changed.
func (s *bundleSync) open(ctx context.Context, kv clientv3.KV) (bool, error) {
	sealed, rev, err := bootstrap.GetRev(ctx, kv)
	if err != nil || rev == 0 {
		return false, err
	}
	if rev == s.rev && s.bundle != nil {
		return true, nil
	}
	b, err := bootstrap.Open(s.secret, sealed)
	if errors.Is(err, bootstrap.ErrWrongToken) {
		next, ok, ferr := s.r.followToken(ctx, kv, s.secret)
		if ferr != nil {
			return false, ferr
		}
		if ok {
			if b, err = bootstrap.Open(next, sealed); err == nil {
				s.secret = next
			}
		}
	}
	if errors.Is(err, bootstrap.ErrWrongToken) {
		s.warnOnce(fmt.Sprint("open", rev), "the cluster's bootstrap bundle (revision %d) does not open with this server's token, nor with one it leads to: this server neither takes nor publishes changes to the cluster's CAs and keys until it is restarted with the token the bundle is sealed with", rev)
		return false, nil
	}
	if err != nil {
		return false, err
	}
	s.use(b, rev)
	return true, nil
}

// pass compares once, after the PKI is made: it takes the encryption
// configuration if it changed in the bundle (CAs and keys only at the next
// start, in applyBundle), publishes what changed here, and records the
// agreement.
func (s *bundleSync) pass(ctx context.Context, kv clientv3.KV) error {
	if ok, err := s.open(ctx, kv); !ok {
		return err
	}
	// `k1s token rotate` here: the bundle is sealed again with the new
	// secret, and the chain leads the other servers from the old one.
	if cur := s.r.fileTokenSecret(); cur != "" && cur != s.secret {
		rev, ok, err := bootstrap.RotateToken(ctx, kv, s.bundle, s.rev, s.secret, cur)
		if err != nil {
			return err
		}
		if !ok {
			s.rev = 0
			return nil
		}
		s.secret, s.rev = cur, rev
		s.r.log.Infof("sealed the cluster's bootstrap bundle with the server token rotated here: the other servers take the new token")
	}
	dir := s.r.cfg.ServerDir()
	local, err := bootstrap.LocalHashes(dir)
	if err != nil {
		return err
	}
	if !s.syncedLoaded {
		if s.synced, _, err = bootstrap.LoadSynced(dir); err != nil {
			return err
		}
		s.syncedLoaded = true
	}
	plan := bootstrap.PlanSync(local, s.synced, s.hashes)
	// The PKI is made: CAs and keys are taken at the next start only.
	var later []string
	apply := slices.DeleteFunc(slices.Clone(plan.Apply), func(f string) bool {
		if strings.HasPrefix(f, "tls/") {
			later = append(later, f)
			return true
		}
		return false
	})
	if len(later) > 0 {
		s.warnOnce(fmt.Sprint("restart", s.rev), "the cluster's CAs or keys changed on another server (%s; `k1s certificate rotate-ca`?): restart this server to take them", strings.Join(later, ", "))
	}
	if len(apply) > 0 {
		backup := s.backupDir()
		written, err := s.bundle.Replace(dir, backup, apply)
		if err != nil {
			return err
		}
		for _, f := range apply {
			local[f] = s.hashes[f] // what Replace wrote
		}
		s.r.log.Infof("took %s from the cluster's bootstrap bundle (changed on another server; the files replaced are kept in %s)", strings.Join(written, ", "), backup)
	}
	for _, f := range plan.Conflict {
		s.warnOnce(fmt.Sprint("conflict", f, s.rev), "%s differs from the cluster's bootstrap bundle, and both changed since this server last agreed with it: keeping this server's copy and not publishing it (make every server's copy alike, or delete %s to take the bundle's at the next start)", filepath.Join(dir, f), filepath.Join(dir, f))
	}
	if len(plan.Publish) > 0 {
		merged, err := s.bundle.Merged(dir, plan.Publish)
		if err != nil {
			return err
		}
		sealed, err := bootstrap.Seal(s.secret, merged)
		if err != nil {
			return err
		}
		rev, ok, err := bootstrap.Update(ctx, kv, sealed, s.rev)
		if err != nil {
			return err
		}
		if !ok {
			s.r.log.Infof("another server changed the cluster's bootstrap bundle at the same time: comparing again")
			s.rev = 0
			return nil
		}
		s.use(merged, rev)
		s.r.log.Infof("published %s to the cluster's bootstrap bundle (revision %d): the other servers take it", strings.Join(plan.Publish, ", "), rev)
	}
	agreed := bootstrap.Agreed(local, s.synced, s.hashes)
	if maps.Equal(agreed, s.synced) {
		return nil
	}
	if err := bootstrap.SaveSynced(dir, agreed); err != nil {
		return err
	}
	s.synced = agreed
	return nil
}

// loadedEncryption is the hash of the encryption configuration the
// apiserver in this process has loaded, from its metric
// (apiserver_encryption_config_controller_last_config_info, "sha256:<hex>"
// of the file's bytes); "" when it has none.
func loadedEncryption() string {
	families, err := legacyregistry.DefaultGatherer.Gather()
	if err != nil {
		return ""
	}
	for _, mf := range families {
		if mf.GetName() != "apiserver_encryption_config_controller_last_config_info" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "hash" {
					return strings.TrimPrefix(l.GetValue(), "sha256:")
				}
			}
		}
	}
	return ""
}

// report tells the other servers which encryption configuration this
// server's apiserver runs with: at once after it changed, else every
// bootstrap.AppliedEvery.
func (s *bundleSync) report(ctx context.Context, kv clientv3.KV, now time.Time) error {
	if s.r.encryption != "" {
		// The metric is read only while the file is ahead of it.
		file, err := bootstrap.HashFile(s.r.encryption)
		if err != nil {
			return err
		}
		if file != s.loaded {
			s.loaded = loadedEncryption()
		}
	}
	if s.loaded == s.reported && now.Sub(s.reportedAt) < bootstrap.AppliedEvery {
		return nil
	}
	a := bootstrap.Applied{Server: etcd.Name(s.r.cfg), EncryptionConfig: s.loaded, Time: now.Unix()}
	if err := bootstrap.PutApplied(ctx, kv, a); err != nil {
		return err
	}
	s.reported, s.reportedAt = s.loaded, now
	return nil
}

// bundleSyncLoop runs the comparison and the report while the server runs.
func (r *run) bundleSyncLoop(context.Context) error {
	s := r.bsync
	if s == nil {
		return nil
	}
	r.sup.Go("bundle-sync", 5*time.Second, func(ctx context.Context) error {
		cli, err := r.etcdClient(ctx)
		if err != nil {
			return fmt.Errorf("datastore %s: %w", r.store.Description, err)
		}
		defer cli.Close()
		t := time.NewTicker(syncEvery)
		defer t.Stop()
		for {
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err := s.pass(cctx, cli)
			if err == nil {
				err = s.report(cctx, cli, time.Now())
			}
			cancel()
			if err != nil && ctx.Err() == nil {
				// The datastore may be down for a while (quorum lost): retry.
				s.warnOnce("err "+err.Error(), "comparing this server's shared files with the cluster's bootstrap bundle: %v (retrying)", err)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
		}
	})
	return nil
}
