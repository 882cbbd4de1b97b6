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

// Probe asks health URLs until each answers 200.
type Probe struct {
	URLs   []string
	client *http.Client
	last   string
}

// DefaultPolicyHooks are the apiserver's post-start hooks that write the
// default RBAC policy and PriorityClasses. Upstream starts each with a
// fixed one-second sleep (wait.Poll, not PollImmediate), so they finish
// ~1.5 s after the apiserver serves everything else.
var DefaultPolicyHooks = []string{"poststarthook/rbac/bootstrap-roles", "poststarthook/scheduling/bootstrap-system-priority-classes"}

// APIServerProbe checks the apiserver's /readyz as the admin, trusting only
// the server CA.
func APIServerProbe(url string, f pki.Files) (*Probe, error) {
	return adminProbe(f, url+"/readyz")
}

// APIServerServingProbe passes once the apiserver is ready except for
// DefaultPolicyHooks and its system namespaces controller has made
// kube-system: enough for k1s's own writes and for a kubelet, which the
// Node authorizer serves without the default policy.
func APIServerServingProbe(url string, f pki.Files) (*Probe, error) {
	q := make([]string, len(DefaultPolicyHooks))
	for i, h := range DefaultPolicyHooks {
		q[i] = "exclude=" + h
	}
	return adminProbe(f, url+"/readyz?"+strings.Join(q, "&"), url+"/api/v1/namespaces/kube-system")
}

func adminProbe(f pki.Files, urls ...string) (*Probe, error) {
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
	return &Probe{URLs: urls, client: newClient(tc)}, nil
}

// LocalProbe checks a component's /healthz on loopback. Those endpoints use
// a self-signed certificate and allow anonymous access to /healthz.
func LocalProbe(port int) *Probe {
	tc := &tls.Config{InsecureSkipVerify: true} //nolint:gosec // loopback health check of our own child
	return &Probe{URLs: []string{fmt.Sprintf("https://127.0.0.1:%d/healthz", port)}, client: newClient(tc)}
}

func newClient(tc *tls.Config) *http.Client {
	return &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true}}
}

// Check asks each URL in turn, once; it passes when all answered 200.
func (p *Probe) Check(ctx context.Context) bool {
	for _, u := range p.URLs {
		if !p.check(ctx, u) {
			return false
		}
	}
	return true
}

func (p *Probe) check(ctx context.Context, url string) bool {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
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
	p.last = fmt.Sprintf("%s: HTTP %d: %s", req.URL.Path, resp.StatusCode, strings.TrimSpace(string(body)))
	return false
}

// Last is the most recent failure, for error messages.
func (p *Probe) Last() string { return p.last }
