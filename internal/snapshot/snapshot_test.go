package snapshot

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
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
	if err := Verify(ctx, manual.Path, SQLite); err != nil {
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
	if err := Verify(ctx, s.Path, SQLite); err == nil || !strings.Contains(err.Error(), "is damaged") {
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
	if err := Verify(ctx, other, SQLite); err == nil || !strings.Contains(err.Error(), "not a k1s snapshot") {
		t.Errorf("foreign database: %v", err)
	}
	if err := Verify(ctx, filepath.Join(dir, "state.db"), SQLite); err == nil || !strings.Contains(err.Error(), "no checksum file") {
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

// boltDB makes a bbolt database, the format of etcd's snapshots.
func boltDB(t *testing.T, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("key"))
		if err != nil {
			return err
		}
		return b.Put([]byte("a"), []byte("b"))
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// withSum writes path's checksum file as Save does.
func withSum(t *testing.T, path string) {
	t.Helper()
	sum, _, err := fileSum(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".sha256", []byte(sum+"  "+filepath.Base(path)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestKindOf: SQLite and etcd snapshots are told apart by their first
// bytes; anything else is unknown.
func TestKindOf(t *testing.T) {
	dir := t.TempDir()
	sq, bo, txt, empty := filepath.Join(dir, "s.db"), filepath.Join(dir, "b.db"), filepath.Join(dir, "t.db"), filepath.Join(dir, "e.db")
	kineDB(t, sq)
	boltDB(t, bo)
	if err := os.WriteFile(txt, []byte("SQLite format 2 and more text than twenty bytes"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]Kind{sq: SQLite, bo: Etcd, txt: Unknown, empty: Unknown} {
		if got, err := KindOf(path); err != nil || got != want {
			t.Errorf("KindOf(%s) = %s, %v; want %s", filepath.Base(path), got, err, want)
		}
	}
	if _, err := KindOf(filepath.Join(dir, "missing.db")); err == nil {
		t.Error("KindOf of a missing file: no error")
	}
}

// TestVerifyRefusesTheOtherKind: a SQLite snapshot is refused where an
// etcd one is wanted and the other way round, with a checksum that
// matches; List shows each snapshot's kind.
func TestVerifyRefusesTheOtherKind(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := filepath.Join(t.TempDir(), "state.db")
	kineDB(t, db, "/registry/a")
	sq, err := Save(ctx, db, dir, "sq", t0)
	if err != nil {
		t.Fatal(err)
	}
	if sq.Kind != SQLite {
		t.Errorf("Save made a %s snapshot", sq.Kind)
	}
	et := filepath.Join(dir, "et-20261201t090000z.db")
	boltDB(t, et)
	withSum(t, et)
	if err := Verify(ctx, et, Etcd); err != nil {
		t.Errorf("an etcd snapshot with its checksum does not verify: %v", err)
	}
	if err := Verify(ctx, sq.Path, Etcd); err == nil || !strings.Contains(err.Error(), "SQLite datastore") || !strings.Contains(err.Error(), "runs embedded etcd") {
		t.Errorf("SQLite snapshot on etcd: %v", err)
	}
	if err := Verify(ctx, et, SQLite); err == nil || !strings.Contains(err.Error(), "is an etcd snapshot") || !strings.Contains(err.Error(), "datastore is SQLite") {
		t.Errorf("etcd snapshot on SQLite: %v", err)
	}
	other := filepath.Join(dir, "other-20261201t100000z.db")
	if err := os.WriteFile(other, []byte("not a database, long enough to be read"), 0o600); err != nil {
		t.Fatal(err)
	}
	withSum(t, other)
	for _, k := range []Kind{SQLite, Etcd} {
		if err := Verify(ctx, other, k); err == nil || !strings.Contains(err.Error(), "neither a SQLite database nor an etcd snapshot") {
			t.Errorf("foreign file as %s: %v", k, err)
		}
	}
	// A damaged etcd snapshot: the kind is right, the checksum not.
	data, _ := os.ReadFile(et)
	data[len(data)-1] ^= 0xff
	if err := os.WriteFile(et, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Verify(ctx, et, Etcd); err == nil || !strings.Contains(err.Error(), "is damaged") {
		t.Errorf("damaged etcd snapshot: %v", err)
	}

	all, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range all {
		got = append(got, s.Name+":"+string(s.Kind))
	}
	want := "sq-20261201t080000z:sqlite et-20261201t090000z:etcd other-20261201t100000z:unknown"
	if strings.Join(got, " ") != want {
		t.Errorf("List = %v, want %s", got, want)
	}
}
