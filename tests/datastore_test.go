package tests

import (
	"crypto/rand"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3" // the SQLite kine uses

	"github.com/k1s-io/k1s/tests/harness"
)

// TestLargeSQLiteOutlivesConnectTimeout: kine vacuums the SQLite database
// at start, which for a large database takes longer than
// --datastore-connect-timeout (here 1s). The embedded database is waited
// for all the same: the server comes up Ready, and says in its log why it
// is waiting.
func TestLargeSQLiteOutlivesConnectTimeout(t *testing.T) {
	s, err := harness.NewServer(t.TempDir(), "--datastore-connect-timeout=1s")
	if err != nil {
		t.Fatal(err)
	}
	dbDir := filepath.Join(s.DataDir, "server", "db")
	if err := os.MkdirAll(dbDir, 0o700); err != nil {
		t.Fatal(err)
	}
	dbPath := filepath.Join(dbDir, "state.db")
	// 400 MiB in a table of its own: kine ignores it, VACUUM copies it
	// (about 5 s on the 2-core development VM).
	const mib = 400
	began := time.Now()
	if err := padDatabase(dbPath, mib); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %d MiB to %s in %s", mib, dbPath, time.Since(began).Round(time.Millisecond))

	began = time.Now()
	startExisting(t, s) // waits for /readyz
	t.Logf("Ready %s after start", time.Since(began).Round(time.Millisecond))
	// kine's INFO lines go to the components' log file, k1s's own to the
	// terminal; the file holds both.
	log := s.ComponentLog()
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "VACUUM") || strings.Contains(l, "still opening") {
			t.Log(l)
		}
	}
	for _, want := range []string{
		"Running startup VACUUM",
		fmt.Sprintf("still opening SQLite database %s (", dbPath),
		"MB) after 1s: kine vacuums it at start",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	if strings.Contains(log, "not reachable within") {
		t.Error("log reports the datastore as not reachable")
	}
}

// padDatabase creates the SQLite file at path with a table of mib blobs of
// 1 MiB of random bytes.
func padDatabase(path string, mib int) error {
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		return err
	}
	defer db.Close()
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`CREATE TABLE k1s_test_padding (b BLOB)`); err != nil {
		return err
	}
	blob := make([]byte, 1<<20)
	for i := 0; i < mib; i++ {
		_, _ = rand.Read(blob)
		if _, err := tx.Exec(`INSERT INTO k1s_test_padding VALUES (?)`, blob); err != nil {
			return err
		}
	}
	return tx.Commit()
}
