package pki

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// A join token is K10<sha256 of the server CA PEM>::server:<secret>. The
// hash lets an agent pin the CA before it trusts the server.
const tokenPrefix = "K10"

// CAHash is the hash a token carries for the given CA bundle.
func CAHash(caPEM []byte) string {
	sum := sha256.Sum256(caPEM)
	return hex.EncodeToString(sum[:])
}

// Token is a parsed join token.
type Token struct {
	CAHash string // empty for a bare secret
	User   string
	Secret string
}

func (t Token) String() string {
	return fmt.Sprintf("%s%s::%s:%s", tokenPrefix, t.CAHash, t.User, t.Secret)
}

// ParseToken accepts a full K10 token or a bare secret.
func ParseToken(s string) (Token, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Token{}, errors.New("token is empty")
	}
	if strings.ContainsAny(s, " \t\n") {
		return Token{}, errors.New("token must not contain white space")
	}
	if !strings.HasPrefix(s, tokenPrefix) || !strings.Contains(s, "::") {
		return Token{User: "server", Secret: s}, nil
	}
	hash, creds, _ := strings.Cut(strings.TrimPrefix(s, tokenPrefix), "::")
	if len(hash) != 64 {
		return Token{}, errors.New("token has a malformed CA hash: want K10<64 hex digits>::<user>:<secret>")
	}
	if _, err := hex.DecodeString(hash); err != nil {
		return Token{}, errors.New("token has a malformed CA hash: want K10<64 hex digits>::<user>:<secret>")
	}
	user, secret, ok := strings.Cut(creds, ":")
	if !ok || user == "" || secret == "" {
		return Token{}, errors.New("token is malformed: want K10<ca hash>::<user>:<secret>")
	}
	return Token{CAHash: hash, User: user, Secret: secret}, nil
}

// ensureToken writes the server's join token. A given token wins over the
// stored one; a given K10 token must name this cluster's CA.
func ensureToken(path string, caPEM []byte, given string) (string, error) {
	hash := CAHash(caPEM)
	var t Token
	switch {
	case given != "":
		p, err := ParseToken(given)
		if err != nil {
			return "", fmt.Errorf("--token: %w", err)
		}
		if p.CAHash != "" && p.CAHash != hash {
			return "", fmt.Errorf("--token was issued for a different cluster CA (hash %s…, this cluster's is %s…): pass only the secret, or the token of this cluster", p.CAHash[:12], hash[:12])
		}
		t = Token{CAHash: hash, User: "server", Secret: p.Secret}
	default:
		data, err := os.ReadFile(path)
		switch {
		case err == nil:
			p, perr := ParseToken(string(data))
			if perr != nil {
				return "", fmt.Errorf("%s: %w (remove it to create a new token)", path, perr)
			}
			t = Token{CAHash: hash, User: "server", Secret: p.Secret}
		case errors.Is(err, fs.ErrNotExist):
			b := make([]byte, 16)
			if _, err := rand.Read(b); err != nil {
				return "", err
			}
			t = Token{CAHash: hash, User: "server", Secret: hex.EncodeToString(b)}
		default:
			return "", err
		}
	}
	s := t.String()
	if err := writeFileAtomic(path, []byte(s+"\n"), 0o600); err != nil {
		return "", err
	}
	return s, nil
}
