// Package agent runs `k1s agent` from a complete, validated config.Agent:
// it starts the apiserver load balancer (package apilb) that the join and
// every client of the node go through, and keeps its list of servers in
// line with the `kubernetes` endpoints; it joins a k1s server (see package join) in a step of its own, which
// gives it the node's certificates and the cluster's settings, and then
// runs a node (package node) built from both. Nothing changes the config
// after the join.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/k1s-io/k1s/internal/apilb"
	"github.com/k1s-io/k1s/internal/config"
	"github.com/k1s-io/k1s/internal/datadir"
	"github.com/k1s-io/k1s/internal/executor"
	"github.com/k1s-io/k1s/internal/exepages"
	"github.com/k1s-io/k1s/internal/gotune"
	"github.com/k1s-io/k1s/internal/join"
	"github.com/k1s-io/k1s/internal/logging"
	"github.com/k1s-io/k1s/internal/node"
	"github.com/k1s-io/k1s/internal/pipeline"
	"github.com/k1s-io/k1s/internal/pki"
	"github.com/k1s-io/k1s/internal/sdnotify"
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
	tok, err := join.ParseToken(cfg.Token)
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
	log.Info(gotune.Apply(os.Getenv))
	// A data dir restored with loose modes must not leave keys readable.
	if err := datadir.Tighten(cfg.DataDir, func(m string) { log.Warn(m) }); err != nil {
		return err
	}

	a := newAgent(cfg, log, executor.Embedded(), &join.Client{URL: cfg.ServerURL, Token: tok, Warn: func(m string) { log.Warn(m) }})
	return a.serve(ctx, a.steps())
}

type agent struct {
	cfg    *config.Agent
	log    logrus.FieldLogger
	exec   executor.Executor
	sup    *pipeline.Supervisor
	client *join.Client

	joined *join.Response // set by the join step
	lb     *apilb.LB      // set by the apiserver-lb step, nil when off
}

func newAgent(cfg *config.Agent, log logrus.FieldLogger, exec executor.Executor, client *join.Client) *agent {
	return &agent{cfg: cfg, log: log, exec: exec, sup: pipeline.NewSupervisor(log), client: client}
}

// steps: join, then the node built from this agent's options and the
// cluster settings the server sent.
func (a *agent) steps() []pipeline.Step {
	var steps []pipeline.Step
	if a.cfg.APIServerLBPort != 0 {
		steps = append(steps, pipeline.Step{Name: "apiserver-lb", Run: a.startLB})
	}
	return append(steps, []pipeline.Step{
		{Name: "join", Run: a.join},
		{Name: "node", Run: func(ctx context.Context) error {
			nc := a.node()
			if err := pipeline.Run(ctx, a.log, node.New(nc, a.credentials, a.exec, a.sup, a.log).Steps()); err != nil {
				return err
			}
			if a.lb != nil {
				if err := a.followServers(nc); err != nil {
					return err
				}
			}
			return a.startRenewal()
		}},
	}...)
}

// node is the agent's complete node config (valid after the join step):
// its clients reach the apiserver through the load balancer when it runs.
func (a *agent) node() config.Node {
	nc := a.cfg.Node(a.joined.Cluster)
	if a.lb != nil {
		nc.APIServerURL = a.lb.URL()
	}
	return nc
}

// serve runs steps, then waits for ctx or a component's failure; the
// supervisor stops the node's components in reverse start order.
func (a *agent) serve(ctx context.Context, steps []pipeline.Step) error {
	defer a.sup.Stop(a.log)
	start := time.Now()
	if err := pipeline.Run(ctx, a.log, steps); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	a.log.Infof("k1s agent is ready in %s: node joined %s", time.Since(start).Round(time.Millisecond), a.cfg.ServerURL)
	sdnotify.Tell(a.log, sdnotify.Ready)
	a.log.Info(exepages.Report())
	defer sdnotify.Tell(a.log, sdnotify.Stopping)
	select {
	case <-ctx.Done():
		a.log.Info("shutting down")
		return nil
	case <-a.sup.Failed():
		return a.sup.Cause()
	}
}

// join asks the server for the node's credentials and the cluster's
// settings, retrying while the server cannot be reached, and stops at once
// when it refuses or sends settings that are not valid.
func (a *agent) join(ctx context.Context) error {
	n := a.cfg.Node(config.Cluster{})
	password, err := join.NodePassword(n.PasswordPath())
	if err != nil {
		return err
	}
	req := join.Request{NodeName: a.cfg.NodeName, NodeIP: a.cfg.NodeIP, Password: password}
	var lastReport time.Time
	for {
		resp, how, err := a.joinOnce(ctx, req, n.PKIDir(), time.Now())
		if err == nil {
			if resp.FlannelBackend == "" { // servers before flannel sent none
				resp.FlannelBackend = config.DefaultFlannelBackend
			}
			if err := resp.Cluster.Validate(); err != nil {
				return fmt.Errorf("server %s sent cluster settings k1s cannot use: %w", a.client.URL, err)
			}
			a.joined = resp
			a.log.Infof("joined %s as node %s (%s) with %s", a.cfg.ServerURL, a.cfg.NodeName, a.cfg.NodeIP, how)
			return nil
		}
		if join.IsPermanent(err) {
			return err
		}
		if time.Since(lastReport) > reportEvery {
			a.log.Warnf("waiting for the server: %v", err)
			lastReport = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(max(retryEvery, join.WaitHint(err))):
		}
	}
}

// joinOnce makes one attempt to join and says with what. A node that
// joined before presents its own certificate and password first, so that a
// restart needs no valid token (the server token may have been rotated, a
// bootstrap token deleted); if the server refuses that, or no longer knows
// the node, the token is tried.
func (a *agent) joinOnce(ctx context.Context, req join.Request, pkiDir string, now time.Time) (*join.Response, string, error) {
	id, err := join.LoadIdentity(pkiDir, req.NodeName, a.client.Token, now)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			a.log.Infof("not re-authenticating with the node's certificate (%v): using the token", err)
		}
		resp, err := a.client.Join(ctx, req)
		return resp, "the token", err
	}
	resp, err := a.client.Rejoin(ctx, req, id)
	var refused *join.CertRefused
	if !errors.As(err, &refused) {
		return resp, "its node certificate", err
	}
	a.log.Warnf("%v: trying the token", refused)
	resp, err = a.client.Join(ctx, req)
	if join.IsPermanent(err) {
		err = &join.Permanent{Err: fmt.Errorf("%v; and %w. Create a token on the server with 'k1s token create' and restart the agent with it (--token-file, K1S_TOKEN or --token)", refused, err)}
	}
	return resp, "the token", err
}

// credentials writes the certificates the server issued at the join.
func (a *agent) credentials(_ context.Context, nc config.Node, dir string) error {
	return pki.WriteNode(dir, &a.joined.Certs, nc.APIServerURL)
}
