package join

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/k1s-io/k1s/internal/atomicfile"
)

// ErrNameTaken: the node name belongs to another host.
var ErrNameTaken = errors.New("node name taken")

// passwordSecretName is where the hash of a node's password is kept.
func passwordSecretName(node string) string { return node + ".node-password.k1s" }

func hashPassword(p string) string {
	sum := sha256.Sum256([]byte(p))
	return hex.EncodeToString(sum[:])
}

// Errors of CheckNodePassword.
var (
	ErrNodeUnknown   = errors.New("node unknown")
	ErrWrongPassword = errors.New("wrong node password")
)

// CheckNodePassword checks that password is the one node was claimed
// with. Unlike ClaimNodeName it never claims: a node whose password Secret
// is gone (its Node was deleted) is ErrNodeUnknown and must use a token.
func CheckNodePassword(ctx context.Context, kube kubernetes.Interface, node, password string) error {
	sec, err := kube.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, passwordSecretName(node), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return ErrNodeUnknown
	}
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(sec.Data["hash"], []byte(hashPassword(password))) != 1 {
		return ErrWrongPassword
	}
	return nil
}

// ClaimNodeName records that the host holding password owns node name, or
// checks that it already does. Passwords are random and long, so a plain
// hash is enough to keep them out of the Secret.
func ClaimNodeName(ctx context.Context, kube kubernetes.Interface, node, password string) error {
	secrets := kube.CoreV1().Secrets(metav1.NamespaceSystem)
	want := hashPassword(password)
	for range 3 {
		switch err := CheckNodePassword(ctx, kube, node, password); {
		case err == nil:
			return nil
		case errors.Is(err, ErrWrongPassword):
			return fmt.Errorf("%w: node %q is already registered by another host (its node password differs); choose another --node-name, or if that host is gone, free the name with 'kubectl delete node %s'", ErrNameTaken, node, node)
		case !errors.Is(err, ErrNodeUnknown):
			return err
		}
		_, err := secrets.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: passwordSecretName(node), Namespace: metav1.NamespaceSystem,
				Labels: map[string]string{"k1s.io/node-password": "true"}},
			Type: corev1.SecretTypeOpaque,
			Data: map[string][]byte{"hash": []byte(want)},
		}, metav1.CreateOptions{})
		if err == nil {
			return nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return err
		}
		// Someone created it meanwhile: compare against theirs.
	}
	return fmt.Errorf("could not claim node name %q: the password Secret keeps changing", node)
}

// NodePassword returns this host's node password, creating it on first use.
func NodePassword(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err == nil {
		if p := strings.TrimSpace(string(data)); len(p) >= 16 {
			return p, nil
		}
		return "", fmt.Errorf("%s is damaged (too short): restore it, or remove it and delete this node's Secret kube-system/<node>.node-password.k1s on the server", path)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	p := hex.EncodeToString(b)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	// Atomic: a power cut mid-write must not leave a short password,
	// which would lock this node out of its own name.
	if err := atomicfile.Write(path, []byte(p+"\n"), 0o600); err != nil {
		return "", err
	}
	return p, nil
}
