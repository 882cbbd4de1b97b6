package join

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
)

// A node that joined before re-authenticates without a token: over TLS it
// presents its kubelet client certificate (system:node:<name> in
// system:nodes, from the client CA) and sends no Authorization header; the
// request must name that node and carry its node password. This keeps a
// restarted agent working after `k1s token rotate` or after its bootstrap
// token is gone, and gives it nothing a token would not: the same node,
// fresh certificates.
const (
	nodeUserPrefix = "system:node:"
	nodesGroup     = "system:nodes"
)

// refusal is why a request was refused, as the agent is told; counts marks
// a wrong credential, which the per-source throttle counts like a wrong
// token.
type refusal struct {
	code   int
	msg    string
	counts bool
}

// certNode returns the node a presented client chain speaks for, or why it
// speaks for none. It verifies the chain itself: the apiserver's TLS only
// requests client certificates, it does not check them.
func (s *Server) certNode(chain []*x509.Certificate, now time.Time) (string, *refusal) {
	leaf := chain[0]
	roots := x509.NewCertPool()
	roots.AddCert(s.PKI.ClientCA.Cert)
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return "", &refusal{http.StatusUnauthorized, fmt.Sprintf("the node's client certificate is not valid here (%v): join with a token from 'k1s token create'", err), true}
	}
	name, ok := strings.CutPrefix(leaf.Subject.CommonName, nodeUserPrefix)
	if !ok || name == "" || !slices.Contains(leaf.Subject.Organization, nodesGroup) {
		return "", &refusal{http.StatusUnauthorized, fmt.Sprintf("client certificate %q is not a node's (want %s<name> in %s): join with a token", leaf.Subject.CommonName, nodeUserPrefix, nodesGroup), true}
	}
	return name, nil
}

// admitNode decides a request made with the certificate of node name: the
// request must be for that node and carry its password. A nil refusal
// with a nil error admits it; an error is a fault of the server (the
// apiserver could not be asked).
func admitNode(ctx context.Context, kube kubernetes.Interface, name string, req *Request) (*refusal, error) {
	if req.NodeName != name {
		return &refusal{http.StatusForbidden, fmt.Sprintf("the client certificate is node %q's: it cannot join as node %q", name, req.NodeName), true}, nil
	}
	switch err := CheckNodePassword(ctx, kube, name, req.Password); {
	case errors.Is(err, ErrNodeUnknown):
		// A valid certificate is no guess: this does not count.
		return &refusal{http.StatusNotFound, fmt.Sprintf("node %q is not registered (its password Secret is gone: the Node was deleted): join with a token", name), false}, nil
	case errors.Is(err, ErrWrongPassword):
		return &refusal{http.StatusUnauthorized, fmt.Sprintf("wrong node password for node %q", name), true}, nil
	case err != nil:
		return nil, err
	}
	return nil, nil
}
