// Package snapshot saves, lists, prunes and restores snapshots of a k1s
// server's datastore, of either kind: the embedded SQLite (Save, a
// consistent copy made online with SQLite's VACUUM INTO, a read
// transaction: the server keeps writing) or the embedded etcd (SaveEtcd,
// etcd's own snapshot API against the running member). Both kinds share
// one directory, one naming (<name>-<time>.db) and a sha256 file beside
// each snapshot (all 0600); KindOf tells them apart by their first bytes,
// and List shows it. Restoring checks the checksum and the kind first.
// Restore (SQLite) checks that the file is a kine database, keeps the
// replaced database beside it, and moves the revision past the old
// database's so that clients holding newer resource versions re-list
// instead of missing the change; package etcd restores etcd snapshots.
package snapshot

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	_ "github.com/mattn/go-sqlite3" // the SQLite kine uses
	clientv3 "go.etcd.io/etcd/client/v3"
	etcdsnapshot "go.etcd.io/etcd/client/v3/snapshot"
	"go.uber.org/zap"

	"github.com/k1s-io/k1s/internal/atomicfile"
	"github.com/k1s-io/k1s/internal/digest"
)

// Ext is a snapshot's file name extension; its checksum is in Ext+".sha256".
const Ext = ".db"

// Scheduled names the snapshots the server takes on its schedule; only
// they are pruned by retention.
const Scheduled = "scheduled"

// OnDemand is the default name of `k1s snapshot save`.
const OnDemand = "on-demand"

var validName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$`)

// CheckName refuses names that would not make a plain file name.
func CheckName(name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("invalid snapshot name %q: use lower-case letters, digits and '-' (at most 64)", name)
	}
	return nil
}

// Kind is what a snapshot holds.
type Kind string

const (
	// SQLite is a copy of the embedded SQLite (kine) database.
	SQLite Kind = "sqlite"
	// Etcd is an etcd snapshot (a bbolt database with etcd's sha256
	// appended), of the embedded etcd member.
	Etcd Kind = "etcd"
	// Unknown is any other file.
	Unknown Kind = "unknown"
)

// sqliteHeader starts every SQLite 3 database file.
const sqliteHeader = "SQLite format 3\x00"

// boltMagic is bbolt's marker in its first meta page, after the 16-byte
// page header (little-endian on the architectures k1s builds for).
var boltMagic = []byte{0xed, 0xda, 0x0c, 0xed}

// KindOf tells a snapshot's kind from its first bytes.
func KindOf(path string) (Kind, error) {
	f, err := os.Open(path)
	if err != nil {
		return Unknown, err
	}
	defer f.Close()
	head := make([]byte, 20)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return Unknown, err
	}
	head = head[:n]
	switch {
	case len(head) >= len(sqliteHeader) && string(head[:len(sqliteHeader)]) == sqliteHeader:
		return SQLite, nil
	case len(head) >= 20 && string(head[16:20]) == string(boltMagic):
		return Etcd, nil
	}
	return Unknown, nil
}

// Info is one snapshot on disk.
type Info struct {
	Name    string // file name without Ext
	Path    string
	Kind    Kind
	Size    int64
	Created time.Time
}

// timeFormat is the time in a snapshot's name: sortable, no ':'.
const timeFormat = "20060102t150405z"

// Save writes a snapshot of the SQLite database at db into dir, named
// <name>-<time>, with its checksum file, both 0600. A failed save leaves
// nothing behind.
func Save(ctx context.Context, db, dir, name string, now time.Time) (Info, error) {
	if err := CheckName(name); err != nil {
		return Info{}, err
	}
	if _, err := os.Stat(db); err != nil {
		return Info{}, fmt.Errorf("no SQLite database at %s: %w", db, err)
	}
	base, final, tmp, err := prepare(dir, name, now)
	if err != nil {
		return Info{}, err
	}
	defer os.Remove(tmp)
	// The source is opened read-only: a snapshot never writes the live database.
	src, err := sql.Open("sqlite3", "file:"+db+"?mode=ro&_busy_timeout=30000")
	if err != nil {
		return Info{}, err
	}
	defer src.Close()
	if _, err := src.ExecContext(ctx, "VACUUM INTO ?", tmp); err != nil {
		return Info{}, fmt.Errorf("copying %s: %w", db, err)
	}
	if err := checkKine(ctx, tmp); err != nil {
		return Info{}, err
	}
	return finish(tmp, final, base, SQLite, now)
}

// SaveEtcd writes a snapshot of the etcd member that cc names (one
// endpoint) into dir, as Save does: etcd's snapshot API streams the
// member's database, etcd's own sha256 appended, while it keeps serving.
func SaveEtcd(ctx context.Context, cc clientv3.Config, dir, name string, now time.Time) (Info, error) {
	if err := CheckName(name); err != nil {
		return Info{}, err
	}
	base, final, tmp, err := prepare(dir, name, now)
	if err != nil {
		return Info{}, err
	}
	defer os.Remove(tmp)
	// etcd's client writes tmp+".part" (0600, synced) and renames it to
	// tmp once the whole stream, with its checksum, is in.
	if _, err := etcdsnapshot.SaveWithVersion(ctx, zap.NewNop(), cc, tmp); err != nil {
		return Info{}, fmt.Errorf("etcd snapshot of %s: %w", strings.Join(cc.Endpoints, ","), err)
	}
	if k, err := KindOf(tmp); err != nil || k != Etcd {
		return Info{}, fmt.Errorf("the etcd snapshot of %s is not a bbolt database (%s, %v)", strings.Join(cc.Endpoints, ","), k, err)
	}
	return finish(tmp, final, base, Etcd, now)
}

// finish moves a complete snapshot at tmp to final with its checksum file.
// prepare makes dir and names a snapshot taken now: its base name, its
// final path (which must not exist) and the temporary file it is written
// to first (cleared of a crashed attempt's).
func prepare(dir, name string, now time.Time) (base, final, tmp string, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", "", err
	}
	base = name + "-" + now.UTC().Format(timeFormat)
	final = filepath.Join(dir, base+Ext)
	if _, err := os.Stat(final); err == nil {
		return "", "", "", fmt.Errorf("snapshot %s exists already", final)
	}
	tmp = filepath.Join(dir, ".tmp-"+base+Ext)
	_ = os.Remove(tmp)
	return base, final, tmp, nil
}

func finish(tmp, final, base string, kind Kind, now time.Time) (Info, error) {
	if err := os.Chmod(tmp, 0o600); err != nil {
		return Info{}, err
	}
	sum, size, err := fileSum(tmp)
	if err != nil {
		return Info{}, err
	}
	if err := syncFile(tmp); err != nil {
		return Info{}, err
	}
	if err := os.Rename(tmp, final); err != nil {
		return Info{}, err
	}
	if err := atomicfile.Write(final+".sha256", []byte(sum+"  "+base+Ext+"\n"), 0o600); err != nil {
		_ = os.Remove(final)
		return Info{}, err
	}
	return Info{Name: base, Path: final, Kind: kind, Size: size, Created: now.UTC().Truncate(time.Second)}, nil
}

// List returns the snapshots in dir, oldest first. A missing dir has none.
func List(dir string) ([]Info, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Info
	for _, e := range entries {
		n := e.Name()
		if !e.Type().IsRegular() || !strings.HasSuffix(n, Ext) || strings.HasPrefix(n, ".") {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return nil, err
		}
		base := strings.TrimSuffix(n, Ext)
		created := fi.ModTime().UTC()
		if i := strings.LastIndex(base, "-"); i > 0 {
			if t, err := time.Parse(timeFormat, base[i+1:]); err == nil {
				created = t
			}
		}
		p := filepath.Join(dir, n)
		kind, err := KindOf(p)
		if err != nil {
			kind = Unknown
		}
		out = append(out, Info{Name: base, Path: p, Kind: kind, Size: fi.Size(), Created: created})
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// Delete removes the snapshot called name (with or without Ext) from dir.
func Delete(dir, name string) error {
	name = strings.TrimSuffix(name, Ext)
	if strings.ContainsRune(name, '/') || strings.HasPrefix(name, ".") || name == "" {
		return fmt.Errorf("invalid snapshot name %q", name)
	}
	p := filepath.Join(dir, name+Ext)
	if err := os.Remove(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("no snapshot %s in %s (see `k1s snapshot ls`)", name, dir)
		}
		return err
	}
	if err := os.Remove(p + ".sha256"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// Prune deletes the oldest snapshots named prefix-<time> until keep are
// left, and returns the names it deleted.
func Prune(dir, prefix string, keep int) ([]string, error) {
	all, err := List(dir)
	if err != nil {
		return nil, err
	}
	var mine []Info
	for _, s := range all {
		if rest, ok := strings.CutPrefix(s.Name, prefix+"-"); ok && !strings.Contains(rest, "-") {
			mine = append(mine, s)
		}
	}
	var deleted []string
	for len(mine) > keep {
		if err := Delete(dir, mine[0].Name); err != nil {
			return deleted, err
		}
		deleted = append(deleted, mine[0].Name)
		mine = mine[1:]
	}
	return deleted, nil
}

// Verify checks a snapshot before it replaces a datastore of kind want:
// its checksum file must exist, it must be of that kind, its checksum
// must match, and a SQLite one must be a kine database.
func Verify(ctx context.Context, path string, want Kind) error {
	sum, err := os.ReadFile(path + ".sha256")
	if err != nil {
		return fmt.Errorf("snapshot %s has no checksum file %s.sha256: %w", path, path, err)
	}
	f := strings.Fields(string(sum))
	if len(f) == 0 {
		return fmt.Errorf("checksum file %s.sha256 is empty", path)
	}
	if err := CheckKind(path, want); err != nil {
		return err
	}
	got, _, err := fileSum(path)
	if err != nil {
		return err
	}
	if got != f[0] {
		return fmt.Errorf("snapshot %s is damaged: its sha256 is %s, its checksum file says %s", path, got, f[0])
	}
	if want == SQLite {
		return checkKine(ctx, path)
	}
	return nil
}

// CheckKind refuses a snapshot that is not of kind want, saying which
// server could restore it.
func CheckKind(path string, want Kind) error {
	got, err := KindOf(path)
	switch {
	case err != nil:
		return err
	case got == want:
		return nil
	case got == SQLite:
		return fmt.Errorf("%s is a snapshot of k1s's SQLite datastore, and this server runs embedded etcd: restore it on a SQLite server (a data dir never started with --cluster-init or --server)", path)
	case got == Etcd && want == SQLite:
		return fmt.Errorf("%s is an etcd snapshot, and this server's datastore is SQLite: restore it on the embedded-etcd server it came from (a data dir started with --cluster-init)", path)
	default:
		return fmt.Errorf("%s is not a k1s snapshot: neither a SQLite database nor an etcd snapshot", path)
	}
}

// checkKine reports whether the SQLite file at path is sound and holds a
// kine table.
func checkKine(ctx context.Context, path string) error {
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		return err
	}
	defer db.Close()
	var ok string
	if err := db.QueryRowContext(ctx, "PRAGMA quick_check").Scan(&ok); err != nil || ok != "ok" {
		return fmt.Errorf("%s is not a sound SQLite database (%v%s)", path, err, ok)
	}
	var n int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM kine WHERE name = 'compact_rev_key'").Scan(&n); err != nil {
		return fmt.Errorf("%s is not a k1s snapshot: it has no kine datastore (%v)", path, err)
	}
	return nil
}

// Restore replaces the database at db with the snapshot at path (checked
// first) while no server runs. The database it replaces, with its WAL and
// shared-memory files, is kept as <db>.pre-restore-<time>. It returns the
// kept path, "" when there was no database.
func Restore(ctx context.Context, path, db string, now time.Time) (string, error) {
	if err := Verify(ctx, path, SQLite); err != nil {
		return "", err
	}
	oldRev, err := currentRevision(ctx, db)
	if err != nil {
		return "", fmt.Errorf("reading the revision of the database to replace: %w", err)
	}
	tmp := db + ".restoring"
	_ = os.Remove(tmp)
	defer os.Remove(tmp)
	if err := copyFile(path, tmp); err != nil {
		return "", err
	}
	if err := bumpRevision(ctx, tmp, oldRev); err != nil {
		return "", err
	}
	kept := ""
	if _, err := os.Stat(db); err == nil {
		kept = db + ".pre-restore-" + now.UTC().Format(timeFormat)
		for _, suffix := range []string{"", "-wal", "-shm"} {
			if err := os.Rename(db+suffix, kept+suffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return "", err
			}
		}
	}
	if err := os.Rename(tmp, db); err != nil {
		return kept, err
	}
	return kept, atomicfile.SyncDir(filepath.Dir(db))
}

// currentRevision is kine's revision of the database at db, 0 if none.
func currentRevision(ctx context.Context, db string) (int64, error) {
	if _, err := os.Stat(db); errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	d, err := sql.Open("sqlite3", "file:"+db+"?mode=ro")
	if err != nil {
		return 0, err
	}
	defer d.Close()
	var rev sql.NullInt64
	if err := d.QueryRowContext(ctx, "SELECT MAX(id) FROM kine").Scan(&rev); err != nil {
		return 0, err
	}
	return rev.Int64, nil
}

// bumpRevision prepares a restored database for clients that saw a newer
// one: it drops the history before the snapshot (superseded and deleted
// rows, as a compaction would), moves the revision past old, and marks
// everything up to it compacted, so that a watch or list from an older
// resource version gets "compacted" and re-lists.
func bumpRevision(ctx context.Context, path string, old int64) error {
	d, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		return err
	}
	defer d.Close()
	tx, err := d.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	var cur int64
	if err := tx.QueryRowContext(ctx, "SELECT COALESCE(MAX(id), 0) FROM kine").Scan(&cur); err != nil {
		return err
	}
	rev := max(cur, old) + 1
	stmts := []struct {
		q    string
		args []any
	}{
		{`DELETE FROM kine WHERE name != 'compact_rev_key' AND id < (SELECT MAX(k2.id) FROM kine AS k2 WHERE k2.name = kine.name)`, nil},
		{`DELETE FROM kine WHERE deleted != 0`, nil},
		// A key no client lists: it only carries the new revision.
		{`INSERT INTO kine(id, name, created, deleted, create_revision, prev_revision, lease, value, old_value) VALUES(?, '/k1s/restored', 1, 0, ?, 0, 0, '', '')`, []any{rev, rev}},
		{`UPDATE kine SET prev_revision = ? WHERE name = 'compact_rev_key'`, []any{rev}},
	}
	for _, s := range stmts {
		if _, err := tx.ExecContext(ctx, s.q, s.args...); err != nil {
			return fmt.Errorf("preparing the restored database: %w", err)
		}
	}
	return tx.Commit()
}

func fileSum(path string) (string, int64, error) {
	sum, n, err := digest.File(path)
	return sum.Hex(), n, err
}

func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
