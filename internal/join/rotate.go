package join

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/k1s-io/k1s/internal/atomicfile"
	"github.com/k1s-io/k1s/internal/config"
	"github.com/k1s-io/k1s/internal/pki"
)

// RotateServerToken replaces the server token in tokenPath with newToken
// (a secret, or a full K10 token of this cluster) and returns the full
// token. The running server reads the file at every join, so the old token
// is refused from then on; joined nodes keep their own certificates.
func RotateServerToken(tokenPath, caPath, newToken string) (string, error) {
	newToken = strings.TrimSpace(newToken)
	if newToken == "" {
		return "", errors.New("the new token is empty")
	}
	old, err := os.ReadFile(tokenPath)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("no server token at %s: is --data-dir the server's data dir?", tokenPath)
	}
	if err != nil {
		return "", err
	}
	caPEM, err := os.ReadFile(caPath)
	if err != nil {
		return "", fmt.Errorf("reading the server CA (its hash goes into the token): %w", err)
	}
	hash := pki.CAHash(caPEM)
	p, err := pki.ParseToken(newToken)
	if err != nil {
		return "", fmt.Errorf("the new token: %w", err)
	}
	if p.CAHash != "" && p.CAHash != hash {
		return "", fmt.Errorf("the new token names another cluster's CA (hash %s…, this cluster's is %s…): pass only the secret", p.CAHash[:12], hash[:12])
	}
	if len(p.Secret) < config.MinTokenSecret {
		return "", fmt.Errorf("the new token's secret is %d characters, at least %d are needed so it cannot be guessed", len(p.Secret), config.MinTokenSecret)
	}
	cur, err := pki.ParseToken(string(old))
	if err == nil && cur.Secret == p.Secret {
		return "", errors.New("the new token is the current one: choose another")
	}
	full := pki.Token{CAHash: hash, User: "server", Secret: p.Secret}.String()
	if err := atomicfile.Write(tokenPath, []byte(full+"\n"), 0o600); err != nil {
		return "", err
	}
	if cur.Secret != "" {
		if err := pki.RetireToken(tokenPath, cur.Secret, p.Secret); err != nil {
			return full, fmt.Errorf("the token is rotated, but recording the old one as retired failed (a server restarted with the old --token would bring it back): %w", err)
		}
	}
	return full, nil
}
