package server

import (
	"context"
	"time"

	"github.com/k1s-io/k1s/internal/pki"
)

const stopRenewal = 5 * time.Second

// certRenewal starts the periodic check of the server's leaf certificates
// and its own node's, and its embedded etcd member's (the pki, credentials
// and datastore steps checked them at start).
// Renewed files are picked up by their users without a restart: the
// apiserver's serving and proxy-client certificates and the kubelet's
// serving certificate by their file watchers, etcd and the apiserver's
// etcd client at each TLS handshake, every client built from a
// kubeconfig that names certificate files by client-go's reload (checked
// every 5 minutes).
func (r *run) certRenewal(context.Context) error {
	every, err := pki.CheckInterval()
	if err != nil {
		return err
	}
	rn := &pki.Renewer{Cfg: r.cfg, PKI: r.pki}
	r.sup.Go("cert-renewal", stopRenewal, func(ctx context.Context) error {
		return pki.RenewLoop(ctx, every, r.log, rn.Check)
	})
	return nil
}
