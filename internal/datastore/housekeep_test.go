package datastore

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"testing"

	_ "github.com/mattn/go-sqlite3"
)

// fill makes a WAL-mode database at path (with params) holding mib MiB of
// blobs, then deletes them all: the state kine's compaction leaves.
func fill(t *testing.T, path, params string, mib int) {
	t.Helper()
	db, err := sql.Open("sqlite3", path+"?_journal_mode=WAL&"+params)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE t (b BLOB)`); err != nil {
		t.Fatal(err)
	}
	blob := make([]byte, 64<<10)
	for i := 0; i < mib*16; i++ {
		if _, err := db.Exec(`INSERT INTO t VALUES (?)`, blob); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec(`DELETE FROM t`); err != nil {
		t.Fatal(err)
	}
}

func TestHousekeepReturnsFreePagesAndTruncatesTheWAL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	fill(t, path, autoVacuumParam, 8)
	if got := fileSize(path) + fileSize(path+"-wal"); got < 8<<20 {
		t.Fatalf("db + wal hold %d bytes after writing 8 MiB: the test wrote nothing", got)
	}
	u, err := Housekeep(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	if !u.Incremental || !u.Checkpointed {
		t.Fatalf("%+v: want incremental mode and a checkpoint", u)
	}
	if u.Reclaimed < 7<<20 {
		t.Errorf("reclaimed %d bytes of 8 MiB deleted", u.Reclaimed)
	}
	if db, wal := fileSize(path), fileSize(path+"-wal"); db > 1<<20 || wal != 0 {
		t.Errorf("after housekeeping: file %d bytes, WAL %d bytes; want ≤ 1 MiB and 0", db, wal)
	}
}

func TestHousekeepLeavesANonIncrementalDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	fill(t, path, "", 4)
	u, err := Housekeep(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	if u.Incremental || u.Reclaimed != 0 || u.FreeBytes < 3<<20 {
		t.Errorf("%+v: want a non-incremental file left with its free pages", u)
	}
}

// kine runs VACUUM at start on a connection opened with the endpoint's
// parameters; that is what converts a database created before k1s asked
// for incremental auto-vacuum.
func TestStartupVacuumConvertsAnOldDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	fill(t, path, "", 1)
	db, err := sql.Open("sqlite3", path+"?"+sqliteParams)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`VACUUM`); err != nil {
		t.Fatal(err)
	}
	var mode int
	if err := db.QueryRow(`PRAGMA auto_vacuum`).Scan(&mode); err != nil || mode != 2 {
		t.Fatalf("auto_vacuum after VACUUM = %d (%v), want 2 (incremental)", mode, err)
	}
}

func TestHousekeepMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent.db")
	if _, err := Housekeep(context.Background(), path); err == nil {
		t.Fatal("no error for a missing database")
	}
	if _, err := os.Stat(path); err == nil {
		t.Fatal("housekeeping created the database")
	}
}
