package secretsenc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// secretsPrefix is where the apiserver stores Secrets (its default
// --etcd-prefix, which k1s does not change).
const secretsPrefix = "/registry/secrets/"

// Stored maps each Secret ("namespace/name") to the key it is stored with
// ("" in the clear).
type Stored map[string]string

// Dial connects to the datastore's etcd API (k1s's kine socket, or the
// embedded etcd member).
type Dial func(context.Context) (*clientv3.Client, error)

// ReadStored reads every Secret's stored value from the datastore and
// says how it is encrypted.
func ReadStored(ctx context.Context, dial Dial) (Stored, error) {
	cli, err := dial(ctx)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	out := Stored{}
	key := secretsPrefix
	end := clientv3.GetPrefixRangeEnd(secretsPrefix)
	for {
		// Pages keep one reply small however many Secrets there are.
		resp, err := cli.Get(ctx, key, clientv3.WithRange(end), clientv3.WithLimit(500))
		if err != nil {
			return nil, fmt.Errorf("reading Secrets from the datastore: %w", err)
		}
		for _, kv := range resp.Kvs {
			out[strings.TrimPrefix(string(kv.Key), secretsPrefix)] = KeyOf(kv.Value)
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return out, nil
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// Count is how many Secrets use each key ("" in the clear).
func (s Stored) Count() map[string]int {
	n := map[string]int{}
	for _, k := range s {
		n[k]++
	}
	return n
}

// NotOn lists the Secrets not stored with key, sorted.
func (s Stored) NotOn(key string) []string {
	var out []string
	for name, k := range s {
		if k != key {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// storedKey is the key one Secret ("namespace/name") is stored with;
// WaitFor polls it, and a read of every Secret each time would be waste.
func storedKey(ctx context.Context, dial Dial, name string) (string, error) {
	cli, err := dial(ctx)
	if err != nil {
		return "", err
	}
	defer cli.Close()
	resp, err := cli.Get(ctx, secretsPrefix+name)
	if err != nil {
		return "", fmt.Errorf("reading Secret %s from the datastore: %w", name, err)
	}
	if len(resp.Kvs) == 0 {
		return "", fmt.Errorf("Secret %s is not in the datastore", name)
	}
	return KeyOf(resp.Kvs[0].Value), nil
}

// Rewriter moves Secrets to the active key through the apiserver: an
// update of a Secret read with an older key writes it with the active one.
type Rewriter struct {
	Kube kubernetes.Interface
	Dial Dial // the datastore, as for ReadStored
	Log  func(format string, args ...any)
	// Poll is how often Wait checks that the apiserver uses a new key.
	Poll time.Duration
}

// probeName is a Secret k1s writes to see which key the apiserver uses.
const probeName = "k1s-secrets-encryption-probe"

// WaitFor returns once the apiserver writes new Secrets with key: it
// reloads its configuration by itself, within seconds.
func (r Rewriter) WaitFor(ctx context.Context, key string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	secrets := r.Kube.CoreV1().Secrets(metav1.NamespaceSystem)
	defer func() { _ = secrets.Delete(context.Background(), probeName, metav1.DeleteOptions{}) }()
	last := ""
	for {
		probe := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: probeName, Labels: map[string]string{"app.kubernetes.io/managed-by": "k1s"}},
			StringData: map[string]string{"written": time.Now().UTC().Format(time.RFC3339Nano)}}
		_, err := secrets.Update(ctx, probe, metav1.UpdateOptions{})
		if apierrors.IsNotFound(err) {
			_, err = secrets.Create(ctx, probe, metav1.CreateOptions{})
		}
		if err == nil {
			if last, err = storedKey(ctx, r.Dial, metav1.NamespaceSystem+"/"+probeName); err == nil && last == key {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return fmt.Errorf("the apiserver did not start writing Secrets with key %s within %s: %w", key, timeout, err)
			}
			return fmt.Errorf("the apiserver did not start writing Secrets with key %s within %s (it still writes with %q)", key, timeout, last)
		case <-time.After(r.Poll):
		}
	}
}

// Reencrypt re-writes every Secret not stored with key and returns how
// many it re-wrote. A Secret deleted meanwhile is skipped; one changed
// meanwhile was written with the active key by that change.
func (r Rewriter) Reencrypt(ctx context.Context, key string) (int, error) {
	stored, err := ReadStored(ctx, r.Dial)
	if err != nil {
		return 0, err
	}
	todo := stored.NotOn(key)
	done := 0
	for i, name := range todo {
		ns, n, _ := strings.Cut(name, "/")
		err := rewrite(ctx, r.Kube, ns, n)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return done, fmt.Errorf("re-writing Secret %s: %w", name, err)
		}
		done++
		if r.Log != nil && (i+1)%500 == 0 {
			r.Log("re-wrote %d of %d Secrets", i+1, len(todo))
		}
	}
	after, err := ReadStored(ctx, r.Dial)
	if err != nil {
		return done, err
	}
	if left := after.NotOn(key); len(left) > 0 {
		return done, fmt.Errorf("%d Secret(s) are still not stored with key %s, e.g. %s", len(left), key, left[0])
	}
	return done, nil
}

// rewrite reads and writes back one Secret unchanged; on a conflict
// someone else wrote it, which is as good.
func rewrite(ctx context.Context, kube kubernetes.Interface, ns, name string) error {
	s, err := kube.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	_, err = kube.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) {
		return nil
	}
	return err
}

// Rotate adds a new key and makes it the active one, waits until the
// apiserver writes with it, re-writes every Secret with it, then drops the
// old keys. The file keeps working at every step: a crash in the middle
// leaves the old keys readable, and running Rotate again finishes the job.
func Rotate(ctx context.Context, path string, r Rewriter, now time.Time) (Key, int, error) {
	c, k, err := newRotation(path, now)
	if err != nil {
		return Key{}, 0, err
	}
	c.Keys = append([]Key{k}, c.Keys...)
	if err := Save(path, c); err != nil {
		return Key{}, 0, err
	}
	if err := r.WaitFor(ctx, k.Name, 2*time.Minute); err != nil {
		return k, 0, err
	}
	n, err := r.Reencrypt(ctx, k.Name)
	if err != nil {
		return k, n, err
	}
	c.Keys = slices.DeleteFunc(c.Keys, func(old Key) bool { return old.Name != k.Name })
	return k, n, Save(path, c)
}

// RotateAcross is Rotate for servers that share a datastore, each with its
// own copy of the configuration (kept alike through the cluster's
// bootstrap bundle). No server may meet a Secret written with a key it
// lacks, so each change waits until every running server's apiserver has
// loaded it (everyLoaded) before the next: the new key is added as a
// second key, readable but not yet written; then made the active one,
// after which Secrets are re-written; then the old keys are dropped.
func RotateAcross(ctx context.Context, path string, r Rewriter, now time.Time, everyLoaded func(context.Context) error) (Key, int, error) {
	c, k, err := newRotation(path, now)
	if err != nil {
		return Key{}, 0, err
	}
	step := func(what string, keys []Key) error {
		c.Keys = keys
		if err := Save(path, c); err != nil {
			return err
		}
		if r.Log != nil {
			r.Log("%s; waiting for every server to load it", what)
		}
		return everyLoaded(ctx)
	}
	old := slices.Clone(c.Keys)
	if err := step("key "+k.Name+" added (readable, not yet used)", append([]Key{old[0], k}, old[1:]...)); err != nil {
		return Key{}, 0, err
	}
	if err := step("key "+k.Name+" made active", append([]Key{k}, old...)); err != nil {
		return k, 0, err
	}
	if err := r.WaitFor(ctx, k.Name, 2*time.Minute); err != nil {
		return k, 0, err
	}
	n, err := r.Reencrypt(ctx, k.Name)
	if err != nil {
		return k, n, err
	}
	return k, n, step("old keys removed", []Key{k})
}

// newRotation loads the configuration at path and makes the key a
// rotation adds; encryption must be on.
func newRotation(path string, now time.Time) (Config, Key, error) {
	c, ok, err := Load(path)
	if err != nil {
		return Config{}, Key{}, err
	}
	if !ok || !c.On {
		return Config{}, Key{}, errors.New("secrets encryption is off: start the server with --secrets-encryption (the default) first")
	}
	k, err := NewKey(now, c.Keys)
	return c, k, err
}
