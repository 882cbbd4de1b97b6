package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/k1s-io/k1s/internal/join"
	"github.com/k1s-io/k1s/internal/pki"
)

const stopRenewal = 5 * time.Second

// startRenewal checks the node's certificates periodically once the node
// runs (the join at start renewed them).
func (a *agent) startRenewal() error {
	every, err := pki.CheckInterval()
	if err != nil {
		return err
	}
	a.sup.Go("cert-renewal", stopRenewal, func(ctx context.Context) error {
		return pki.RenewLoop(ctx, every, a.log, func(now time.Time) ([]pki.Event, error) {
			return a.renewCheck(ctx, now)
		})
	})
	return nil
}

// renewCheck renews the node's certificates when one of them is due: an
// agent holds no CA, so it re-authenticates at the join endpoint with its
// current certificate and node password (the token only if the server
// refuses those, as at start) and writes the fresh set. The server issues
// all four with new keys, so all four are replaced; the kubelet, kube-proxy
// and flannel reload them from the files.
func (a *agent) renewCheck(ctx context.Context, now time.Time) ([]pki.Event, error) {
	n := a.node()
	due, err := pki.DueIn(n.PKIDir(), pki.NodeLeafNames, now)
	if err != nil || len(due) == 0 {
		return nil, err
	}
	password, err := join.NodePassword(n.PasswordPath())
	if err != nil {
		return nil, err
	}
	req := join.Request{NodeName: a.cfg.NodeName, NodeIP: a.cfg.NodeIP, Password: password}
	resp, how, err := a.joinOnce(ctx, req, n.PKIDir(), now)
	if err != nil {
		return nil, fmt.Errorf("renewing the node's certificates at %s: %w", a.client.URL, err)
	}
	if err := pki.WriteNode(n.PKIDir(), &resp.Certs, n.APIServerURL); err != nil {
		return nil, err
	}
	var events []pki.Event
	for _, name := range pki.NodeLeafNames {
		why := due[name]
		if why == "" {
			why = "issued with the others"
		}
		events = append(events, pki.Event{Name: name, Action: "renewed", Reason: why + ", from the server with " + how})
	}
	return events, nil
}
