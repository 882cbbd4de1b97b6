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

// TestDatastoreStaysBounded: after a burst of writes is deleted, kine's
// compaction drops its history (none is kept beyond one compaction
// interval) and housekeeping gives the freed pages back and empties the
// write-ahead log, while the server runs.
func TestDatastoreStaysBounded(t *testing.T) {
	s := startServer(t, "--datastore-compact-interval=5s")
	dbPath := filepath.Join(s.DataDir, "server", "db", "state.db")
	const n, size = 300, 10 << 10
	var list strings.Builder
	list.WriteString("apiVersion: v1\nkind: List\nitems:\n")
	blob := strings.Repeat("x", size)
	for i := range n {
		fmt.Fprintf(&list, "- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: churn-%d, labels: {churn: \"1\"}}\n  data: {b: %s}\n", i, blob)
	}
	manifest := filepath.Join(t.TempDir(), "churn.yaml")
	if err := os.WriteFile(manifest, []byte(list.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := s.Kubectl("create", "-f", manifest); err != nil {
		t.Fatalf("create: %v\n%.2000s", err, out)
	}
	if out, err := s.Kubectl("delete", "configmaps", "-l", "churn=1", "--wait=false"); err != nil {
		t.Fatalf("delete: %v\n%.2000s", err, out)
	}
	peak := fileSize(dbPath) + fileSize(dbPath+"-wal")
	if peak < n*size {
		t.Fatalf("db + wal hold %d bytes after %d KiB were written", peak, n*size>>10)
	}
	var rows, free, pageSize, wal int64
	deadline := time.Now().Add(90 * time.Second)
	for {
		var err error
		rows, free, pageSize, err = dbState(dbPath)
		wal = fileSize(dbPath + "-wal")
		if err == nil && rows == 0 && free*pageSize < 1<<20 && wal < 1<<20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("90 s after the deletes: %d rows of the churn left, %d KiB free in the file, WAL %d KiB (%v); want 0 rows, < 1 MiB free, WAL < 1 MiB",
				rows, free*pageSize>>10, wal>>10, err)
		}
		time.Sleep(2 * time.Second)
	}
	final := fileSize(dbPath) + fileSize(dbPath+"-wal")
	t.Logf("db + wal: %d KiB at the peak, %d KiB after compaction and housekeeping", peak>>10, final>>10)
	if final > peak-n*size/2 {
		t.Errorf("db + wal shrank from %d to %d bytes only; the churn was %d bytes", peak, final, n*size)
	}
	if out, err := s.Kubectl("get", "--raw", "/readyz"); err != nil || out != "ok" {
		t.Errorf("server not ready after housekeeping: %q %v", out, err)
	}
}

// dbState reads, from a read-only connection beside the server's, how many
// rows of the churn (any revision) remain and the file's free pages.
func dbState(path string) (rows, free, pageSize int64, err error) {
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		return 0, 0, 0, err
	}
	defer db.Close()
	if err := db.QueryRow(`SELECT COUNT(*) FROM kine WHERE name LIKE '/registry/configmaps/default/churn-%'`).Scan(&rows); err != nil {
		return 0, 0, 0, err
	}
	if err := db.QueryRow(`PRAGMA freelist_count`).Scan(&free); err != nil {
		return 0, 0, 0, err
	}
	err = db.QueryRow(`PRAGMA page_size`).Scan(&pageSize)
	return rows, free, pageSize, err
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}
