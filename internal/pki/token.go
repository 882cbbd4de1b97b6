package pki

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
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

// RetiredTokensPath lists the SHA-256 of every server token secret that
// `k1s token rotate` replaced, one per line.
func RetiredTokensPath(tokenPath string) string { return tokenPath + ".retired" }

func secretHash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// RetireToken records that old was replaced by current, so that a server
// restarted with the old one (a --token left in a unit file or the config
// file) does not bring it back. A secret that is current again is no
// longer retired.
func RetireToken(tokenPath, old, current string) error {
	retired := readRetired(tokenPath)
	delete(retired, secretHash(current))
	retired[secretHash(old)] = true
	lines := make([]string, 0, len(retired))
	for h := range retired {
		lines = append(lines, h)
	}
	sort.Strings(lines)
	return writeFileAtomic(RetiredTokensPath(tokenPath), []byte(strings.Join(lines, "\n")+"\n"), 0o600)
}

func readRetired(tokenPath string) map[string]bool {
	out := map[string]bool{}
	data, _ := os.ReadFile(RetiredTokensPath(tokenPath))
	for _, l := range strings.Fields(string(data)) {
		out[l] = true
	}
	return out
}

// ensureToken writes the server's join token. A given token wins over the
// stored one, unless `k1s token rotate` retired it: then the stored token
// stays and the returned event says so. A given K10 token must name this
// cluster's CA.
func ensureToken(path string, caPEM []byte, given string) (string, *Event, error) {
	hash := CAHash(caPEM)
	var t Token
	var ev *Event
	if given != "" {
		p, err := ParseToken(given)
		if err != nil {
			return "", nil, fmt.Errorf("--token: %w", err)
		}
		if p.CAHash != "" && p.CAHash != hash {
			return "", nil, fmt.Errorf("--token was issued for a different cluster CA (hash %s…, this cluster's is %s…): pass only the secret, or the token of this cluster", p.CAHash[:12], hash[:12])
		}
		if _, err := os.Stat(path); err == nil && readRetired(path)[secretHash(p.Secret)] {
			ev = &Event{Name: "server token", Action: "kept",
				Reason: fmt.Sprintf("the token given with --token, K1S_TOKEN or the config file was retired by `k1s token rotate` and is ignored; set it to the current token in %s, or remove it", path)}
			given = ""
		} else {
			t = Token{CAHash: hash, User: "server", Secret: p.Secret}
		}
	}
	if given == "" {
		data, err := os.ReadFile(path)
		switch {
		case err == nil:
			p, perr := ParseToken(string(data))
			if perr != nil {
				return "", nil, fmt.Errorf("%s: %w (remove it to create a new token)", path, perr)
			}
			t = Token{CAHash: hash, User: "server", Secret: p.Secret}
		case errors.Is(err, fs.ErrNotExist):
			b := make([]byte, 16)
			if _, err := rand.Read(b); err != nil {
				return "", nil, err
			}
			t = Token{CAHash: hash, User: "server", Secret: hex.EncodeToString(b)}
		default:
			return "", nil, err
		}
	}
	s := t.String()
	if err := writeFileAtomic(path, []byte(s+"\n"), 0o600); err != nil {
		return "", nil, err
	}
	return s, ev, nil
}
