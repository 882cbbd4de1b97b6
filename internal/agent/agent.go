// Package agent runs `k1s agent`: it joins a k1s server (see package join)
// and runs a node (package node) with the credentials and cluster settings
// the server hands out.
package agent

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/k1s-io/k1s/internal/config"
	"github.com/k1s-io/k1s/internal/datadir"
	"github.com/k1s-io/k1s/internal/executor"
	"github.com/k1s-io/k1s/internal/join"
	"github.com/k1s-io/k1s/internal/logging"
	"github.com/k1s-io/k1s/internal/node"
	"github.com/k1s-io/k1s/internal/pipeline"
	"github.com/k1s-io/k1s/internal/pki"
)

// How often an agent retries a server it cannot reach, and how often it
// says so in the log.
const (
	retryEvery  = 2 * time.Second
	reportEvery = 30 * time.Second
)

// Run joins the server and runs the node until ctx is cancelled (nil) or
// something fails.
func Run(ctx context.Context, cfg *config.Agent) error {
	tok, err := pki.ParseToken(cfg.Token)
	if err != nil {
		return fmt.Errorf("--token: %w", err)
	}
	lock, err := datadir.Acquire(cfg.DataDir)
	if err != nil {
		return err
	}
	defer lock.Release()
	log, logs, err := logging.Setup(logging.Options{Debug: cfg.Debug, Dir: filepath.Join(cfg.DataDir, "logs")})
	if err != nil {
		return err
	}
	defer logs.Close()

	sup := pipeline.NewSupervisor()
	defer node.Stop(sup, log)
	client := &join.Client{URL: cfg.ServerURL, Token: tok, Warn: func(m string) { log.Warn(m) }}
	creds := func(ctx context.Context, nc *config.Node, dir string) error {
		return joinServer(ctx, client, nc, dir, log)
	}
	start := time.Now()
	nc := cfg.Node()
	n := node.New(nc, creds, executor.Embedded(), sup, log)
	if err := pipeline.Run(ctx, log, n.Steps()); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	log.Infof("k1s agent is ready in %s: node joined %s", time.Since(start).Round(time.Millisecond), cfg.ServerURL)
	select {
	case <-ctx.Done():
		log.Info("shutting down")
		return nil
	case <-sup.Failed():
		return sup.Cause(time.Second)
	}
}

// joinServer asks the server for the node's credentials, retrying while
// the server cannot be reached, and stops at once when it refuses.
func joinServer(ctx context.Context, c *join.Client, nc *config.Node, dir string, log logrus.FieldLogger) error {
	password, err := join.NodePassword(nc.PasswordPath())
	if err != nil {
		return err
	}
	req := join.Request{NodeName: nc.Name, NodeIP: nc.IP, Password: password}
	var lastReport time.Time
	for {
		resp, err := c.Join(ctx, req)
		if err == nil {
			nc.ClusterCIDR, nc.ServiceCIDR = resp.ClusterCIDR, resp.ServiceCIDR
			nc.ClusterDNS, nc.ClusterDomain = resp.ClusterDNS, resp.ClusterDomain
			nc.FlannelBackend = resp.FlannelBackend
			if nc.FlannelBackend == "" {
				nc.FlannelBackend = "vxlan"
			}
			if err := pki.WriteNode(dir, &resp.Certs, nc.APIServerURL); err != nil {
				return err
			}
			log.Infof("joined %s as node %s (%s)", c.URL, nc.Name, nc.IP)
			return nil
		}
		if join.IsPermanent(err) {
			return err
		}
		if time.Since(lastReport) > reportEvery {
			log.Warnf("waiting for the server: %v", err)
			lastReport = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(retryEvery):
		}
	}
}
