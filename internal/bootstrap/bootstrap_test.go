package bootstrap

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/k1s-io/k1s/internal/config"
	"github.com/k1s-io/k1s/internal/datastore"
)

const secret = "0123456789abcdef0123456789abcdef"

// fakeServerDir writes a server dir with every shared file, contents
// tagged with tag so two dirs differ.
func fakeServerDir(t *testing.T, tag string) string {
	dir := t.TempDir()
	for _, f := range Files {
		p := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(tag+":"+f), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestSealOpenRoundTripWritesFiles(t *testing.T) {
	src := fakeServerDir(t, "a")
	b, err := Collect(src)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := Seal(secret, b)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(sealed), "a:tls/server-ca.key") {
		t.Fatal("sealed bundle contains a file in the clear")
	}
	got, err := Open(secret, sealed)
	if err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	if err := got.Check(dst); err != nil {
		t.Fatal(err)
	}
	written, kept, err := got.Write(dst)
	if err != nil {
		t.Fatal(err)
	}
	if len(written) != len(Files) || len(kept) != 0 {
		t.Errorf("written %d files, kept %v; want %d written", len(written), kept, len(Files))
	}
	for _, f := range Files {
		p := filepath.Join(dst, f)
		data, err := os.ReadFile(p)
		if err != nil || string(data) != "a:"+f {
			t.Errorf("%s = %q %v", f, data, err)
		}
		want := os.FileMode(0o600)
		if strings.HasSuffix(f, ".crt") && !strings.HasPrefix(f, "tls/etcd/") {
			want = 0o644 // the embedded etcd's files are all 0600
		}
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s mode %v %v, want %v", f, fi.Mode(), err, want)
		}
	}
	// A second write changes nothing; a file the server changed is kept.
	if err := os.WriteFile(filepath.Join(dst, "cred/encryption-config.json"), []byte("rotated"), 0o600); err != nil {
		t.Fatal(err)
	}
	written, kept, err = got.Write(dst)
	if err != nil || len(written) != 0 || len(kept) != 1 {
		t.Errorf("second Write: written %v kept %v err %v; want nothing written, the changed file kept", written, kept, err)
	}
}

func TestOptionalFileMayBeAbsent(t *testing.T) {
	src := fakeServerDir(t, "a")
	os.Remove(filepath.Join(src, "cred/encryption-config.json"))
	b, err := Collect(src)
	if err != nil {
		t.Fatal(err)
	}
	sealed, _ := Seal(secret, b)
	if _, err := Open(secret, sealed); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(src, "tls/service.key"))
	if _, err := Collect(src); err == nil {
		t.Fatal("Collect without the service-account key succeeded")
	}
}

func TestWrongTokenAndTampering(t *testing.T) {
	b, err := Collect(fakeServerDir(t, "a"))
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := Seal(secret, b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open("another-secret-of-32-characters!", sealed); !errors.Is(err, ErrWrongToken) {
		t.Fatalf("Open with the wrong secret: %v, want ErrWrongToken", err)
	}
	if !strings.Contains(ErrWrongToken.Error(), "different token") || !strings.Contains(ErrWrongToken.Error(), "--token") {
		t.Errorf("error does not name the problem and the fix: %v", ErrWrongToken)
	}
	// Flip one bit of the ciphertext, then of the salt: both are refused.
	for _, field := range []string{"ciphertext", "salt", "nonce", "ca hash"} {
		e := decode(t, sealed)
		switch field {
		case "ciphertext":
			e.Ciphertext[len(e.Ciphertext)/2] ^= 1
		case "salt":
			e.Salt[0] ^= 1
		case "nonce":
			e.Nonce[0] ^= 1
		case "ca hash":
			e.ServerCAHash = ServerCAHash([]byte("another CA"))
		}
		if _, err := Open(secret, encode(t, e)); !errors.Is(err, ErrWrongToken) {
			t.Errorf("Open with altered %s: %v, want ErrWrongToken", field, err)
		}
	}
	if got, want := SealedServerCAHash(sealed), ServerCAHash(b.Files["tls/server-ca.crt"]); got != want || got == "" {
		t.Errorf("SealedServerCAHash = %q, want %q", got, want)
	}
	// Another version is named, not misread.
	e := decode(t, sealed)
	e.Version = 2
	if _, err := Open(secret, encode(t, e)); err == nil || !strings.Contains(err.Error(), "version 2") {
		t.Errorf("Open of version 2: %v", err)
	}
	// A KDF cost that would exhaust memory is refused before deriving.
	e = decode(t, sealed)
	e.MemoryKiB = 1 << 30
	if _, err := Open(secret, encode(t, e)); !errors.Is(err, ErrWrongToken) {
		t.Errorf("Open with a 1 TiB argon2 memory cost: %v", err)
	}
}

func TestCheckRefusesAnotherClustersCA(t *testing.T) {
	b, err := Collect(fakeServerDir(t, "a"))
	if err != nil {
		t.Fatal(err)
	}
	other := fakeServerDir(t, "b")
	err = b.Check(other)
	if err == nil || !strings.Contains(err.Error(), "another cluster") {
		t.Fatalf("Check over another cluster's CA: %v", err)
	}
}

// startKine runs the real kine on SQLite in a temp dir.
func startKine(t *testing.T) *clientv3.Client {
	cfg := &config.Server{DataDir: t.TempDir()}
	cfg.Datastore.ConnectTimeout = time.Minute
	cfg.Datastore.CompactInterval = config.DefaultCompactInterval
	cfg.Datastore.CompactTimeout = config.DefaultCompactTimeout
	cfg.Datastore.CompactMinRetain = config.DefaultCompactRetain
	cfg.Datastore.CompactBatchSize = config.DefaultCompactBatch
	s, err := datastore.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop(10 * time.Second) })
	cli, err := clientv3.New(clientv3.Config{Endpoints: s.Endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// Servers publishing at once through kine: exactly one wins and every
// one ends up with the winner's bundle.
func TestConcurrentPublishOneWinner(t *testing.T) {
	cli := startKine(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, found, err := Get(ctx, cli); err != nil || found {
		t.Fatalf("empty datastore: found=%v err=%v", found, err)
	}
	const n = 6
	var wg sync.WaitGroup
	results := make([][]byte, n)
	wins := make([]bool, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			mine := []byte{byte('a' + i)}
			results[i], wins[i], errs[i] = Publish(ctx, cli, mine)
		})
	}
	wg.Wait()
	winners := 0
	var winner []byte
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("publisher %d: %v", i, errs[i])
		}
		if wins[i] {
			winners++
			winner = results[i]
		}
	}
	if winners != 1 {
		t.Fatalf("%d publishers won, want exactly 1", winners)
	}
	for i := range n {
		if string(results[i]) != string(winner) {
			t.Errorf("publisher %d holds %q, the winner stored %q", i, results[i], winner)
		}
	}
	stored, found, err := Get(ctx, cli)
	if err != nil || !found || string(stored) != string(winner) {
		t.Errorf("stored %q found=%v err=%v, want %q", stored, found, err, winner)
	}
}

func decode(t *testing.T, sealed []byte) *envelope {
	t.Helper()
	var e envelope
	if err := json.Unmarshal(sealed, &e); err != nil {
		t.Fatal(err)
	}
	return &e
}

func encode(t *testing.T, e *envelope) []byte {
	t.Helper()
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
