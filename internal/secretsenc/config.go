// Package secretsenc keeps Secrets encrypted at rest: it owns the
// kube-apiserver's encryption configuration (secretbox keys in a 0600 file
// under the server's cred dir), reads how each stored Secret is encrypted
// straight from the datastore, and re-writes Secrets through the apiserver
// to move them to the active key (key rotation). The apiserver reloads the
// file by itself, so none of this needs a restart.
package secretsenc

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"

	"github.com/k1s-io/k1s/internal/atomicfile"
)

// Provider is the one encryption provider k1s writes: XSalsa20 and
// Poly1305, authenticated, with a random nonce per write (no key wear-out
// as with aesgcm, no padding oracle as with aescbc).
const Provider = "secretbox"

// Config is the part of an EncryptionConfiguration k1s manages: the
// secretbox keys (the first one encrypts new writes when On) and whether
// new writes are stored in the clear (identity first).
type Config struct {
	On   bool
	Keys []Key
}

// Key is one named 32-byte secretbox key, base64 as the apiserver reads it.
type Key struct {
	Name   string
	Secret string
}

// Active is the key new writes use, or "" when encryption is off.
func (c Config) Active() string {
	if !c.On || len(c.Keys) == 0 {
		return ""
	}
	return c.Keys[0].Name
}

// NewKey makes a key named after now (UTC, to the second) and unlike every
// name in taken.
func NewKey(now time.Time, taken []Key) (Key, error) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return Key{}, err
	}
	base := "k1s-" + now.UTC().Format("20060102t150405z")
	name := base
	for i := 2; slices.ContainsFunc(taken, func(k Key) bool { return k.Name == name }); i++ {
		name = fmt.Sprintf("%s-%d", base, i)
	}
	return Key{Name: name, Secret: base64.StdEncoding.EncodeToString(secret)}, nil
}

// Marshal renders c as the apiserver's EncryptionConfiguration. Identity is
// always a provider: last when On (Secrets written before encryption was
// turned on stay readable), first when off (new writes in the clear, old
// encrypted ones still readable).
func (c Config) Marshal() ([]byte, error) {
	var keys []apiserverv1.Key
	for _, k := range c.Keys {
		keys = append(keys, apiserverv1.Key{Name: k.Name, Secret: k.Secret})
	}
	identity := apiserverv1.ProviderConfiguration{Identity: &apiserverv1.IdentityConfiguration{}}
	var providers []apiserverv1.ProviderConfiguration
	if !c.On {
		providers = append(providers, identity)
	}
	if len(keys) > 0 {
		providers = append(providers, apiserverv1.ProviderConfiguration{Secretbox: &apiserverv1.SecretboxConfiguration{Keys: keys}})
	}
	if c.On {
		providers = append(providers, identity)
	}
	ec := apiserverv1.EncryptionConfiguration{
		TypeMeta:  metav1TypeMeta(),
		Resources: []apiserverv1.ResourceConfiguration{{Resources: []string{"secrets"}, Providers: providers}},
	}
	out, err := json.MarshalIndent(ec, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// Parse reads a configuration k1s wrote. Anything else (other resources,
// other providers) is refused: k1s would lose it on its next write.
func Parse(data []byte) (Config, error) {
	var ec apiserverv1.EncryptionConfiguration
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ec); err != nil {
		return Config{}, fmt.Errorf("not an encryption configuration k1s can read: %w", err)
	}
	if len(ec.Resources) != 1 || !slices.Equal(ec.Resources[0].Resources, []string{"secrets"}) {
		return Config{}, errors.New("it must configure exactly the resource \"secrets\"")
	}
	var c Config
	seenIdentity := false
	for i, p := range ec.Resources[0].Providers {
		switch {
		case p.Identity != nil && !seenIdentity:
			seenIdentity = true
			c.On = i > 0
		case p.Secretbox != nil && c.Keys == nil:
			for _, k := range p.Secretbox.Keys {
				if k.Name == "" || k.Secret == "" {
					return Config{}, errors.New("a secretbox key has no name or no secret")
				}
				if raw, err := base64.StdEncoding.DecodeString(k.Secret); err != nil || len(raw) != 32 {
					return Config{}, fmt.Errorf("secretbox key %q is not 32 bytes of base64", k.Name)
				}
				c.Keys = append(c.Keys, Key{Name: k.Name, Secret: k.Secret})
			}
		default:
			return Config{}, fmt.Errorf("provider %d is not one k1s writes (one secretbox and one identity)", i+1)
		}
	}
	if !seenIdentity {
		return Config{}, errors.New("it has no identity provider")
	}
	if c.On && len(c.Keys) == 0 {
		return Config{}, errors.New("encryption is on but there is no key")
	}
	return c, nil
}

// Load reads the configuration at path; ok is false when there is none.
func Load(path string) (c Config, ok bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Config{}, false, nil
	}
	if err != nil {
		return Config{}, false, err
	}
	c, err = Parse(data)
	if err != nil {
		return Config{}, false, fmt.Errorf("%s: %w", path, err)
	}
	return c, true, nil
}

// Save writes c to path atomically, readable by root only: the apiserver
// may re-read it at any moment.
func Save(path string, c Config) error {
	data, err := c.Marshal()
	if err != nil {
		return err
	}
	return atomicfile.Write(path, data, 0o600)
}

// Ensure brings the file at path in line with --secrets-encryption before
// the apiserver starts. It returns whether the apiserver gets the file and
// a note for the log when something changed.
//   - on, no file: a new key, so every Secret written from now on is encrypted.
//   - on, file with encryption off: encryption back on with its keys.
//   - off, no file: nothing; the apiserver stores Secrets in the clear.
//   - off, file: new writes in the clear, but the keys stay so that Secrets
//     written while it was on can still be read.
func Ensure(path string, on bool, now time.Time) (use bool, note string, err error) {
	c, exists, err := Load(path)
	if err != nil {
		return false, "", err
	}
	switch {
	case !exists && !on:
		return false, "", nil
	case exists && c.On == on:
		return true, "", nil
	case !exists:
		k, err := NewKey(now, nil)
		if err != nil {
			return false, "", err
		}
		c = Config{On: true, Keys: []Key{k}}
		note = fmt.Sprintf("secrets encryption on: new %s key %s in %s; Secrets stored before stay readable and are encrypted when next written (or by `k1s secrets-encrypt reencrypt`)", Provider, k.Name, path)
	case on:
		if len(c.Keys) == 0 {
			k, err := NewKey(now, nil)
			if err != nil {
				return false, "", err
			}
			c.Keys = []Key{k}
		}
		c.On = true
		note = fmt.Sprintf("secrets encryption turned back on with key %s", c.Keys[0].Name)
	default:
		c.On = false
		note = fmt.Sprintf("secrets encryption off (--secrets-encryption=false): new writes are stored in the clear; the %d key(s) in %s stay for reading Secrets written while it was on", len(c.Keys), path)
	}
	if err := Save(path, c); err != nil {
		return false, "", err
	}
	return true, note, nil
}

// KeyOf names the key a stored value was written with: "" for a value in
// the clear, "?" for one encrypted by something other than secretbox.
func KeyOf(raw []byte) string {
	rest, ok := bytes.CutPrefix(raw, []byte("k8s:enc:"))
	if !ok {
		return ""
	}
	rest, ok = bytes.CutPrefix(rest, []byte(Provider+":v1:"))
	if !ok {
		return "?"
	}
	name, _, ok := strings.Cut(string(rest[:min(len(rest), 300)]), ":")
	if !ok {
		return "?"
	}
	return name
}

func metav1TypeMeta() metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: "apiserver.config.k8s.io/v1", Kind: "EncryptionConfiguration"}
}
