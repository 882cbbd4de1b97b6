package join

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	bootstraputil "k8s.io/cluster-bootstrap/token/util"

	"github.com/k1s-io/k1s/internal/pki"
)

// Bootstrap tokens are Kubernetes' own: a Secret of type
// bootstrap.kubernetes.io/token named bootstrap-token-<id> in kube-system,
// so that the controller-manager's token cleaner removes expired ones and
// `kubectl` shows them. A join needs the standard usage
// "authentication": it is what that usage means (a node authenticating to
// join), and k1s's apiserver does not enable bootstrap-token
// authentication, so the usage grants nothing beyond a join.
const (
	// JoinUsage is the usage a token needs to join an agent.
	JoinUsage = "authentication"
	// DefaultTokenTTL is how long a created token lives unless told.
	DefaultTokenTTL = 24 * time.Hour
)

// KnownUsages are the usages `k1s token create --usages` accepts.
var KnownUsages = bootstrapapi.KnownTokenUsages

// IsBootstrapToken reports whether s has the form <id>.<secret>: 6 and 16
// characters of [a-z0-9].
func IsBootstrapToken(s string) bool { return bootstraputil.IsValidBootstrapToken(s) }

// malformedK10 names both forms a full token can have.
const malformedK10 = "token is malformed: want K10<ca hash>::server:<secret> (the server's token) or K10<ca hash>::<id>.<secret> (from 'k1s token create': a 6- and a 16-character part of lower-case letters and digits)"

// ParseToken parses the token an agent joins with: the server's
// (K10<ca hash>::server:<secret>), a bootstrap token
// (K10<ca hash>::<id>.<secret>), or a bare secret of either, which pins no
// CA. The secret is what the agent presents.
func ParseToken(s string) (pki.Token, error) {
	s = strings.TrimSpace(s)
	if hash, creds, ok := strings.Cut(s, "::"); ok && strings.HasPrefix(hash, "K10") && !strings.Contains(creds, ":") {
		if !IsBootstrapToken(creds) {
			return pki.Token{}, errors.New(malformedK10)
		}
		// Reuse pki's check of the hash on the server-token form.
		t, err := pki.ParseToken(hash + "::bootstrap:" + creds)
		if err != nil {
			return pki.Token{}, err
		}
		return pki.Token{CAHash: t.CAHash, Secret: creds}, nil
	}
	return pki.ParseToken(s)
}

// BootstrapToken is one bootstrap token as `k1s token list` shows it.
type BootstrapToken struct {
	ID          string
	Description string
	Usages      []string
	// Expires is zero for a token that never expires.
	Expires time.Time
}

// NewTokenRequest says what `k1s token create` makes.
type NewTokenRequest struct {
	TTL         time.Duration // 0: never expires
	Description string
	Usages      []string // default: JoinUsage
}

// Validate checks a request before anything is created.
func (r *NewTokenRequest) Validate() error {
	if r.TTL < 0 {
		return fmt.Errorf("invalid --ttl %s: want a positive duration such as 24h or 30m, or 0 for a token that never expires", r.TTL)
	}
	if r.TTL > 0 && r.TTL < time.Second {
		return fmt.Errorf("invalid --ttl %s: expiry is kept to the second, so want at least 1s (or 0 for a token that never expires)", r.TTL)
	}
	if len(r.Usages) == 0 {
		return fmt.Errorf("--usages is empty: want one or more of %s (a join needs %s)", strings.Join(KnownUsages, ", "), JoinUsage)
	}
	if err := bootstraputil.ValidateUsages(r.Usages); err != nil {
		return fmt.Errorf("--usages: %v (a join needs %s)", err, JoinUsage)
	}
	return nil
}

// CreateBootstrapToken stores a new random bootstrap token and returns it
// as <id>.<secret>.
func CreateBootstrapToken(ctx context.Context, kube kubernetes.Interface, r NewTokenRequest, now time.Time) (string, error) {
	if len(r.Usages) == 0 {
		r.Usages = []string{JoinUsage}
	}
	if err := r.Validate(); err != nil {
		return "", err
	}
	for range 3 {
		tok, err := bootstraputil.GenerateBootstrapToken()
		if err != nil {
			return "", err
		}
		id, secret, _ := strings.Cut(tok, ".")
		data := map[string][]byte{
			bootstrapapi.BootstrapTokenIDKey:     []byte(id),
			bootstrapapi.BootstrapTokenSecretKey: []byte(secret),
		}
		if r.Description != "" {
			data[bootstrapapi.BootstrapTokenDescriptionKey] = []byte(r.Description)
		}
		if r.TTL > 0 {
			// Rounded up: a token must not expire before its TTL.
			exp := now.Add(r.TTL).Add(time.Second - 1).Truncate(time.Second)
			data[bootstrapapi.BootstrapTokenExpirationKey] = []byte(exp.UTC().Format(time.RFC3339))
		}
		for _, u := range r.Usages {
			data[bootstrapapi.BootstrapTokenUsagePrefix+u] = []byte("true")
		}
		_, err = kube.CoreV1().Secrets(metav1.NamespaceSystem).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: bootstraputil.BootstrapTokenSecretName(id), Namespace: metav1.NamespaceSystem},
			Type:       bootstrapapi.SecretTypeBootstrapToken,
			Data:       data,
		}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			continue // 36^6 ids: a clash is rare, a new draw fixes it
		}
		if err != nil {
			return "", err
		}
		return tok, nil
	}
	return "", errors.New("could not find a free bootstrap token id in 3 attempts")
}

// ListBootstrapTokens returns the bootstrap tokens, sorted by id.
func ListBootstrapTokens(ctx context.Context, kube kubernetes.Interface) ([]BootstrapToken, error) {
	l, err := kube.CoreV1().Secrets(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{
		FieldSelector: "type=" + string(bootstrapapi.SecretTypeBootstrapToken)})
	if err != nil {
		return nil, err
	}
	var out []BootstrapToken
	for _, s := range l.Items {
		if s.Type != bootstrapapi.SecretTypeBootstrapToken {
			continue
		}
		id, ok := strings.CutPrefix(s.Name, bootstrapapi.BootstrapTokenSecretPrefix)
		if !ok || string(s.Data[bootstrapapi.BootstrapTokenIDKey]) != id {
			continue // not a usable token: the apiserver would not accept it either
		}
		t := BootstrapToken{ID: id, Description: string(s.Data[bootstrapapi.BootstrapTokenDescriptionKey])}
		if e := s.Data[bootstrapapi.BootstrapTokenExpirationKey]; len(e) > 0 {
			// Unparseable counts as expired, as for the join check.
			t.Expires, _ = time.Parse(time.RFC3339, string(e))
			if t.Expires.IsZero() {
				t.Expires = time.Unix(0, 0)
			}
		}
		for k, v := range s.Data {
			if u, ok := strings.CutPrefix(k, bootstrapapi.BootstrapTokenUsagePrefix); ok && string(v) == "true" {
				t.Usages = append(t.Usages, u)
			}
		}
		sort.Strings(t.Usages)
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// ErrNoSuchToken: no bootstrap token has that id.
var ErrNoSuchToken = errors.New("no such bootstrap token")

// DeleteBootstrapToken removes the token with the given id (or the id of
// the given <id>.<secret>).
func DeleteBootstrapToken(ctx context.Context, kube kubernetes.Interface, idOrToken string) (string, error) {
	id := idOrToken
	if IsBootstrapToken(idOrToken) {
		id, _, _ = strings.Cut(idOrToken, ".")
	}
	if !bootstraputil.IsValidBootstrapTokenID(id) {
		return "", fmt.Errorf("invalid token id %q: want the 6 lower-case letters or digits before the dot, as 'k1s token list' shows them", idOrToken)
	}
	err := kube.CoreV1().Secrets(metav1.NamespaceSystem).Delete(ctx, bootstraputil.BootstrapTokenSecretName(id), metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return id, fmt.Errorf("%w with id %q (see 'k1s token list')", ErrNoSuchToken, id)
	}
	return id, err
}

// errBadBootstrap is a refusal of a bootstrap token; its text goes to the
// agent only when the secret was right.
type errBadBootstrap struct{ msg string }

func (e *errBadBootstrap) Error() string { return e.msg }

var errUnknownToken = &errBadBootstrap{"wrong token"}

// checkBootstrapToken accepts tok (<id>.<secret>) if its Secret exists,
// matches, has not expired and allows joins. Any other error means the
// apiserver could not be asked.
func checkBootstrapToken(ctx context.Context, kube kubernetes.Interface, tok string, now time.Time) error {
	id, secret, _ := strings.Cut(tok, ".")
	s, err := kube.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, bootstraputil.BootstrapTokenSecretName(id), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return errUnknownToken
	}
	if err != nil {
		return err
	}
	if s.Type != bootstrapapi.SecretTypeBootstrapToken || string(s.Data[bootstrapapi.BootstrapTokenIDKey]) != id {
		return errUnknownToken
	}
	if subtle.ConstantTimeCompare(s.Data[bootstrapapi.BootstrapTokenSecretKey], []byte(secret)) != 1 {
		return errUnknownToken
	}
	if e := s.Data[bootstrapapi.BootstrapTokenExpirationKey]; len(e) > 0 {
		exp, err := time.Parse(time.RFC3339, string(e))
		if err != nil {
			return &errBadBootstrap{fmt.Sprintf("bootstrap token %s has an unreadable expiration %q: create a new one with 'k1s token create'", id, e)}
		}
		if !now.Before(exp) {
			return &errBadBootstrap{fmt.Sprintf("bootstrap token %s expired at %s: create a new one with 'k1s token create'", id, exp.UTC().Format(time.RFC3339))}
		}
	}
	if string(s.Data[bootstrapapi.BootstrapTokenUsagePrefix+JoinUsage]) != "true" {
		return &errBadBootstrap{fmt.Sprintf("bootstrap token %s may not join nodes (it lacks the usage %q): create one with 'k1s token create'", id, JoinUsage)}
	}
	return nil
}
