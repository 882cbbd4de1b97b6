package control

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/k1s-io/k1s/internal/pki"
)

// Probe asks one health URL until it answers 200 "ok".
type Probe struct {
	URL    string
	client *http.Client
	last   string
}

// APIServerProbe checks the apiserver's /readyz as the admin, trusting only
// the server CA.
func APIServerProbe(url string, f pki.Files) (*Probe, error) {
	ca, err := os.ReadFile(f.ServerCA())
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	cert, err := tls.LoadX509KeyPair(f.AdminCert(), f.AdminKey())
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	return &Probe{URL: url + "/readyz", client: newClient(tc)}, nil
}

// LocalProbe checks a component's /healthz on loopback. Those endpoints use
// a self-signed certificate and allow anonymous access to /healthz.
func LocalProbe(port int) *Probe {
	tc := &tls.Config{InsecureSkipVerify: true} //nolint:gosec // loopback health check of our own child
	return &Probe{URL: fmt.Sprintf("https://127.0.0.1:%d/healthz", port), client: newClient(tc)}
}

func newClient(tc *tls.Config) *http.Client {
	return &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true}}
}

// Check does one request.
func (p *Probe) Check(ctx context.Context) bool {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.URL, nil)
	resp, err := p.client.Do(req)
	if err != nil {
		p.last = err.Error()
		return false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode == http.StatusOK {
		return true
	}
	p.last = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	return false
}

// Last is the most recent failure, for error messages.
func (p *Probe) Last() string { return p.last }
