package pki

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// CARotation is what RotateCAs did.
type CARotation struct {
	BackupDir        string // the tls dir and token as they were
	OldHash, NewHash string // of the server CA, as join tokens carry it
	Token            string // the server token with the new hash
}

// RotateCAs replaces every CA of the cluster with a new one while the
// server is stopped (the caller holds the data-dir lock). It first copies
// the tls dir and the token file into a backup folder beside them; then
// removes the CAs and the leaves they signed, keeping service.key (the
// signing key of ServiceAccount tokens: Pods' tokens stay valid), creates
// the new CAs, and writes the server token with the new CA hash and the
// same secret. The server's next start issues every leaf from the new CAs,
// its own node's included; agents must join again with the new token.
func RotateCAs(tlsDir, tokenPath string, now time.Time) (*CARotation, error) {
	f := Files{Dir: tlsDir}
	oldCA, err := os.ReadFile(f.ServerCA())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no server CA at %s: is --data-dir a k1s server's data dir?", f.ServerCA())
	}
	if err != nil {
		return nil, err
	}
	tokData, err := os.ReadFile(tokenPath)
	if err != nil {
		return nil, fmt.Errorf("reading the server token (its CA hash changes with the CA): %w", err)
	}
	tok, err := ParseToken(string(tokData))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", tokenPath, err)
	}
	entries, err := os.ReadDir(tlsDir)
	if err != nil {
		return nil, err
	}
	backup := filepath.Join(filepath.Dir(tlsDir), "tls-before-rotate-ca-"+now.UTC().Format("20060102T150405Z"))
	if err := os.Mkdir(backup, 0o700); err != nil {
		return nil, fmt.Errorf("creating the backup folder: %w", err)
	}
	// Copies, not moves: until every copy is on disk the old set is intact.
	for _, e := range entries {
		if e.Type().IsRegular() {
			if err := copyFile(filepath.Join(tlsDir, e.Name()), filepath.Join(backup, e.Name())); err != nil {
				return nil, fmt.Errorf("backing up %s: %w", e.Name(), err)
			}
		}
	}
	if err := copyFile(tokenPath, filepath.Join(backup, "token")); err != nil {
		return nil, fmt.Errorf("backing up the token: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if e.Type().IsRegular() && name != filepath.Base(f.ServiceAccountKey()) &&
			(strings.HasSuffix(name, ".crt") || strings.HasSuffix(name, ".key")) {
			if err := os.Remove(filepath.Join(tlsDir, name)); err != nil {
				return nil, err
			}
		}
	}
	cas, err := loadCAs(tlsDir, true, now, func(*Event) {})
	if err != nil {
		return nil, fmt.Errorf("creating the new CAs: %w (the old files are in %s)", err, backup)
	}
	r := &CARotation{BackupDir: backup, OldHash: CAHash(oldCA), NewHash: CAHash(cas["server-ca"].CertPEM)}
	r.Token = Token{CAHash: r.NewHash, User: "server", Secret: tok.Secret}.String()
	if err := writeFileAtomic(tokenPath, []byte(r.Token+"\n"), 0o600); err != nil {
		return nil, err
	}
	return r, nil
}

func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return writeFileAtomic(to, data, 0o600)
}
