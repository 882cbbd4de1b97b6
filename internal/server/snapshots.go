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
	"github.com/k1s-io/k1s/internal/etcd"
	"github.com/k1s-io/k1s/internal/snapshot"
)

// restoredMarker records which snapshot a --cluster-reset restored, so that
// a restart with the same flags (a service manager's) does not restore
// it again over what the cluster did since.
const restoredMarker = "restored-from"

// restore replaces the datastore with the --cluster-reset-restore-path
// snapshot before the datastore starts: the SQLite database, or the
// embedded etcd member's data (then a one-member cluster).
func (r *run) restore(ctx context.Context) error {
	path := r.cfg.Snapshots.RestorePath
	embedded := r.cfg.EmbeddedEtcd()
	db := r.cfg.EtcdDir()
	if !embedded {
		db = datastore.SQLitePath(datastore.Endpoint(r.cfg))
	}
	sum, err := os.ReadFile(path + ".sha256")
	if err != nil {
		return fmt.Errorf("--cluster-reset-restore-path: snapshot %s has no checksum file %s.sha256: %v", path, path, err)
	}
	// The marker is beside the database (server/db for both kinds): an
	// etcd restore renames the etcd dir.
	mark := filepath.Join(filepath.Dir(db), restoredMarker)
	if prev, err := os.ReadFile(mark); err == nil && strings.TrimSpace(string(prev)) == strings.TrimSpace(string(sum)) {
		r.log.Warnf("the datastore was already restored from %s: starting without restoring it again (remove --cluster-reset and --cluster-reset-restore-path)", path)
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(db), 0o700); err != nil {
		return err
	}
	var kept string
	if embedded {
		kept, err = etcd.RestoreSnapshot(ctx, r.cfg, path, time.Now(), r.log)
	} else {
		kept, err = snapshot.Restore(ctx, path, db, time.Now())
	}
	switch {
	case err != nil && kept != "":
		// Moved aside, but the restored data could not take its place.
		return fmt.Errorf("--cluster-reset-restore-path: %w (the data it was to replace is in %s: move it back to %s to start without the restore)", err, kept, db)
	case err != nil:
		return fmt.Errorf("--cluster-reset-restore-path: %w (nothing was changed)", err)
	}
	if err := atomicfile.Write(mark, sum, 0o600); err != nil {
		return err
	}
	switch {
	case embedded && kept != "":
		r.log.Warnf("datastore restored from snapshot %s as a one-member etcd cluster (other servers must join again with --server and a new data dir); the member data it replaced is kept in %s", path, kept)
	case embedded:
		r.log.Warnf("datastore restored from snapshot %s as a one-member etcd cluster", path)
	case kept != "":
		r.log.Warnf("datastore restored from snapshot %s; the database it replaced is kept as %s", path, kept)
	default:
		r.log.Warnf("datastore restored from snapshot %s", path)
	}
	return nil
}

// scheduleSnapshots starts the scheduled snapshots of the SQLite
// datastore or the embedded etcd member, unless they are off or the
// datastore is external.
func (r *run) scheduleSnapshots() {
	sn := r.cfg.Snapshots
	db := datastore.SQLitePath(datastore.Endpoint(r.cfg))
	if sn.Disable || sn.Schedule == "" {
		return
	}
	member := r.store.Etcd
	if member == nil && db == "" {
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
			var info snapshot.Info
			var err error
			if member != nil {
				// This member's snapshot: each server of an etcd
				// cluster takes its own.
				info, err = member.Snapshot(ctx, dir, snapshot.Scheduled, time.Now())
			} else {
				info, err = snapshot.Save(ctx, db, dir, snapshot.Scheduled, time.Now())
			}
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
