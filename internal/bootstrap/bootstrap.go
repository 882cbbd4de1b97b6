// Package bootstrap shares what every server of one cluster must hold alike
// — the CAs with their keys, the service-account signing key, the
// secrets-encryption configuration — through the cluster's datastore, so
// that a second server started on the same external datastore serves the
// first one's cluster instead of inventing its own. The files travel as one
// bundle under a reserved etcd key, sealed with a key derived from the
// cluster token's secret (argon2id, then AES-256-GCM): whoever can read the
// database but lacks the token learns nothing and cannot alter the bundle
// unnoticed. The embedded etcd's CAs (package etcd) are in the bundle too,
// when the server has them. The first server to publish wins (an etcd create-if-absent
// transaction); every other server loads the winner's bundle. Later
// changes go both ways (sync.go): a three-way comparison of a server's
// files, its record of the last agreement and the bundle says what to
// publish (a compare-and-swap update) and what to take; servers report the
// encryption configuration they have loaded, so that a key rotation can
// wait for all of them. The package knows nothing about how the datastore
// is run, so an embedded etcd can reuse it.
package bootstrap

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/crypto/argon2"

	"github.com/k1s-io/k1s/internal/atomicfile"
)

// Key is where the sealed bundle lives in the datastore (outside the
// apiserver's /registry prefix). The version in it is the format's.
const Key = "/k1s/bootstrap/v1"

// Files are the paths, relative to a server's <data-dir>/server, that
// every server must share; Optional ones may be absent (secrets encryption
// never turned on; the embedded etcd's CAs on another datastore).
var (
	Files = []string{
		"tls/server-ca.crt", "tls/server-ca.key",
		"tls/client-ca.crt", "tls/client-ca.key",
		"tls/request-header-ca.crt", "tls/request-header-ca.key",
		"tls/kubelet-serving-ca.crt", "tls/kubelet-serving-ca.key",
		"tls/service.key",
		"cred/encryption-config.json",
		"tls/etcd/server-ca.crt", "tls/etcd/server-ca.key",
		"tls/etcd/peer-ca.crt", "tls/etcd/peer-ca.key",
	}
	Optional = []string{"cred/encryption-config.json",
		"tls/etcd/server-ca.crt", "tls/etcd/server-ca.key", "tls/etcd/peer-ca.crt", "tls/etcd/peer-ca.key"}
)

// identity are the files that make a cluster: a data dir holding other
// ones belongs to another cluster.
var identity = []string{"tls/server-ca.crt", "tls/client-ca.crt", "tls/request-header-ca.crt", "tls/kubelet-serving-ca.crt"}

// Bundle is the shared files' content by path (see Files).
type Bundle struct {
	Files map[string][]byte `json:"files"`
	// TokenHash is the SHA-256 of the token secret the bundle was sealed
	// with, checked again after decryption.
	TokenHash string `json:"tokenHash"`
}

// Collect reads the shared files of serverDir into a bundle.
func Collect(serverDir string) (*Bundle, error) {
	b := &Bundle{Files: map[string][]byte{}}
	for _, f := range Files {
		data, err := os.ReadFile(filepath.Join(serverDir, f))
		if errors.Is(err, fs.ErrNotExist) && slices.Contains(Optional, f) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("collecting the cluster's shared files: %w", err)
		}
		b.Files[f] = data
	}
	return b, nil
}

// Check refuses to let a bundle replace a data dir's cluster identity: it
// fails when serverDir already holds a CA that differs from the bundle's.
func (b *Bundle) Check(serverDir string) error {
	for _, f := range identity {
		have, err := os.ReadFile(filepath.Join(serverDir, f))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if !bytes.Equal(have, b.Files[f]) {
			return fmt.Errorf("%s is not the CA of the cluster in the datastore: this data dir belongs to another cluster (start this server with a new --data-dir, or point it at its own datastore)", filepath.Join(serverDir, f))
		}
	}
	return nil
}

// Write puts the bundle's files that serverDir lacks into it (each
// atomically; keys and the etcd CAs 0600, other certificates 0644) and
// returns their paths. Files the server already has stay:
// they may be newer than the bundle (a key rotated on this server).
func (b *Bundle) Write(serverDir string) (written, kept []string, err error) {
	for f := range b.Files {
		if !slices.Contains(Files, f) {
			return nil, nil, fmt.Errorf("the cluster's bootstrap bundle names an unexpected file %q (written by a newer k1s?)", f)
		}
	}
	for _, f := range Files {
		data, ok := b.Files[f]
		if !ok {
			continue
		}
		path := filepath.Join(serverDir, f)
		have, err := os.ReadFile(path)
		if err == nil {
			if !bytes.Equal(have, data) {
				kept = append(kept, path)
			}
			continue
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return written, kept, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return written, kept, err
		}
		if err := atomicfile.Write(path, data, fileMode(f)); err != nil {
			return written, kept, err
		}
		written = append(written, path)
	}
	return written, kept, nil
}

// fileMode: keys and the etcd CAs 0600, other certificates 0644 (public,
// as package pki writes them).
func fileMode(f string) os.FileMode {
	if strings.HasSuffix(f, ".crt") && !strings.HasPrefix(f, "tls/etcd/") {
		return 0o644
	}
	return 0o600
}

// ErrWrongToken: the bundle does not open with the given token's secret.
var ErrWrongToken = errors.New("the datastore belongs to a cluster with a different token (or its bootstrap bundle was altered); start with that cluster's --token (the first server's <data-dir>/server/token)")

// envelope is the stored form: versioned, self-describing KDF parameters.
type envelope struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	// ServerCAHash is the SHA-256 of the server CA certificate, in the
	// clear as in every join token: a member whose token changed can tell
	// its own cluster's bundle without opening it.
	ServerCAHash string `json:"serverCAHash"`
	KDF          string `json:"kdf"`
	Time         uint32 `json:"time"`
	MemoryKiB    uint32 `json:"memoryKiB"`
	Threads      uint8  `json:"threads"`
	Salt         []byte `json:"salt"`
	Cipher       string `json:"cipher"`
	Nonce        []byte `json:"nonce"`
	Ciphertext   []byte `json:"ciphertext"`
}

const (
	format  = "k1s-bootstrap"
	version = 1
	// argon2id cost: RFC 9106's second recommended setting (64 MiB), about
	// 0.1 s on one core, paid once per server start.
	kdfTime    = 3
	kdfMemory  = 64 * 1024
	kdfThreads = 4
	// Upper bounds on what Open accepts, so an altered envelope cannot make
	// a server allocate gigabytes before the authentication fails.
	maxMemory = 1024 * 1024
	maxTime   = 16
)

func tokenHash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// aad binds the ciphertext to this format, version and CA hash.
func aad(e *envelope) []byte {
	return fmt.Appendf(nil, "%s/v%d/%s/%s", e.Format, e.Version, e.Cipher, e.ServerCAHash)
}

// ServerCAHash is the SHA-256 (hex) of a server CA certificate PEM.
func ServerCAHash(pem []byte) string {
	sum := sha256.Sum256(pem)
	return hex.EncodeToString(sum[:])
}

// SealedServerCAHash reads the server CA hash of a sealed bundle without
// opening it. It is not authenticated until Open succeeds.
func SealedServerCAHash(data []byte) string {
	var e envelope
	if json.Unmarshal(data, &e) != nil {
		return ""
	}
	return e.ServerCAHash
}

func deriveAEAD(secret string, e *envelope) (cipher.AEAD, error) {
	key := argon2.IDKey([]byte(secret), e.Salt, e.Time, e.MemoryKiB, e.Threads, 32)
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Seal encrypts b with a key derived from the token secret and a random salt.
func Seal(secret string, b *Bundle) ([]byte, error) {
	if secret == "" {
		return nil, errors.New("no token secret to seal the bootstrap bundle with")
	}
	b.TokenHash = tokenHash(secret)
	plain, err := json.Marshal(b)
	if err != nil {
		return nil, err
	}
	return sealWith(secret, format, ServerCAHash(b.Files["tls/server-ca.crt"]), plain)
}

// sealWith encrypts plain in an envelope of the given format.
func sealWith(secret, format, caHash string, plain []byte) ([]byte, error) {
	e := &envelope{Format: format, Version: version, KDF: "argon2id", Time: kdfTime, MemoryKiB: kdfMemory,
		Threads: kdfThreads, Salt: make([]byte, 16), Cipher: "aes-256-gcm", ServerCAHash: caHash}
	if _, err := rand.Read(e.Salt); err != nil {
		return nil, err
	}
	aead, err := deriveAEAD(secret, e)
	if err != nil {
		return nil, err
	}
	e.Nonce = make([]byte, aead.NonceSize())
	if _, err := rand.Read(e.Nonce); err != nil {
		return nil, err
	}
	e.Ciphertext = aead.Seal(nil, e.Nonce, plain, aad(e))
	return json.Marshal(e)
}

// Open decrypts a sealed bundle; a wrong secret or any altered byte gives
// ErrWrongToken.
func Open(secret string, data []byte) (*Bundle, error) {
	plain, err := openWith(secret, format, Key, data)
	if err != nil {
		return nil, err
	}
	var b Bundle
	if err := json.Unmarshal(plain, &b); err != nil {
		return nil, fmt.Errorf("the datastore's bootstrap bundle decrypts but does not parse: %w", err)
	}
	if b.TokenHash != tokenHash(secret) {
		return nil, ErrWrongToken
	}
	for _, f := range Files {
		if _, ok := b.Files[f]; !ok && !slices.Contains(Optional, f) {
			return nil, fmt.Errorf("the datastore's bootstrap bundle lacks %s", f)
		}
	}
	return &b, nil
}

// openWith decrypts an envelope of the given format.
func openWith(secret, format, key string, data []byte) ([]byte, error) {
	var e envelope
	if err := json.Unmarshal(data, &e); err != nil || e.Format != format {
		return nil, fmt.Errorf("the datastore's %s is not a %s envelope: %v", key, format, err)
	}
	if e.Version != version || e.KDF != "argon2id" || e.Cipher != "aes-256-gcm" {
		return nil, fmt.Errorf("the datastore's bootstrap bundle is version %d (%s, %s); this k1s reads version %d (argon2id, aes-256-gcm): run the same k1s version on every server", e.Version, e.KDF, e.Cipher, version)
	}
	if e.Time == 0 || e.Time > maxTime || e.MemoryKiB < 8 || e.MemoryKiB > maxMemory || e.Threads == 0 || len(e.Salt) < 16 {
		return nil, fmt.Errorf("the datastore's bootstrap bundle has implausible key-derivation parameters: %w", ErrWrongToken)
	}
	aead, err := deriveAEAD(secret, &e)
	if err != nil {
		return nil, err
	}
	if len(e.Nonce) != aead.NonceSize() {
		return nil, ErrWrongToken
	}
	plain, err := aead.Open(nil, e.Nonce, e.Ciphertext, aad(&e))
	if err != nil {
		return nil, ErrWrongToken
	}
	return plain, nil
}
