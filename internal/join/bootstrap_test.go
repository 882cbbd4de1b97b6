package join

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/k1s-io/k1s/internal/pki"
)

func TestParseToken(t *testing.T) {
	hash := strings.Repeat("ab", 32)
	for _, c := range []struct {
		in, hash, secret, err string
	}{
		{in: "K10" + hash + "::server:0123456789abcdef", hash: hash, secret: "0123456789abcdef"},
		{in: "K10" + hash + "::abcdef.0123456789abcdef", hash: hash, secret: "abcdef.0123456789abcdef"},
		{in: " K10" + hash + "::abcdef.0123456789abcdef\n", hash: hash, secret: "abcdef.0123456789abcdef"},
		{in: "abcdef.0123456789abcdef", secret: "abcdef.0123456789abcdef"},
		{in: "a-bare-server-secret", secret: "a-bare-server-secret"},
		{in: "K10" + hash + "::abcdef.0123", err: "K10<ca hash>::<id>.<secret> (from 'k1s token create'"},
		{in: "K10" + hash + "::ABCDEF.0123456789abcdef", err: "token is malformed"},
		{in: "K10" + hash + "::abcdef0123456789abcdef", err: "token is malformed"},
		{in: "K10" + hash + "::abcdef.0123456789abcdef.x", err: "token is malformed"},
		{in: "K10abc::abcdef.0123456789abcdef", err: "malformed CA hash"},
		{in: "K10" + hash + "::server:", err: "token is malformed"},
		{in: "", err: "token is empty"},
	} {
		got, err := ParseToken(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseToken(%q) = %+v, %v; want error with %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || got.CAHash != c.hash || got.Secret != c.secret {
			t.Errorf("ParseToken(%q) = %+v, %v; want hash %q secret %q", c.in, got, err, c.hash, c.secret)
		}
	}
}

func TestNewTokenRequestValidate(t *testing.T) {
	for _, c := range []struct {
		r   NewTokenRequest
		err string
	}{
		{NewTokenRequest{TTL: time.Hour, Usages: []string{"authentication"}}, ""},
		{NewTokenRequest{TTL: 0, Usages: []string{"authentication", "signing"}}, ""},
		{NewTokenRequest{TTL: -time.Second, Usages: []string{"authentication"}}, "invalid --ttl -1s"},
		{NewTokenRequest{TTL: 500 * time.Millisecond, Usages: []string{"authentication"}}, "at least 1s"},
		{NewTokenRequest{TTL: time.Hour, Usages: []string{"join"}}, "invalid bootstrap token usage string: join"},
		{NewTokenRequest{TTL: time.Hour}, "--usages is empty"},
	} {
		err := c.r.Validate()
		if (c.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("Validate(%+v) = %v, want %q", c.r, err, c.err)
		}
	}
}

func (f *fixture) createToken(t *testing.T, r NewTokenRequest, now time.Time) (id string, tok pki.Token) {
	t.Helper()
	s, err := CreateBootstrapToken(context.Background(), f.kube, r, now)
	if err != nil {
		t.Fatal(err)
	}
	if !IsBootstrapToken(s) {
		t.Fatalf("created token %q is not <id>.<secret>", s)
	}
	id, _, _ = strings.Cut(s, ".")
	return id, pki.Token{CAHash: f.tok.CAHash, Secret: s}
}

// A created token is a real bootstrap-token Secret; it joins until it is
// deleted.
func TestBootstrapTokenJoinsUntilDeleted(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	id, tok := f.createToken(t, NewTokenRequest{TTL: time.Hour, Description: "edge rollout"}, now)
	s, err := f.kube.CoreV1().Secrets("kube-system").Get(context.Background(), "bootstrap-token-"+id, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, secret, _ := strings.Cut(tok.Secret, ".")
	wantExp := now.Add(time.Hour).Add(time.Second - 1).Truncate(time.Second).UTC().Format(time.RFC3339)
	if s.Type != "bootstrap.kubernetes.io/token" || string(s.Data["token-id"]) != id || string(s.Data["token-secret"]) != secret ||
		string(s.Data["usage-bootstrap-authentication"]) != "true" || string(s.Data["description"]) != "edge rollout" ||
		string(s.Data["expiration"]) != wantExp {
		t.Errorf("Secret: type %s data %q, want expiration %s", s.Type, s.Data, wantExp)
	}
	list, err := ListBootstrapTokens(context.Background(), f.kube)
	if err != nil || len(list) != 1 || list[0].ID != id || list[0].Description != "edge rollout" ||
		strings.Join(list[0].Usages, ",") != "authentication" || list[0].Expires.Format(time.RFC3339) != wantExp {
		t.Fatalf("list = %+v, %v", list, err)
	}
	if _, err := f.join(t, tok, "edge-1", strings.Repeat("a", 32)); err != nil {
		t.Fatalf("join with a bootstrap token: %v", err)
	}
	if _, err := DeleteBootstrapToken(context.Background(), f.kube, id); err != nil {
		t.Fatal(err)
	}
	_, err = f.join(t, tok, "edge-2", strings.Repeat("b", 32))
	if err == nil || !IsPermanent(err) || !strings.Contains(err.Error(), "refused the token (wrong token)") {
		t.Fatalf("join with a deleted token: err = %v", err)
	}
	if _, err := DeleteBootstrapToken(context.Background(), f.kube, id); !errors.Is(err, ErrNoSuchToken) || !strings.Contains(err.Error(), "k1s token list") {
		t.Errorf("deleting an unknown id: %v", err)
	}
	if _, err := DeleteBootstrapToken(context.Background(), f.kube, "ABC"); err == nil || !strings.Contains(err.Error(), `invalid token id "ABC"`) {
		t.Errorf("deleting a malformed id: %v", err)
	}
}

// Expiry is checked at every join, not left to the token cleaner; a token
// without the join usage is refused; both say why to the token's holder.
func TestBootstrapTokenRefusals(t *testing.T) {
	f := newFixture(t)
	_, expired := f.createToken(t, NewTokenRequest{TTL: time.Minute}, time.Now().Add(-time.Hour))
	_, err := f.join(t, expired, "edge-1", strings.Repeat("a", 32))
	if err == nil || !IsPermanent(err) || !strings.Contains(err.Error(), "expired at") {
		t.Errorf("expired token: err = %v", err)
	}
	_, signing := f.createToken(t, NewTokenRequest{Usages: []string{"signing"}}, time.Now())
	_, err = f.join(t, signing, "edge-1", strings.Repeat("a", 32))
	if err == nil || !IsPermanent(err) || !strings.Contains(err.Error(), `lacks the usage "authentication"`) {
		t.Errorf("token without the join usage: err = %v", err)
	}
	_, forever := f.createToken(t, NewTokenRequest{}, time.Now())
	if _, err := f.join(t, forever, "edge-1", strings.Repeat("a", 32)); err != nil {
		t.Errorf("token without expiry: %v", err)
	}
	l, _ := f.kube.CoreV1().Secrets("kube-system").List(context.Background(), metav1.ListOptions{})
	if len(l.Items) != 4 { // three tokens and edge-1's password
		t.Errorf("%d Secrets, want 4", len(l.Items))
	}
}

// Wrong bootstrap secrets count toward the same throttle as wrong server
// tokens: an attacker cannot guess one token id's secret faster.
func TestBootstrapWrongSecretsThrottled(t *testing.T) {
	f := newFixture(t)
	id, good := f.createToken(t, NewTokenRequest{TTL: time.Hour}, time.Now())
	for i := range maxFailures + 1 {
		code, _, msg := f.post(t, id+"."+strings.Repeat("0", 16), reqJSON("edge-1", "192.0.2.20"))
		want := http.StatusUnauthorized
		if i == maxFailures {
			want = http.StatusTooManyRequests
		}
		if code != want {
			t.Fatalf("attempt %d: %d %q, want %d", i+1, code, msg, want)
		}
	}
	if code, _, msg := f.post(t, good.Secret, reqJSON("edge-1", "192.0.2.20")); code != http.StatusTooManyRequests {
		t.Fatalf("right token while throttled: %d %q", code, msg)
	}
}

// With TokenPath the server reads its token at every join: a rotation
// refuses the old token and accepts the new one without a restart.
func TestRotateServerToken(t *testing.T) {
	f := newFixture(t)
	serverDir := filepath.Dir(f.res.Files.Dir)
	tokenPath, caPath := filepath.Join(serverDir, "token"), f.res.Files.ServerCA()
	f.js.TokenPath = tokenPath
	old := f.tok
	if _, err := f.join(t, old, "edge-1", strings.Repeat("a", 32)); err != nil {
		t.Fatalf("join before rotation: %v", err)
	}
	before, _ := os.ReadFile(tokenPath)
	for _, c := range []struct{ in, err string }{
		{"short-secret", "12 characters, at least 16"},
		{old.Secret, "the new token is the current one"},
		{"K10" + strings.Repeat("0", 64) + "::server:0123456789abcdef0123", "another cluster's CA"},
		{"K10" + old.CAHash + "::server", "token is malformed"},
		{"  ", "empty"},
	} {
		if _, err := RotateServerToken(tokenPath, caPath, c.in); err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("rotate to %q: %v, want %q", c.in, err, c.err)
		}
	}
	if after, _ := os.ReadFile(tokenPath); string(after) != string(before) {
		t.Fatalf("a refused rotation changed the token file")
	}
	if _, err := RotateServerToken(filepath.Join(t.TempDir(), "token"), caPath, "new-secret-of-24-chars!"); err == nil || !strings.Contains(err.Error(), "is --data-dir the server's data dir") {
		t.Errorf("rotate without a token file: %v", err)
	}
	full, err := RotateServerToken(tokenPath, caPath, "K10"+old.CAHash+"::server:the-new-secret-0123")
	if err != nil {
		t.Fatal(err)
	}
	// The old secret is recorded as retired (by hash, not in the clear).
	retired, err := os.ReadFile(pki.RetiredTokensPath(tokenPath))
	if sum := sha256.Sum256([]byte(old.Secret)); err != nil || !strings.Contains(string(retired), hex.EncodeToString(sum[:])) || strings.Contains(string(retired), old.Secret) {
		t.Errorf("retired list %q, %v: want the old secret's SHA-256 and not the secret", retired, err)
	}
	if want := "K10" + old.CAHash + "::server:the-new-secret-0123"; full != want {
		t.Errorf("rotate returned %q, want %q", full, want)
	}
	data, _ := os.ReadFile(tokenPath)
	if string(data) != full+"\n" {
		t.Errorf("token file holds %q", data)
	}
	if st, _ := os.Stat(tokenPath); st.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v, want 0600", st.Mode().Perm())
	}
	_, err = f.join(t, old, "edge-2", strings.Repeat("b", 32))
	if err == nil || !strings.Contains(err.Error(), "refused the token") {
		t.Fatalf("old token after rotation: err = %v", err)
	}
	newTok, _ := ParseToken(full)
	if _, err := f.join(t, newTok, "edge-2", strings.Repeat("b", 32)); err != nil {
		t.Fatalf("new token after rotation: %v", err)
	}
	// A damaged token file is the server's fault, not the agent's: 503.
	if err := os.WriteFile(tokenPath, []byte("K10zz::server:x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logBuf bytes.Buffer
	f.js.Log.(interface{ SetOutput(io.Writer) }).SetOutput(&logBuf)
	code, _, msg := f.post(t, newTok.Secret, reqJSON("edge-3", "192.0.2.20"))
	if code != http.StatusServiceUnavailable || !strings.Contains(msg, "cannot check tokens now") || strings.Contains(msg, tokenPath) {
		t.Errorf("damaged token file: %d %q, want 503 without the path", code, msg)
	}
	if !strings.Contains(logBuf.String(), "malformed CA hash") {
		t.Errorf("the server log does not say why:\n%s", logBuf.String())
	}
}
