package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/k1s-io/k1s/internal/atomicfile"
	"github.com/k1s-io/k1s/internal/datastore"
	"github.com/k1s-io/k1s/internal/snapshot"
)

// restoredMarker records which snapshot a --cluster-reset restored, so that
// a restart with the same flags (a service manager's) does not restore
// it again over what the cluster did since.
const restoredMarker = "restored-from"

// restore replaces the SQLite database with the --cluster-reset-restore-path
// snapshot, before the datastore opens it.
func (r *run) restore(ctx context.Context) error {
	path := r.cfg.Snapshots.RestorePath
	db := datastore.SQLitePath(datastore.Endpoint(r.cfg))
	sum, err := os.ReadFile(path + ".sha256")
	if err != nil {
		return fmt.Errorf("--cluster-reset-restore-path: snapshot %s has no checksum file %s.sha256: %v", path, path, err)
	}
	mark := filepath.Join(filepath.Dir(db), restoredMarker)
	if prev, err := os.ReadFile(mark); err == nil && strings.TrimSpace(string(prev)) == strings.TrimSpace(string(sum)) {
		r.log.Warnf("the datastore was already restored from %s: starting without restoring it again (remove --cluster-reset and --cluster-reset-restore-path)", path)
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(db), 0o700); err != nil {
		return err
	}
	kept, err := snapshot.Restore(ctx, path, db, time.Now())
	if err != nil {
		return fmt.Errorf("--cluster-reset-restore-path: %w (nothing was changed)", err)
	}
	if err := atomicfile.Write(mark, sum, 0o600); err != nil {
		return err
	}
	if kept != "" {
		r.log.Warnf("datastore restored from snapshot %s; the database it replaced is kept as %s", path, kept)
	} else {
		r.log.Warnf("datastore restored from snapshot %s", path)
	}
	return nil
}

// scheduleSnapshots starts the scheduled snapshots of the SQLite
// datastore, unless they are off or the datastore is external.
func (r *run) scheduleSnapshots() {
	sn := r.cfg.Snapshots
	db := datastore.SQLitePath(datastore.Endpoint(r.cfg))
	if sn.Disable || sn.Schedule == "" {
		return
	}
	if r.store.Etcd != nil {
		r.log.Infof("no scheduled snapshots: k1s snapshots SQLite only; back the embedded etcd up with etcdctl snapshot save (client certificates in %s)", r.cfg.EtcdTLSDir())
		return
	}
	if db == "" {
		r.log.Infof("no scheduled snapshots: the datastore is external (%s); back it up with its own tool", r.store.Description)
		return
	}
	sched, err := cron.ParseStandard(sn.Schedule) // validated with the config
	if err != nil {
		r.log.Warnf("scheduled snapshots off: %v", err)
		return
	}
	dir := r.cfg.SnapshotDir()
	r.sup.Go("snapshots", 5*time.Second, func(ctx context.Context) error {
		for {
			next := sched.Next(time.Now())
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Until(next)):
			}
			info, err := snapshot.Save(ctx, db, dir, snapshot.Scheduled, time.Now())
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				// A full disk must not stop the cluster: say so and try next time.
				r.log.Warnf("scheduled snapshot failed: %v", err)
				continue
			}
			r.log.Infof("snapshot %s saved (%d bytes)", info.Path, info.Size)
			if deleted, err := snapshot.Prune(dir, snapshot.Scheduled, sn.Retention); err != nil {
				r.log.Warnf("pruning snapshots: %v", err)
			} else if len(deleted) > 0 {
				r.log.Infof("removed old snapshots %s (--snapshot-retention %d)", strings.Join(deleted, ", "), sn.Retention)
			}
		}
	})
}
