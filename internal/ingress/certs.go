package ingress

import (
	"crypto/tls"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// FallbackCommonName is the subject CN of the self-signed certificate served
// when no Ingress TLS section covers the requested server name.
const FallbackCommonName = "k1s-ingress-default"

// certCache keeps parsed Secret key pairs between rebuilds, so a rebuild
// parses only Secrets that changed. Entries not used by a build are dropped
// at commit. A nil *certCache parses every time. Not safe for concurrent
// builds (the controller builds from one goroutine).
type certCache struct {
	prev, next map[string]certEntry
}

type certEntry struct {
	uid  types.UID
	rv   string
	cert *tls.Certificate
	err  error
}

func newCertCache() *certCache {
	return &certCache{prev: map[string]certEntry{}, next: map[string]certEntry{}}
}

func (c *certCache) load(sec *corev1.Secret) (*tls.Certificate, error) {
	if c == nil {
		return parseKeyPair(sec)
	}
	key := sec.Namespace + "/" + sec.Name
	for _, m := range []map[string]certEntry{c.next, c.prev} {
		if e, ok := m[key]; ok && e.uid == sec.UID && e.rv == sec.ResourceVersion && sec.ResourceVersion != "" {
			c.next[key] = e
			return e.cert, e.err
		}
	}
	cert, err := parseKeyPair(sec)
	c.next[key] = certEntry{uid: sec.UID, rv: sec.ResourceVersion, cert: cert, err: err}
	return cert, err
}

func (c *certCache) commit() {
	if c == nil {
		return
	}
	c.prev, c.next = c.next, map[string]certEntry{}
}

func parseKeyPair(sec *corev1.Secret) (*tls.Certificate, error) {
	cert, err := tls.X509KeyPair(sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		return nil, err
	}
	return &cert, nil
}
