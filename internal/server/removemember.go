package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/k1s-io/k1s/internal/config"
	"github.com/k1s-io/k1s/internal/etcd"
	"github.com/k1s-io/k1s/internal/pki"
)

// How long `k1s server --remove-member` waits: for its member to start
// (it needs the cluster's quorum), and for the member to apply its own
// removal.
const (
	removeStartTimeout   = 2 * time.Minute
	removeApplyTimeout   = 30 * time.Second
	removeDeleteNodeWait = 15 * time.Second
	removeUnhealthyRetry = 20 * time.Second
)

// removeMember is `k1s server --remove-member`, on a stopped server's data
// dir (locked by the caller): it starts the member on its data, removes
// it from the cluster (MemberRemove of its own ID; never the last voting
// member), waits until the member applied that and stopped, moves
// server/db/etcd aside (nothing is deleted), and deletes the server's
// Node through another server's apiserver (the member list's peer
// addresses, this server's --https-listen-port, its admin credentials,
// which every server's apiserver accepts). A member the cluster removed
// already (its Node deleted while it ran) is only moved aside.
func removeMember(ctx context.Context, cfg *config.Server, log logrus.FieldLogger) error {
	name := etcd.Name(cfg)
	if id, removed := etcd.WasRemoved(cfg); removed {
		log.Infof("--remove-member: etcd member %s (%x) was removed from the cluster already", name, id)
		return finishRemoval(cfg, log, nil)
	}
	sctx, cancel := context.WithTimeout(ctx, removeStartTimeout)
	defer cancel()
	log.Infof("--remove-member: starting this server's etcd member %s on %s to remove it (a majority of the cluster's members must be up)", name, cfg.EtcdDir())
	m, err := etcd.Start(sctx, cfg, nil, log)
	if errors.Is(err, etcd.ErrRemoved) {
		log.Infof("--remove-member: the cluster had removed etcd member %s already", name)
		return finishRemoval(cfg, log, nil)
	}
	if err != nil {
		if ctx.Err() == nil && sctx.Err() != nil {
			return fmt.Errorf("--remove-member: this server's etcd member did not start within %s: the cluster's quorum must be up to remove a member (%w)", removeStartTimeout, err)
		}
		return fmt.Errorf("--remove-member: %w", err)
	}
	stopMember := func() {
		if err := m.Stop(stopDatastore); err != nil {
			log.Warn(err)
		}
	}
	cli, err := m.Client(ctx)
	if err != nil {
		stopMember()
		return err
	}
	defer cli.Close()
	lctx, lcancel := context.WithTimeout(ctx, 10*time.Second)
	list, err := cli.MemberList(lctx)
	lcancel()
	if err != nil {
		stopMember()
		return fmt.Errorf("--remove-member: etcd member list: %w", err)
	}
	plan := etcd.PlanRemoval(list.Members, etcd.PeerURL(cfg), 0)
	switch plan.Action {
	case etcd.RemovalRefused:
		stopMember()
		return fmt.Errorf("--remove-member refused: %s. Nothing was changed", plan.Reason)
	case etcd.RemovalDone:
		stopMember()
		return finishRemoval(cfg, log, nil)
	}
	if plan.ID != m.ID() {
		stopMember()
		return fmt.Errorf("--remove-member: the member with this server's peer URL %s is %x, not this member %x: nothing was changed", etcd.PeerURL(cfg), plan.ID, m.ID())
	}
	others := otherServers(list.Members, plan.ID)
	// etcd refuses (unhealthy cluster) while this member has been connected
	// to the others for less than its health interval (5 s): a member
	// that just started is in that state, so that refusal is retried.
	unhealthyUntil := time.Now().Add(removeUnhealthyRetry)
	for {
		rctx, rcancel := context.WithTimeout(ctx, 15*time.Second)
		_, err = cli.MemberRemove(rctx, plan.ID)
		rcancel()
		if !errors.Is(err, rpctypes.ErrUnhealthy) || time.Now().After(unhealthyUntil) || ctx.Err() != nil {
			break
		}
		time.Sleep(time.Second)
	}
	if err != nil && !errors.Is(err, rpctypes.ErrMemberNotFound) {
		stopMember()
		if errors.Is(err, rpctypes.ErrUnhealthy) || errors.Is(err, rpctypes.ErrMemberNotEnoughStarted) {
			return fmt.Errorf("--remove-member refused by etcd: %v: without this member the others would not keep a quorum of started, connected members; start the servers that are down first. Nothing was changed", err)
		}
		return fmt.Errorf("--remove-member: removing etcd member %s (%x): %w", plan.Name, plan.ID, err)
	}
	log.Infof("--remove-member: removed etcd member %s (%x) from the cluster; %d members left", plan.Name, plan.ID, len(list.Members)-1)
	// The member stops once it has applied its own removal.
	select {
	case <-m.Stopped():
	case <-time.After(removeApplyTimeout):
		log.Warnf("--remove-member: the member has not stopped %s after its removal; stopping it", removeApplyTimeout)
	}
	stopMember()
	return finishRemoval(cfg, log, others)
}

// otherServers are the peer hosts of the members other than id.
func otherServers(members []*etcdserverpb.Member, id uint64) []string {
	var hosts []string
	for _, m := range members {
		if m.ID == id {
			continue
		}
		for _, p := range m.PeerURLs {
			if u, err := url.Parse(p); err == nil && u.Hostname() != "" && !slices.Contains(hosts, u.Hostname()) {
				hosts = append(hosts, u.Hostname())
			}
		}
	}
	return hosts
}

// finishRemoval moves the member's data aside, deletes the server's Node
// through one of others (peer hosts; none: it says how), and says what
// was done and how to join again.
func finishRemoval(cfg *config.Server, log logrus.FieldLogger, others []string) error {
	dir := cfg.EtcdDir()
	aside := dir + ".removed-" + time.Now().UTC().Format("20060102T150405Z")
	if err := os.Rename(dir, aside); err != nil {
		return fmt.Errorf("--remove-member: the member is out of the cluster, but its data could not be moved aside: %w (move %s away before this server starts again)", err, dir)
	}
	log.Infof("--remove-member: moved this server's etcd data %s to %s (nothing was deleted)", dir, aside)
	node := cfg.Node().NodeName
	switch {
	case cfg.DisableAgent:
	case len(others) == 0:
		log.Infof("--remove-member: if this server's Node %s is still listed, delete it: kubectl delete node %s", node, node)
	default:
		if err := deleteOwnNode(cfg, node, others, log); err != nil {
			log.Warnf("--remove-member: this server's Node %s was not deleted (%v): delete it with kubectl delete node %s", node, err, node)
		}
	}
	log.Infof("--remove-member: done: this server is no longer part of the cluster. To join it again: start k1s server with --server https://<another server>:%d and the cluster's --token (the data dir's certificates stay; its etcd data starts afresh from the cluster)", cfg.HTTPSPort)
	return nil
}

// deleteOwnNode deletes node through the apiserver of the first of hosts
// that answers, with this server's admin credentials.
func deleteOwnNode(cfg *config.Server, node string, hosts []string, log logrus.FieldLogger) error {
	if len(hosts) == 0 {
		return errors.New("no other server known")
	}
	kubeconfig := pki.Files{Dir: cfg.TLSDir(), CredDir: cfg.CredDir()}.AdminKubeconfig()
	var errs []string
	for _, h := range hosts {
		rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return err
		}
		rc.Host = "https://" + net.JoinHostPort(h, strconv.Itoa(cfg.HTTPSPort))
		rc.Timeout = removeDeleteNodeWait
		kube, err := kubernetes.NewForConfig(rc)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), removeDeleteNodeWait)
		err = kube.CoreV1().Nodes().Delete(ctx, node, metav1.DeleteOptions{})
		cancel()
		switch {
		case err == nil:
			log.Infof("--remove-member: deleted Node %s through %s", node, rc.Host)
			return nil
		case apierrors.IsNotFound(err):
			log.Infof("--remove-member: Node %s is gone already (%s)", node, rc.Host)
			return nil
		}
		errs = append(errs, fmt.Sprintf("%s: %v", rc.Host, err))
	}
	return errors.New(strings.Join(errs, "; "))
}
