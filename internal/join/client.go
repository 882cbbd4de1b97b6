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
	caPEM, err := c.fetchCA(ctx)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, &Permanent{fmt.Errorf("the server at %s sent no usable CA certificate at %s", c.URL, CACertsPath)}
	}
	body, _ := json.Marshal(req)
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL+JoinPath, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hreq.Header.Set("Authorization", "Bearer "+c.Token.Secret)
	hreq.Header.Set("Content-Type", "application/json")
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	resp, err := hc.Do(hreq)
	if err != nil {
		var uerr x509.HostnameError
		if errors.As(err, &uerr) {
			return nil, &Permanent{fmt.Errorf("the server's certificate does not name the host in --server %s (%v): use an address it is valid for, or add it on the server with --tls-san", c.URL, err)}
		}
		return nil, fmt.Errorf("joining %s: %w", c.URL, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized:
		return nil, &Permanent{fmt.Errorf("the server at %s refused the token (%s): use the token in the server's <data-dir>/server/token, or one from 'k1s token create' on the server", c.URL, message(data))}
	case http.StatusConflict, http.StatusBadRequest:
		return nil, &Permanent{fmt.Errorf("the server at %s refused to join this node: %s", c.URL, message(data))}
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		secs, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		return nil, &RetryAfter{After: time.Duration(min(max(secs, 0), 300)) * time.Second,
			Err: fmt.Errorf("joining %s: %s: %s", c.URL, resp.Status, message(data))}
	default:
		return nil, fmt.Errorf("joining %s: %s: %s", c.URL, resp.Status, message(data))
	}
	var out Response
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("joining %s: malformed answer: %w", c.URL, err)
	}
	return &out, nil
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
		return nil, &Permanent{fmt.Errorf("the server at %s presents a CA certificate (sha256 %s…) that does not match the token (%s…): the token belongs to another cluster, or something is intercepting the connection; refusing to trust it", c.URL, got[:12], c.Token.CAHash[:12])}
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
