package agent

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/k1s-io/k1s/internal/apilb"
	"github.com/k1s-io/k1s/internal/config"
	"github.com/k1s-io/k1s/internal/pki"
)

// followEvery is how often the agent re-reads the list of servers.
const followEvery = 10 * time.Second

// startLB starts the apiserver load balancer, seeded with --server and the
// servers saved by an earlier run; the join and every client of the node
// go through it. It is supervised only to be stopped last.
func (a *agent) startLB(context.Context) error {
	u, err := url.Parse(a.cfg.ServerURL)
	if err != nil {
		return err
	}
	n := a.cfg.Node(config.Cluster{})
	state := filepath.Join(n.AgentDir(), "apiservers.json")
	lb, err := apilb.New(net.JoinHostPort("127.0.0.1", strconv.Itoa(a.cfg.APIServerLBPort)), u.Host, state, a.log)
	if err != nil {
		return err
	}
	lbctx, cancel := context.WithCancel(context.Background())
	if err := lb.Start(lbctx); err != nil {
		cancel()
		return err
	}
	a.sup.Go("apiserver-lb", 5*time.Second, func(ctx context.Context) error {
		<-ctx.Done()
		cancel()
		return nil
	})
	a.lb = lb
	a.client.URL = lb.URL()
	a.log.Infof("apiserver load balancer on %s over %v", lb.Addr(), lb.Servers())
	return nil
}

// followServers keeps the balancer's list in line with the `kubernetes`
// Service's endpoints, which every live apiserver keeps itself in.
func (a *agent) followServers(nc config.Node) error {
	rc, err := clientcmd.BuildConfigFromFlags("", pki.NodeFiles{Dir: nc.PKIDir()}.ProxyKubeconfig())
	if err != nil {
		return err
	}
	rc.Timeout = 10 * time.Second
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	a.sup.Go("apiserver-endpoints", 5*time.Second, func(ctx context.Context) error {
		var last []string
		for {
			servers, err := apiServers(ctx, kube)
			switch {
			case err != nil:
				a.log.Debugf("listing the apiservers: %v", err)
			case len(servers) > 0 && !slices.Equal(servers, last):
				if err := a.lb.SetServers(servers); err != nil {
					a.log.Warnf("saving the list of apiservers: %v", err)
				}
				last = servers
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(followEvery):
			}
		}
	})
	return nil
}

// apiServers lists host:port of every apiserver in the `kubernetes`
// Service's EndpointSlices, sorted.
func apiServers(ctx context.Context, kube kubernetes.Interface) ([]string, error) {
	list, err := kube.DiscoveryV1().EndpointSlices(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=kubernetes"})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range list.Items {
		var port int32
		for _, p := range s.Ports {
			if p.Port != nil && (p.Name == nil || *p.Name == "https") {
				port = *p.Port
			}
		}
		if port == 0 {
			continue
		}
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && !*e.Conditions.Ready {
				continue
			}
			for _, addr := range e.Addresses {
				out = append(out, net.JoinHostPort(addr, strconv.Itoa(int(port))))
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("the kubernetes Service has no endpoints")
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}
