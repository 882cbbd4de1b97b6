package snapshot

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)

// kineDB makes a SQLite file shaped like kine's, with rows (name, deleted)
// in id order after compact_rev_key (id 1).
func kineDB(t *testing.T, path string, rows ...string) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		`CREATE TABLE kine (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, created INTEGER, deleted INTEGER, create_revision INTEGER, prev_revision INTEGER, lease INTEGER, value BLOB, old_value BLOB)`,
		`INSERT INTO kine(name, created, deleted, create_revision, prev_revision, lease, value, old_value) VALUES('compact_rev_key', 1, 0, 0, 0, 0, '', '')`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range rows {
		name, deleted := strings.CutSuffix(r, "!")
		if _, err := db.Exec(`INSERT INTO kine(name, created, deleted, create_revision, prev_revision, lease, value, old_value) VALUES(?, 1, ?, 0, 0, 0, ?, '')`, name, deleted, "v-"+name); err != nil {
			t.Fatal(err)
		}
	}
}

func names(t *testing.T, path string) (rows []string, compactRev, maxID int64) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	q, err := db.Query(`SELECT name FROM kine WHERE name != 'compact_rev_key' ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	for q.Next() {
		var n string
		if err := q.Scan(&n); err != nil {
			t.Fatal(err)
		}
		rows = append(rows, n)
	}
	if err := db.QueryRow(`SELECT prev_revision FROM kine WHERE name = 'compact_rev_key'`).Scan(&compactRev); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(`SELECT MAX(id) FROM kine`).Scan(&maxID); err != nil {
		t.Fatal(err)
	}
	return rows, compactRev, maxID
}

func TestSaveListPrune(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := filepath.Join(dir, "state.db")
	kineDB(t, db, "/registry/a")
	snaps := filepath.Join(dir, "snapshots")
	for i := range 3 {
		if _, err := Save(ctx, db, snaps, Scheduled, t0.Add(time.Duration(i)*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	manual, err := Save(ctx, db, snaps, "before-upgrade", t0)
	if err != nil {
		t.Fatal(err)
	}
	if manual.Name != "before-upgrade-20261201t080000z" {
		t.Errorf("name %s", manual.Name)
	}
	for _, p := range []string{manual.Path, manual.Path + ".sha256", snaps} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s is mode %v: others may read it", p, fi.Mode())
		}
	}
	if err := Verify(ctx, manual.Path); err != nil {
		t.Fatalf("a fresh snapshot does not verify: %v", err)
	}
	if _, err := Save(ctx, db, snaps, "Bad/Name", t0); err == nil || !strings.Contains(err.Error(), "invalid snapshot name") {
		t.Errorf("bad name: %v", err)
	}

	deleted, err := Prune(snaps, Scheduled, 2)
	if err != nil || len(deleted) != 1 || deleted[0] != "scheduled-20261201t080000z" {
		t.Fatalf("prune: %v %v, want the oldest scheduled one", deleted, err)
	}
	all, err := List(snaps)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range all {
		got = append(got, s.Name)
	}
	want := "before-upgrade-20261201t080000z scheduled-20261201t090000z scheduled-20261201t100000z"
	if strings.Join(got, " ") != want {
		t.Errorf("list after prune: %v, want %s (manual snapshots are never pruned)", got, want)
	}
	if err := Delete(snaps, "nope"); err == nil || !strings.Contains(err.Error(), "no snapshot nope") {
		t.Errorf("deleting a missing snapshot: %v", err)
	}
	if err := Delete(snaps, manual.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(manual.Path + ".sha256"); !os.IsNotExist(err) {
		t.Errorf("checksum file left after delete: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(snaps, ".tmp-*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestVerifyRefusesDamagedAndForeignFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := filepath.Join(dir, "state.db")
	kineDB(t, db, "/registry/a")
	s, err := Save(ctx, db, dir, "x", t0)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(s.Path)
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(s.Path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Verify(ctx, s.Path); err == nil || !strings.Contains(err.Error(), "is damaged") {
		t.Errorf("damaged snapshot: %v", err)
	}

	// A sound SQLite file with a right checksum, but no kine table.
	other := filepath.Join(dir, "other.db")
	o, _ := sql.Open("sqlite3", "file:"+other)
	if _, err := o.Exec(`CREATE TABLE t (x)`); err != nil {
		t.Fatal(err)
	}
	o.Close()
	sum, _, _ := fileSum(other)
	if err := os.WriteFile(other+".sha256", []byte(sum+"  other.db\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Verify(ctx, other); err == nil || !strings.Contains(err.Error(), "not a k1s snapshot") {
		t.Errorf("foreign database: %v", err)
	}
	if err := Verify(ctx, filepath.Join(dir, "state.db")); err == nil || !strings.Contains(err.Error(), "no checksum file") {
		t.Errorf("no checksum file: %v", err)
	}
}

func TestRestoreKeepsTheOldDatabaseAndMovesTheRevisionOn(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := filepath.Join(dir, "state.db")
	// History: a written twice, b created and deleted, c live.
	kineDB(t, db, "/registry/a", "/registry/a", "/registry/b", "/registry/b!", "/registry/c")
	s, err := Save(ctx, db, dir, "x", t0)
	if err != nil {
		t.Fatal(err)
	}
	// The cluster goes on: 20 more revisions.
	d, _ := sql.Open("sqlite3", "file:"+db)
	for range 20 {
		if _, err := d.Exec(`INSERT INTO kine(name, created, deleted, create_revision, prev_revision, lease, value, old_value) VALUES('/registry/later', 1, 0, 0, 0, 0, '', '')`); err != nil {
			t.Fatal(err)
		}
	}
	d.Close()
	_, _, oldMax := names(t, db)

	kept, err := Restore(ctx, s.Path, db, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if kept != db+".pre-restore-20261201t090000z" {
		t.Errorf("kept %q", kept)
	}
	if rows, _, _ := names(t, kept); len(rows) != 25 {
		t.Errorf("the replaced database has %d rows, want its 25", len(rows))
	}
	rows, compact, maxID := names(t, db)
	if strings.Join(rows, " ") != "/registry/a /registry/c /k1s/restored" {
		t.Errorf("restored rows %v, want the live keys of the snapshot and the revision marker", rows)
	}
	if maxID != oldMax+1 || compact != maxID {
		t.Errorf("restored revision %d (compacted to %d), want %d for both: past the replaced database's %d", maxID, compact, oldMax+1, oldMax)
	}
}
