package join

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/k1s-io/k1s/internal/pki"
)

// Permanent marks an error that retrying will not fix (wrong token, CA
// mismatch, name taken).
type Permanent struct{ Err error }

func (p *Permanent) Error() string { return p.Err.Error() }
func (p *Permanent) Unwrap() error { return p.Err }

// IsPermanent reports whether err should stop the agent instead of a retry.
func IsPermanent(err error) bool {
	var p *Permanent
	return errors.As(err, &p)
}

// RetryAfter is a refusal that passes with time (throttled, or the server
// is starting): the caller should wait After, then try again.
type RetryAfter struct {
	After time.Duration
	Err   error
}

func (r *RetryAfter) Error() string { return r.Err.Error() }
func (r *RetryAfter) Unwrap() error { return r.Err }

// WaitHint is how long err asks the caller to wait, or 0.
func WaitHint(err error) time.Duration {
	var r *RetryAfter
	if errors.As(err, &r) {
		return r.After
	}
	return 0
}

// Client is the agent side of joining.
type Client struct {
	URL   string // https://host:port of a server
	Token pki.Token
	// Warn is told when the token carries no CA hash (nothing is pinned).
	Warn func(string)
}

// Join fetches and checks the server CA, then asks for the node's
// credentials.
func (c *Client) Join(ctx context.Context, req Request) (*Response, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	pool, err := c.serverCA(ctx)
	if err != nil {
		return nil, err
	}
	code, hdr, data, err := c.send(ctx, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, "Bearer "+c.Token.Secret, JoinPath, req, 1<<20)
	if err != nil {
		var uerr x509.HostnameError
		if errors.As(err, &uerr) {
			return nil, &Permanent{fmt.Errorf("the server's certificate does not name the host in --server %s (%v): use an address it is valid for, or add it on the server with --tls-san", c.URL, err)}
		}
		return nil, err
	}
	if code == http.StatusUnauthorized {
		return nil, &Permanent{fmt.Errorf("the server at %s refused the token (%s): use the token in the server's <data-dir>/server/token, or one from 'k1s token create' on the server", c.URL, message(data))}
	}
	return c.answer(code, hdr, data)
}

// send posts req to the join endpoint over tlsConf, with auth as the
// Authorization header unless it is empty.
func (c *Client) send(ctx context.Context, tlsConf *tls.Config, auth, path string, req any, limit int64) (int, http.Header, []byte, error) {
	body, _ := json.Marshal(req)
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	if auth != "" {
		hreq.Header.Set("Authorization", auth)
	}
	hreq.Header.Set("Content-Type", "application/json")
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConf}}
	resp, err := hc.Do(hreq)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("joining %s: %w", c.URL, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, limit))
	return resp.StatusCode, resp.Header, data, nil
}

// answer turns the join endpoint's answer into the response or an error.
func (c *Client) answer(code int, hdr http.Header, data []byte) (*Response, error) {
	switch code {
	case http.StatusOK:
	case http.StatusConflict, http.StatusBadRequest:
		return nil, &Permanent{fmt.Errorf("the server at %s refused to join this node: %s", c.URL, message(data))}
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		secs, _ := strconv.Atoi(hdr.Get("Retry-After"))
		return nil, &RetryAfter{After: time.Duration(min(max(secs, 0), 300)) * time.Second,
			Err: fmt.Errorf("joining %s: %d %s: %s", c.URL, code, http.StatusText(code), message(data))}
	default:
		return nil, fmt.Errorf("joining %s: %d %s: %s", c.URL, code, http.StatusText(code), message(data))
	}
	var out Response
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("joining %s: malformed answer: %w", c.URL, err)
	}
	return &out, nil
}

// serverCA is the server's CA as a pool, fetched and checked (fetchCA).
func (c *Client) serverCA(ctx context.Context) (*x509.CertPool, error) {
	caPEM, err := c.fetchCA(ctx)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, &Permanent{fmt.Errorf("the server at %s sent no usable CA certificate at %s", c.URL, CACertsPath)}
	}
	return pool, nil
}

// fetchCA gets the CA without trusting the connection, then trusts it only
// if it matches the token's hash.
func (c *Client) fetchCA(ctx context.Context) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL+CACertsPath, nil)
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reaching the server at %s: %w", c.URL, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching the CA from %s: %s (is this a k1s server?)", c.URL, resp.Status)
	}
	if c.Token.CAHash == "" {
		if c.Warn != nil {
			c.Warn("the token carries no CA hash, so the server's CA is trusted as it is presented: use the full K10 token to pin it")
		}
		return data, nil
	}
	if got := pki.CAHash(data); got != c.Token.CAHash {
		return nil, &Permanent{fmt.Errorf("the server at %s presents a CA certificate (sha256 %s…) that does not match the token (%s…): the token belongs to another cluster, or the server's CAs were replaced (k1s certificate rotate-ca printed the new token), or something is intercepting the connection; refusing to trust it", c.URL, got[:12], c.Token.CAHash[:12])}
	}
	return data, nil
}

func message(data []byte) string {
	var e Error
	if json.Unmarshal(data, &e) == nil && e.Message != "" {
		return e.Message
	}
	return strings.TrimSpace(string(data))
}

// Identity is what a node that joined before re-authenticates with instead
// of a token: its kubelet client certificate, and the server CA it
// trusted when it joined.
type Identity struct {
	Node     string
	Cert     tls.Certificate
	ServerCA *x509.CertPool
	NotAfter time.Time
}

// LoadIdentity reads the identity of node from its credentials dir (as
// pki.WriteNode left it). The error says why there is none to use:
// fs.ErrNotExist if the node never joined; a certificate of another node,
// an expired one, or a server CA that is not the token's CA is not used.
func LoadIdentity(dir, node string, tok pki.Token, now time.Time) (*Identity, error) {
	f := pki.NodeFiles{Dir: dir}
	serverCA, err := os.ReadFile(f.ServerCA())
	if err != nil {
		return nil, err
	}
	clientCA, err := os.ReadFile(f.ClientCA())
	if err != nil {
		return nil, err
	}
	pair, err := tls.LoadX509KeyPair(f.ClientCert(), f.ClientKey())
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.ClientCert(), err)
	}
	if leaf.Subject.CommonName != nodeUserPrefix+node {
		return nil, fmt.Errorf("%s is %q's, not node %q's", f.ClientCert(), leaf.Subject.CommonName, node)
	}
	clientPool := x509.NewCertPool()
	if !clientPool.AppendCertsFromPEM(clientCA) {
		return nil, fmt.Errorf("%s holds no certificate", f.ClientCA())
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: clientPool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, fmt.Errorf("%s: %w", f.ClientCert(), err)
	}
	// A token that pins another CA means another cluster: the old
	// certificate is worthless there.
	if tok.CAHash != "" && pki.CAHash(serverCA) != tok.CAHash {
		return nil, fmt.Errorf("%s is not the CA the token pins (another cluster)", f.ServerCA())
	}
	serverPool := x509.NewCertPool()
	if !serverPool.AppendCertsFromPEM(serverCA) {
		return nil, fmt.Errorf("%s holds no certificate", f.ServerCA())
	}
	return &Identity{Node: node, Cert: pair, ServerCA: serverPool, NotAfter: leaf.NotAfter}, nil
}

// CertRefused: the server did not take the node's certificate, or no
// longer knows the node (Unknown); the token may still do.
type CertRefused struct {
	Unknown bool
	Err     error
}

func (e *CertRefused) Error() string { return e.Err.Error() }
func (e *CertRefused) Unwrap() error { return e.Err }

// Rejoin asks for the node's credentials with its own identity instead of
// the token. It trusts only the server CA the node joined with, and sends
// no token.
func (c *Client) Rejoin(ctx context.Context, req Request, id *Identity) (*Response, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	conf := &tls.Config{RootCAs: id.ServerCA, MinVersion: tls.VersionTLS12,
		// Always present it, so that a refusal comes with the server's reason.
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &id.Cert, nil }}
	code, hdr, data, err := c.send(ctx, conf, "", JoinPath, req, 1<<20)
	if err != nil {
		var uerr x509.UnknownAuthorityError
		var verr *tls.CertificateVerificationError
		if errors.As(err, &uerr) || errors.As(err, &verr) {
			return nil, &CertRefused{Err: fmt.Errorf("the server at %s no longer presents the CA this node joined with: %w", c.URL, err)}
		}
		return nil, err
	}
	switch code {
	case http.StatusNotFound:
		return nil, &CertRefused{Unknown: true, Err: fmt.Errorf("the server at %s does not know this node any more (%s)", c.URL, message(data))}
	case http.StatusUnauthorized, http.StatusForbidden:
		return nil, &CertRefused{Err: fmt.Errorf("the server at %s refused this node's certificate (%s)", c.URL, message(data))}
	}
	return c.answer(code, hdr, data)
}
