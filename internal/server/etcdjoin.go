package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/k1s-io/k1s/internal/bootstrap"
	"github.com/k1s-io/k1s/internal/etcd"
	"github.com/k1s-io/k1s/internal/join"
	"github.com/k1s-io/k1s/internal/pki"
)

// etcdMembers adds joining servers to this server's embedded etcd
// (join.EtcdMembers).
type etcdMembers struct{ r *run }

func (m etcdMembers) AddLearner(ctx context.Context, name, peerURL string) (string, error) {
	cli, err := m.r.store.Etcd.Client(ctx)
	if err != nil {
		return "", err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	list, err := cli.MemberList(ctx)
	if err != nil {
		return "", err
	}
	var id uint64
	for _, mem := range list.Members {
		switch {
		case slices.Contains(mem.PeerURLs, peerURL):
			if mem.Name != "" {
				return "", fmt.Errorf("etcd member %s (%x) with peer URL %s has run already: a server that lost its data dir must be removed from the cluster first (etcdctl member remove %x), or restarted on its data dir", mem.Name, mem.ID, peerURL, mem.ID)
			}
			id = mem.ID // a previous attempt of the same server
		case mem.IsLearner:
			return "", join.ErrTryLater
		}
	}
	members := list.Members
	if id == 0 {
		resp, err := cli.MemberAddAsLearner(ctx, []string{peerURL})
		if err != nil {
			if strings.Contains(err.Error(), "too many learner") {
				return "", join.ErrTryLater
			}
			return "", err
		}
		id, members = resp.Member.ID, resp.Members
	}
	return initialCluster(members, id, name), nil
}

func (m etcdMembers) Bundle(ctx context.Context) ([]byte, error) {
	cli, err := m.r.store.Etcd.Client(ctx)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	sealed, found, err := bootstrap.Get(ctx, cli)
	if err == nil && !found {
		err = errors.New("this server has not published it yet")
	}
	return sealed, err
}

// initialCluster is etcd's name=peerURL list of members, the member id
// named name. Members that never started have no name yet: etcd matches
// them by URL, so any distinct name serves.
func initialCluster(members []*etcdserverpb.Member, id uint64, name string) string {
	var parts []string
	for _, mem := range members {
		n := mem.Name
		if mem.ID == id {
			n = name
		} else if n == "" {
			n = fmt.Sprintf("unstarted-%x", mem.ID)
		}
		for _, u := range mem.PeerURLs {
			parts = append(parts, n+"="+u)
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

// promoteLearners makes started learners voting members once etcd
// accepts (it refuses while a learner's log lags the leader's). Every
// server with embedded etcd runs it; a promotion twice is refused, not
// harmful.
func (r *run) promoteLearners() {
	r.sup.Go("etcd-promote", stopController, func(ctx context.Context) error {
		cli, err := r.store.Etcd.Client(ctx)
		if err != nil {
			return err
		}
		defer cli.Close()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(2 * time.Second):
			}
			lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			list, err := cli.MemberList(lctx)
			cancel()
			if err != nil {
				continue
			}
			for _, mem := range list.Members {
				if !mem.IsLearner || mem.Name == "" {
					continue
				}
				pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := cli.MemberPromote(pctx, mem.ID)
				cancel()
				if err == nil {
					r.log.Infof("etcd member %s (%x) caught up: promoted to a voting member", mem.Name, mem.ID)
				} else {
					r.log.Debugf("etcd member %s not promoted yet: %v", mem.Name, err)
				}
			}
		}
	})
}

// joinEtcd asks the server at --server to add this server's etcd member,
// writes the cluster's CAs and keys it answers with, and returns how the
// member joins. It retries what passes with time until ctx ends.
func (r *run) joinEtcd(ctx context.Context) (*etcd.Join, error) {
	tok, err := pki.ParseToken(r.cfg.Token)
	if err != nil {
		return nil, fmt.Errorf("--token: %w", err)
	}
	c := &join.Client{URL: r.cfg.ServerURL, Token: tok, Warn: func(m string) { r.log.Warn(m) }}
	req := join.ServerJoinRequest{Name: etcd.Name(r.cfg), PeerURL: etcd.PeerURL(r.cfg)}
	began := time.Now()
	var resp *join.ServerJoinResponse
	for {
		resp, err = c.ServerJoin(ctx, req)
		if err == nil {
			break
		}
		if join.IsPermanent(err) {
			return nil, err
		}
		wait := max(join.WaitHint(err), 2*time.Second)
		r.log.Warnf("joining the cluster at %s: %v (retrying in %s)", r.cfg.ServerURL, err, wait)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
	b, err := bootstrap.Open(tok.Secret, resp.Bundle)
	if err != nil {
		return nil, fmt.Errorf("the cluster's bootstrap bundle from %s: %w", r.cfg.ServerURL, err)
	}
	dir := r.cfg.ServerDir()
	if err := b.Check(dir); err != nil {
		return nil, err
	}
	written, _, err := b.Write(dir)
	if err != nil {
		return nil, err
	}
	r.log.Infof("joined the cluster at %s in %s: etcd learner %s added, %d files of the cluster's CAs and keys written; initial cluster %s",
		r.cfg.ServerURL, time.Since(began).Round(time.Millisecond), req.Name, len(written), resp.InitialCluster)
	return &etcd.Join{InitialCluster: resp.InitialCluster}, nil
}
