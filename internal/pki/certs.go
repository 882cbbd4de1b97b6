// Package pki owns the cluster's identities: the certificate authorities,
// the apiserver serving certificate, the client certificates of the admin
// and of each control-plane component, the service-account signing key, the
// kubeconfigs built from them and the join token, all created on first start
// under <data-dir>/server (tls/, cred/ for the kubeconfigs, token) and reused
// afterwards. It also makes each node's credentials (kubelet, kube-proxy and
// flannel certificates and their kubeconfigs): the server writes its own
// node's, and issues a joining agent's for the agent to write. The server
// renews its leaf certificates at start when they near expiry or no longer
// match what the configuration asks for, and checks them again while it
// runs (Renewer, RenewLoop); Rotate reissues named leaves on request, and
// RotateCAs replaces the CAs (server stopped).
package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/k1s-io/k1s/internal/atomicfile"
)

// Lifetimes of what we issue, and how early a leaf is renewed.
const (
	CAValidity   = 10 * 365 * 24 * time.Hour
	LeafValidity = 365 * 24 * time.Hour
	RenewBefore  = 120 * 24 * time.Hour
)

// CA is a certificate authority we hold the key of.
type CA struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte
}

// leaf describes a certificate we want to exist.
type leaf struct {
	name     string // file base name in the tls dir
	ca       *CA
	cn       string
	orgs     []string
	server   bool
	client   bool
	dnsNames []string
	ips      []net.IP
}

// Keep is how the caller learns what Ensure did, for the log.
type Event struct {
	Name   string
	Action string // "created", "renewed"
	Reason string
}

func newKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func encodeKey(k crypto.Signer) ([]byte, error) {
	ec, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return nil, err
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
	}
	der, err := x509.MarshalECPrivateKey(ec)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

func decodeKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM data")
	}
	switch block.Type {
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(block.Bytes)
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, errors.New("key cannot sign")
		}
		return s, nil
	case "RSA PRIVATE KEY":
		return x509.ParsePKCS1PrivateKey(block.Bytes)
	}
	return nil, fmt.Errorf("unsupported PEM block %q", block.Type)
}

// ParseCert reads a PEM certificate.
func ParseCert(data []byte) (*x509.Certificate, error) { return decodeCert(data) }

func decodeCert(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// writeFileAtomic replaces path in one step, so a crash never leaves half a key.
// An unchanged file is left alone to keep its mtime meaningful.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return os.Chmod(path, mode)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(path, data, mode)
}

// readPair reads name.crt and name.key; found is false when neither exists.
func readPair(dir, name string) (certPEM, keyPEM []byte, found bool, err error) {
	certPEM, cerr := os.ReadFile(filepath.Join(dir, name+".crt"))
	keyPEM, kerr := os.ReadFile(filepath.Join(dir, name+".key"))
	switch {
	case errors.Is(cerr, fs.ErrNotExist) && errors.Is(kerr, fs.ErrNotExist):
		return nil, nil, false, nil
	case cerr != nil:
		return nil, nil, true, cerr
	case kerr != nil:
		return nil, nil, true, kerr
	}
	return certPEM, keyPEM, true, nil
}

// loadOrCreateCA never replaces an existing CA: doing so would silently
// invalidate every credential and token issued from it.
func loadOrCreateCA(dir, name, cn string, now time.Time) (*CA, *Event, error) {
	certPEM, keyPEM, found, err := readPair(dir, name)
	if found {
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w (restore the file; removing both %s.crt and %s.key creates a new CA, which invalidates every kubeconfig and token)", name, err, name, name)
		}
		cert, err := decodeCert(certPEM)
		if err != nil {
			return nil, nil, fmt.Errorf("%s.crt is damaged: %w", name, err)
		}
		key, err := decodeKey(keyPEM)
		if err != nil {
			return nil, nil, fmt.Errorf("%s.key is damaged: %w", name, err)
		}
		if !publicKeysEqual(cert.PublicKey, key.Public()) {
			return nil, nil, fmt.Errorf("%s.key does not belong to %s.crt", name, name)
		}
		return &CA{Cert: cert, Key: key, CertPEM: certPEM}, nil, nil
	}
	key, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: fmt.Sprintf("%s@%d", cn, now.Unix())},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, err
	}
	cert, _ := x509.ParseCertificate(der)
	certPEM = encodeCert(der)
	if err := writePair(dir, name, certPEM, key); err != nil {
		return nil, nil, err
	}
	return &CA{Cert: cert, Key: key, CertPEM: certPEM}, &Event{Name: name, Action: "created"}, nil
}

func writePair(dir, name string, certPEM []byte, key crypto.Signer) error {
	keyPEM, err := encodeKey(key)
	if err != nil {
		return err
	}
	// Key first: a certificate is never on disk without its key.
	if err := writeFileAtomic(filepath.Join(dir, name+".key"), keyPEM, 0o600); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, name+".crt"), certPEM, 0o644)
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := a.(equaler)
	return ok && e.Equal(b)
}

// staleReason says why an existing leaf must be reissued, or "" if it is fine.
func (l *leaf) staleReason(cert *x509.Certificate, now time.Time) string {
	pool := x509.NewCertPool()
	pool.AddCert(l.ca.Cert)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return "not valid under the current CA: " + err.Error()
	}
	if left := cert.NotAfter.Sub(now); left < RenewBefore {
		return fmt.Sprintf("expires in %d days", int(left.Hours()/24))
	}
	if cert.Subject.CommonName != l.cn || !slices.Equal(cert.Subject.Organization, l.orgs) {
		return "subject changed"
	}
	for _, d := range l.dnsNames {
		if !slices.Contains(cert.DNSNames, d) {
			return "new name " + d
		}
	}
	for _, ip := range l.ips {
		if !slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
			return "new address " + ip.String()
		}
	}
	return ""
}

// ensureLeaf makes sure dir/name.{crt,key} hold a valid certificate for l,
// reusing the existing key when there is one. force reissues a good one too.
func ensureLeaf(dir string, l *leaf, force bool, now time.Time) (*Event, error) {
	certPEM, keyPEM, found, err := readPair(dir, l.name)
	var key crypto.Signer
	reason := ""
	if found && err == nil {
		cert, cerr := decodeCert(certPEM)
		k, kerr := decodeKey(keyPEM)
		switch {
		case cerr != nil:
			reason = "certificate unreadable"
		case kerr != nil:
			reason = "key unreadable"
		case !publicKeysEqual(cert.PublicKey, k.Public()):
			reason = "key does not match"
		default:
			key = k
			reason = l.staleReason(cert, now)
			if reason == "" && !force {
				return nil, nil
			}
			if reason == "" {
				reason = "rotation asked for"
			}
		}
	} else if found {
		reason = "incomplete pair: " + err.Error()
	}
	if key == nil {
		if key, err = newKey(); err != nil {
			return nil, err
		}
	}
	certPEM, err = l.sign(key, now)
	if err != nil {
		return nil, err
	}
	if err := writePair(dir, l.name, certPEM, key); err != nil {
		return nil, err
	}
	ev := &Event{Name: l.name, Action: "created"}
	if found {
		ev.Action, ev.Reason = "renewed", reason
	}
	return ev, nil
}

// sign issues the certificate l describes for key.
func (l *leaf) sign(key crypto.Signer, now time.Time) ([]byte, error) {
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: l.cn, Organization: l.orgs},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(LeafValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		DNSNames:     l.dnsNames,
		IPAddresses:  l.ips,
	}
	if l.server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if l.client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, l.ca.Cert, key.Public(), l.ca.Key)
	if err != nil {
		return nil, err
	}
	return encodeCert(der), nil
}

// ensureKey makes sure a private key (with no certificate) exists at path.
func ensureKey(path string) (*Event, error) {
	data, err := os.ReadFile(path)
	if err == nil {
		if _, err := decodeKey(data); err != nil {
			return nil, fmt.Errorf("%s is damaged: %w (restore it; a new key invalidates every ServiceAccount token)", path, err)
		}
		return nil, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(path, keyPEM, 0o600); err != nil {
		return nil, err
	}
	return &Event{Name: filepath.Base(path), Action: "created"}, nil
}
