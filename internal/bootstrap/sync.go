package bootstrap

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/k1s-io/k1s/internal/atomicfile"
)

// Hashes are the SHA-256 (hex) of shared files by path (see Files); a
// file that is absent has no entry.
type Hashes map[string]string

func hashOf(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// Hashes of the bundle's files.
func (b *Bundle) Hashes() Hashes {
	h := Hashes{}
	for f, data := range b.Files {
		h[f] = hashOf(data)
	}
	return h
}

// LocalHashes hashes the shared files serverDir holds.
func LocalHashes(serverDir string) (Hashes, error) {
	h := Hashes{}
	for _, f := range Files {
		sum, err := HashFile(filepath.Join(serverDir, f))
		if err != nil {
			return nil, err
		}
		if sum != "" {
			h[f] = sum
		}
	}
	return h, nil
}

// syncedFile records, per shared file, the content this server and the
// bundle last agreed on: the base of the three-way comparison that tells
// a change made here from one made on another server.
const syncedFile = "bootstrap-synced.json"

// LoadSynced reads serverDir's record; ok is false when there is none (a
// data dir from before bundle updates, or a first start).
func LoadSynced(serverDir string) (h Hashes, ok bool, err error) {
	data, err := os.ReadFile(filepath.Join(serverDir, syncedFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	if err := json.Unmarshal(data, &h); err != nil {
		return nil, false, fmt.Errorf("%s: %w (remove it: the next start compares this server's files with the datastore's bundle as on a first start)", filepath.Join(serverDir, syncedFile), err)
	}
	return h, true, nil
}

// SaveSynced writes serverDir's record.
func SaveSynced(serverDir string, h Hashes) error {
	data, err := json.Marshal(h)
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(serverDir, syncedFile), data, 0o600)
}

// Agreed is the record after a comparison: the files where this server
// and the bundle agree take their common hash, the others keep synced's.
func Agreed(local, synced, bundle Hashes) Hashes {
	out := Hashes{}
	for _, f := range Files {
		switch {
		case local[f] == bundle[f] && local[f] != "":
			out[f] = local[f]
		case synced[f] != "":
			out[f] = synced[f]
		}
	}
	return out
}

// Plan is what a three-way comparison asks for, by file.
type Plan struct {
	// Publish: changed on this server since the last agreement, not in
	// the bundle: this server's copy goes into the bundle.
	Publish []string
	// Apply: changed in the bundle (by another server), not here, or
	// missing here: the bundle's copy is written here.
	Apply []string
	// Conflict: changed on both sides differently; nothing is done.
	Conflict []string
}

// Empty is true when the server and the bundle agree on every file.
func (p Plan) Empty() bool { return len(p.Publish)+len(p.Apply)+len(p.Conflict) == 0 }

// PlanSync compares this server's files (local), the record of the last
// agreement (synced) and the bundle's files. A file missing here is taken
// from the bundle; a file the bundle lacks is published.
func PlanSync(local, synced, bundle Hashes) Plan {
	var p Plan
	for _, f := range Files {
		l, s, b := local[f], synced[f], bundle[f]
		switch {
		case l == b:
		case b == "":
			p.Publish = append(p.Publish, f)
		case l == "" || l == s:
			p.Apply = append(p.Apply, f)
		case b == s:
			p.Publish = append(p.Publish, f)
		default:
			p.Conflict = append(p.Conflict, f)
		}
	}
	return p
}

// Merged is the bundle to publish: b's files with serverDir's copies of
// the files named.
func (b *Bundle) Merged(serverDir string, files []string) (*Bundle, error) {
	out := &Bundle{Files: map[string][]byte{}}
	for f, data := range b.Files {
		out.Files[f] = data
	}
	for _, f := range files {
		if !slices.Contains(Files, f) {
			return nil, fmt.Errorf("%q is not a shared file", f)
		}
		data, err := os.ReadFile(filepath.Join(serverDir, f))
		if err != nil {
			return nil, err
		}
		out.Files[f] = data
	}
	return out, nil
}

// Replace writes the bundle's copies of files into serverDir, each
// atomically with the mode Write uses; a file it replaces is first copied
// into backupDir (created when needed). It returns the paths written.
func (b *Bundle) Replace(serverDir, backupDir string, files []string) ([]string, error) {
	var written []string
	for _, f := range files {
		data, ok := b.Files[f]
		if !ok {
			continue
		}
		path := filepath.Join(serverDir, f)
		old, err := os.ReadFile(path)
		switch {
		case err == nil:
			keep := filepath.Join(backupDir, f)
			if err := os.MkdirAll(filepath.Dir(keep), 0o700); err != nil {
				return written, err
			}
			if err := atomicfile.Write(keep, old, 0o600); err != nil {
				return written, err
			}
		case !errors.Is(err, fs.ErrNotExist):
			return written, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return written, err
		}
		if err := atomicfile.Write(path, data, fileMode(f)); err != nil {
			return written, err
		}
		written = append(written, path)
	}
	return written, nil
}

// GetRev reads the sealed bundle and its mod revision (0: none).
func GetRev(ctx context.Context, kv clientv3.KV) (sealed []byte, rev int64, err error) {
	resp, err := kv.Get(ctx, Key)
	if err != nil {
		return nil, 0, fmt.Errorf("reading %s from the datastore: %w", Key, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, nil
	}
	return resp.Kvs[0].Value, resp.Kvs[0].ModRevision, nil
}

// Update replaces the bundle if it is still at mod revision rev and
// returns its new one; ok is false when another server changed it first
// (read it again). This is etcd's update idiom (compare, put, else get),
// which kine supports.
func Update(ctx context.Context, kv clientv3.KV, sealed []byte, rev int64) (newRev int64, ok bool, err error) {
	resp, err := kv.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(Key), "=", rev)).
		Then(clientv3.OpPut(Key, string(sealed))).
		Else(clientv3.OpGet(Key)).
		Commit()
	if err != nil {
		return 0, false, fmt.Errorf("updating %s in the datastore: %w", Key, err)
	}
	if !resp.Succeeded {
		return 0, false, nil
	}
	return resp.Header.Revision, true, nil
}

// AppliedPrefix is where each server reports the encryption configuration
// its apiserver runs with, so that a key rotation can wait for every
// server before it makes a new key the one Secrets are written with.
const AppliedPrefix = "/k1s/bootstrap/applied/"

// Applied is one server's report, refreshed every AppliedEvery.
type Applied struct {
	Server string `json:"server"`
	// EncryptionConfig is the SHA-256 of the encryption configuration the
	// server's apiserver has loaded ("" for none).
	EncryptionConfig string `json:"encryptionConfig"`
	// Time is when the report was written (Unix seconds).
	Time int64 `json:"time"`
}

// AppliedEvery is how often a server refreshes its report; one older than
// AppliedStale is of a server that is not running.
const (
	AppliedEvery = 10 * time.Second
	AppliedStale = 45 * time.Second
)

// HashFile is the SHA-256 (hex) of a file's content, "" if it is absent.
func HashFile(path string) (string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return hashOf(data), nil
}

// PutApplied writes a server's report.
func PutApplied(ctx context.Context, kv clientv3.KV, a Applied) error {
	data, err := json.Marshal(a)
	if err != nil {
		return err
	}
	_, err = kv.Put(ctx, AppliedPrefix+a.Server, string(data))
	return err
}

// ListApplied reads every server's report.
func ListApplied(ctx context.Context, kv clientv3.KV) ([]Applied, error) {
	resp, err := kv.Get(ctx, AppliedPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("reading the servers' reports from the datastore: %w", err)
	}
	var out []Applied
	for _, k := range resp.Kvs {
		var a Applied
		if err := json.Unmarshal(k.Value, &a); err != nil {
			return nil, fmt.Errorf("%s: %w", k.Key, err)
		}
		out = append(out, a)
	}
	return out, nil
}

// Lagging names the running servers (a report younger than AppliedStale
// at now) whose apiserver has not loaded the encryption configuration
// with hash want; running is how many reported.
func Lagging(reports []Applied, want string, now time.Time) (lagging []string, running int) {
	for _, a := range reports {
		if now.Sub(time.Unix(a.Time, 0)) > AppliedStale {
			continue
		}
		running++
		if a.EncryptionConfig != want {
			lagging = append(lagging, a.Server)
		}
	}
	slices.Sort(lagging)
	return lagging, running
}
