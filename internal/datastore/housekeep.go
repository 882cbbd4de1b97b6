package datastore

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// autoVacuumParam makes every connection kine opens ask for incremental
// auto-vacuum. A new database is created that way; an existing one is
// converted by the VACUUM kine runs at start (it applies the connection's
// setting), once.
const autoVacuumParam = "_auto_vacuum=incremental"

// reclaimAt is the free space in the SQLite file (pages emptied by
// compaction) above which housekeeping hands it back to the filesystem.
const reclaimAt = 1 << 20

// reclaimStep is how much free space one vacuum transaction returns.
const reclaimStep = 4 << 20

// Usage is what housekeeping found and did in one pass.
type Usage struct {
	FileBytes, FreeBytes, WALBytes int64 // before the pass
	Reclaimed                      int64 // bytes of free pages returned
	Incremental                    bool  // the file is in incremental auto-vacuum mode
	Checkpointed                   bool  // the WAL was copied back and truncated
}

// Housekeep keeps a SQLite database near the size of what it holds: kine's
// compaction deletes old revisions, but SQLite keeps their pages as free
// space in the file, and the write-ahead log keeps the size of the
// largest burst of writes since it was last truncated. One pass gives
// free pages back (when more than reclaimAt) and truncates the WAL. It
// opens its own connection; kine's stay as they are.
func Housekeep(ctx context.Context, path string) (Usage, error) {
	var u Usage
	// Opening would create a missing file; there is nothing to keep then.
	if _, err := os.Stat(path); err != nil {
		return u, err
	}
	// No shared cache: this connection must not wait on kine's locks
	// inside one cache, only on SQLite's file locks (busy timeout).
	db, err := sql.Open("sqlite3", path+"?_busy_timeout=10000")
	if err != nil {
		return u, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	var mode, pageSize, pages, free int64
	for _, q := range []struct {
		pragma string
		dst    *int64
	}{{"auto_vacuum", &mode}, {"page_size", &pageSize}, {"page_count", &pages}, {"freelist_count", &free}} {
		if err := db.QueryRowContext(ctx, "PRAGMA "+q.pragma).Scan(q.dst); err != nil {
			return u, fmt.Errorf("PRAGMA %s: %w", q.pragma, err)
		}
	}
	u.FileBytes, u.FreeBytes = pages*pageSize, free*pageSize
	u.WALBytes = fileSize(path + "-wal")
	u.Incremental = mode == 2
	if u.Incremental && u.FreeBytes > reclaimAt {
		left, err := vacuum(ctx, db, free, reclaimStep/pageSize)
		u.Reclaimed = (free - left) * pageSize
		if err != nil {
			return u, fmt.Errorf("incremental vacuum: %w", err)
		}
	}
	// TRUNCATE copies the WAL into the file (which is where a vacuum's
	// shrinking takes effect) and empties it. busy=1 means a reader still
	// needed old frames; the next pass tries again.
	var busy, logFrames, done int64
	if err := db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logFrames, &done); err != nil {
		return u, fmt.Errorf("WAL checkpoint: %w", err)
	}
	u.Checkpointed = busy == 0
	return u, nil
}

// vacuum returns free pages step pages at a time, each step its own write
// transaction, so that kine's writes wait for one step (milliseconds), not
// for the whole file. It returns the free pages left.
func vacuum(ctx context.Context, db *sql.DB, free, step int64) (int64, error) {
	for free > 0 && ctx.Err() == nil {
		// The pragma returns rows while it works; draining them runs it.
		rows, err := db.QueryContext(ctx, fmt.Sprintf("PRAGMA incremental_vacuum(%d)", step))
		if err != nil {
			return free, err
		}
		for rows.Next() {
		}
		if err := rows.Close(); err != nil {
			return free, err
		}
		left := free
		if err := db.QueryRowContext(ctx, "PRAGMA freelist_count").Scan(&left); err != nil {
			return free, err
		}
		if left >= free { // nothing moved: do not spin
			return left, nil
		}
		free = left
	}
	return free, ctx.Err()
}

// housekeeper runs Housekeep every interval until ctx ends.
func housekeeper(ctx context.Context, wg *sync.WaitGroup, path string, every time.Duration, l logrus.FieldLogger) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		warned := false
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			u, err := Housekeep(ctx, path)
			switch {
			case err != nil && ctx.Err() == nil:
				l.Warnf("SQLite housekeeping of %s: %v (tried again in %s)", path, err, every)
			case err != nil:
			case !u.Incremental && !warned && u.FreeBytes > reclaimAt:
				warned = true
				l.Warnf("%s has %d MB of free pages that cannot be returned while k1s runs: the database is not in incremental auto-vacuum mode (the endpoint's parameters lack %s); they are returned at the next start",
					path, u.FreeBytes>>20, autoVacuumParam)
			case u.Reclaimed > 0:
				l.Infof("SQLite housekeeping: returned %d MB of free pages of %s (was %d MB, write-ahead log %d MB)",
					u.Reclaimed>>20, path, u.FileBytes>>20, u.WALBytes>>20)
			}
		}
	}()
}

func fileSize(path string) int64 {
	if st, err := os.Stat(path); err == nil {
		return st.Size()
	}
	return 0
}
