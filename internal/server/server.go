// Package server assembles `k1s server` from a complete, validated
// config.Server: it takes the data-dir lock, then runs the start-up
// pipeline (datastore → PKI → apiserver → controllers → add-ons → the
// server's own node → the periodic certificate renewal), reports readiness, and on a signal or a component's
// failure stops every component in reverse start order. On an external
// datastore the PKI's CAs and keys are shared with the other servers
// through the datastore (package bootstrap), so they form one cluster; on
// embedded etcd too, where a server given --server first joins the etcd
// cluster through another server's /v1-k1s/server-join (etcdjoin.go).
// Deleting a server's Node removes its etcd member (etcdmember.go); a
// server whose member the cluster removed stops with etcd.RemovedError;
// `k1s server --remove-member` takes a stopped server out of its cluster
// instead of running it (removemember.go).
package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/k1s-io/k1s/internal/config"
	"github.com/k1s-io/k1s/internal/control"
	"github.com/k1s-io/k1s/internal/datadir"
	"github.com/k1s-io/k1s/internal/datastore"
	"github.com/k1s-io/k1s/internal/etcd"
	"github.com/k1s-io/k1s/internal/executor"
	"github.com/k1s-io/k1s/internal/exepages"
	"github.com/k1s-io/k1s/internal/gotune"
	"github.com/k1s-io/k1s/internal/join"
	"github.com/k1s-io/k1s/internal/logging"
	"github.com/k1s-io/k1s/internal/node"
	"github.com/k1s-io/k1s/internal/pipeline"
	"github.com/k1s-io/k1s/internal/pki"
	"github.com/k1s-io/k1s/internal/sdnotify"
	"github.com/k1s-io/k1s/internal/secretsenc"
)

// How long start-up gates wait.
const (
	apiserverReadyTimeout   = 3 * time.Minute
	controllersReadyTimeout = 2 * time.Minute
)

// Run starts the server and blocks until ctx is cancelled (clean exit,
// nil) or something fails (the error names the component).
func Run(ctx context.Context, cfg *config.Server) error {
	lock, err := datadir.Acquire(cfg.DataDir)
	if err != nil {
		return err
	}
	defer lock.Release()
	// After the lock: a second server must not rotate this one's log.
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

	if cfg.RemoveMember {
		return removeMember(ctx, cfg, log)
	}
	r := newRun(cfg, log, executor.Embedded())
	return r.serve(ctx, r.steps())
}

// How long shutdown waits for each server component.
const (
	stopAPIServer  = 15 * time.Second // drains in-flight requests
	stopController = 15 * time.Second
	stopDatastore  = 10 * time.Second
)

func newRun(cfg *config.Server, log logrus.FieldLogger, exec executor.Executor) *run {
	r := &run{cfg: cfg, log: log, exec: exec, sup: pipeline.NewSupervisor(log)}
	r.claimName = r.claimOwnName
	return r
}

// serve runs steps, then waits for ctx or a component's failure. The
// supervisor stops every component in reverse start order on the way out.
func (r *run) serve(ctx context.Context, steps []pipeline.Step) error {
	cfg, log := r.cfg, r.log
	defer r.sup.Stop(log)
	// Before the supervisor stops: a node step still running must not
	// start a component after that.
	defer func() { r.nodeJoin.Cancel(); r.nodePrep.Cancel() }()

	start := time.Now()
	if err := pipeline.Run(ctx, log, steps); err != nil {
		if ctx.Err() != nil {
			return nil // interrupted during start-up
		}
		return err
	}
	log.Infof("k1s is ready in %s: API %s, admin kubeconfig %s, join token in %s",
		time.Since(start).Round(time.Millisecond), cfg.APIServerURL(), cfg.WriteKubeconfig, cfg.TokenPath())
	sdnotify.Tell(log, sdnotify.Ready)
	log.Info(exepages.Report())
	defer sdnotify.Tell(log, sdnotify.Stopping)

	select {
	case <-ctx.Done():
		log.Info("shutting down")
		return nil
	case <-r.sup.Failed():
		return r.sup.Cause()
	}
}

type run struct {
	cfg   *config.Server
	log   logrus.FieldLogger
	exec  executor.Executor
	sup   *pipeline.Supervisor
	store *datastore.Store
	pki   *pki.Result
	// encryption is the apiserver's encryption configuration, "" for none.
	encryption string
	// bsync keeps the shared files and the cluster's bootstrap bundle
	// alike (nil: no shared datastore, or a bundle this server cannot open).
	bsync *bundleSync
	// claimName claims the server's node name before joins open (a stand-in
	// in unit tests, which have no apiserver to answer).
	claimName func(context.Context) error

	kubeOnce sync.Once
	nodePrep *pipeline.Ahead // the node's Prepare steps, run while the apiserver starts
	nodeJoin *pipeline.Ahead // the node's Join steps, run while the controllers and add-ons start
	joins    *join.Server    // opened once the apiserver is wholly ready
	kubeRC   *rest.Config
	kube     kubernetes.Interface
	kubeErr  error
}

func (r *run) steps() []pipeline.Step {
	steps := []pipeline.Step{
		{Name: "datastore", Run: r.datastore},
		{Name: "pki", Run: r.certificates},
	}
	var n *node.Node
	if !r.cfg.DisableAgent {
		n = node.New(r.cfg.Node(), r.nodeCredentials, r.exec, r.sup, r.log)
		// The node's host, containerd and images steps need nothing from
		// the cluster: they run while the apiserver starts, which takes
		// seconds off start → node Ready.
		steps = append(steps, pipeline.Step{Name: "node-prepare", Run: func(ctx context.Context) error {
			r.nodePrep = pipeline.RunAhead(ctx, r.log, n.Prepare())
			return nil
		}})
	}
	steps = append(steps, []pipeline.Step{
		{Name: "kube-apiserver", Run: r.apiserver},
		{Name: "rbac", Run: r.rbac},
		{Name: "node-name-release", Run: r.nodeNameRelease},
	}...)
	if n != nil {
		// The node joins while the apiserver writes its default policy and
		// the controllers and add-ons start: it needs none of them until
		// the controller-manager assigns its Pod CIDR.
		steps = append(steps, pipeline.Step{Name: "node-join", Run: func(ctx context.Context) error {
			prepared := pipeline.Step{Name: "node-prepared", Run: r.nodePrep.Wait}
			r.nodeJoin = pipeline.RunAhead(ctx, r.log, append([]pipeline.Step{prepared}, n.Join()...))
			return nil
		}})
	}
	steps = append(steps, []pipeline.Step{
		{Name: "kube-apiserver-ready", Run: r.apiserverReady},
		{Name: "controllers", Run: r.controllers},
		{Name: "addons", Run: r.addons},
	}...)
	if n != nil {
		steps = append(steps, pipeline.Step{Name: "node", Run: func(ctx context.Context) error { return r.nodeJoin.Wait(ctx) }})
	}
	if ep := r.cfg.Datastore.Endpoint; r.cfg.EmbeddedEtcd() || ep != "" && !strings.HasPrefix(ep, "sqlite://") {
		steps = append(steps, pipeline.Step{Name: "bundle-sync", Run: r.bundleSyncLoop})
	}
	return append(steps, pipeline.Step{Name: "cert-renewal", Run: r.certRenewal})
}

func (r *run) datastore(ctx context.Context) error {
	if r.cfg.Snapshots.ClusterReset && (!r.cfg.EmbeddedEtcd() || r.cfg.Snapshots.RestorePath != "") {
		if err := r.restore(ctx); err != nil {
			return err
		}
	}
	// A server given --server joins the embedded etcd cluster there on its
	// first start; later starts restart its member on its data.
	var j *etcd.Join
	if r.cfg.ServerURL != "" {
		if r.cfg.HasEtcdData() {
			r.log.Infof("this data dir holds an etcd member already: it restarts on its data (--server %s is used only on the first start)", r.cfg.ServerURL)
		} else {
			var err error
			if j, err = r.joinEtcd(ctx); err != nil {
				return err
			}
		}
	}
	// A signal during a long SQLite vacuum ends start-up.
	s, err := datastore.StartJoin(ctx, r.cfg, j)
	if err != nil {
		return err
	}
	r.store = s
	r.log.Infof("datastore %s serving the etcd API at %v", s.Description, s.Endpoints)
	r.scheduleSnapshots()
	if s.Etcd != nil {
		r.promoteLearners()
	}
	// Supervised only to be closed last: it is started first.
	// An embedded etcd member stops on its own only when the cluster
	// removed it: the server fails with etcd.RemovedError.
	var stopped <-chan struct{}
	if s.Etcd != nil {
		stopped = s.Etcd.Stopped()
	}
	r.sup.Go("datastore", stopDatastore, func(ctx context.Context) error {
		var err error
		select {
		case <-ctx.Done():
		case <-stopped:
			err = s.Etcd.Removed(r.cfg)
		}
		if err := s.Stop(stopDatastore); err != nil {
			r.log.Warn(err)
		} else {
			r.log.Info("datastore closed")
		}
		return err
	})
	return nil
}

func (r *run) certificates(ctx context.Context) error {
	if !r.sharedDatastore() {
		return r.ensureCredentials()
	}
	cli, err := r.etcdClient(ctx)
	if err != nil {
		return fmt.Errorf("datastore %s: %w", r.store.Description, err)
	}
	defer cli.Close()
	found, err := r.loadClusterSecrets(ctx, cli)
	if err != nil {
		return err
	}
	if err := r.ensureCredentials(); err != nil {
		return err
	}
	if !found {
		if err := r.publishClusterSecrets(ctx, cli); err != nil {
			return err
		}
		tok, err := pki.ParseToken(r.pki.Token)
		if err != nil {
			return err
		}
		r.bsync = r.newBundleSync(tok.Secret)
	}
	if r.bsync == nil {
		return nil // the bundle does not open with this server's token (logged)
	}
	// Changes made here while the server was stopped (rotate-ca) go out.
	return r.bsync.pass(ctx, cli)
}

// ensureCredentials makes or renews the PKI and the encryption config.
func (r *run) ensureCredentials() error {
	res, err := pki.Ensure(r.cfg, time.Now())
	if err != nil {
		return err
	}
	for _, ev := range res.Events {
		if ev.Reason != "" {
			r.log.Infof("%s %s (%s)", ev.Action, ev.Name, ev.Reason)
		} else {
			r.log.Infof("%s %s", ev.Action, ev.Name)
		}
	}
	r.pki = res
	r.log.Infof("admin kubeconfig written to %s", r.cfg.WriteKubeconfig)
	use, note, err := secretsenc.Ensure(r.cfg.EncryptionConfig(), r.cfg.SecretsEncryption, time.Now())
	if err != nil {
		return fmt.Errorf("secrets encryption: %w (move the file aside to start with a new key, or restore it from a backup; Secrets written with a lost key cannot be read)", err)
	}
	if note != "" {
		r.log.Info(note)
	}
	if use {
		r.encryption = r.cfg.EncryptionConfig()
	}
	return nil
}

func (r *run) apiserver(ctx context.Context) error {
	args := control.APIServerArgs(r.cfg, r.pki.Files, r.store, r.encryption)
	for _, note := range control.APIServerArgNotes(r.cfg) {
		r.log.Info(note)
	}
	tok, err := pki.ParseToken(r.pki.Token)
	if err != nil {
		return err
	}
	js := &join.Server{PKI: r.pki, Secret: tok.Secret, TokenPath: r.cfg.TokenPath(), Cluster: r.cfg.Cluster, Kube: r.adminClient, Log: r.log}
	if r.store.Etcd != nil {
		js.Etcd = etcdMembers{r}
	}
	r.sup.Go("kube-apiserver", stopAPIServer, func(ctx context.Context) error { return r.exec.APIServer(ctx, args, js.Front) })
	r.joins = js
	// The steps up to the node's join need the API, not the default policy
	// the apiserver writes a second later (apiserverReady waits for it).
	probe, err := control.APIServerServingProbe(r.cfg.APIServerURL(), r.pki.Files)
	if err != nil {
		return err
	}
	if err := r.sup.Wait(ctx, "kube-apiserver /readyz (all but its default-policy hooks) and kube-system", apiserverReadyTimeout, probe.Check, probe.Last); err != nil {
		return err
	}
	// Joins wait (503) until the server holds its own node name, so that an
	// agent with a pre-shared token cannot take it first.
	if !r.cfg.DisableAgent {
		if err := r.claimName(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (r *run) rbac(ctx context.Context) error {
	kube, err := r.adminClient()
	if err != nil {
		return err
	}
	return control.EnsureRBAC(ctx, kube)
}

// apiserverReady waits for the whole of the apiserver's /readyz, the
// default policy included, before the controllers start and joins open.
func (r *run) apiserverReady(ctx context.Context) error {
	probe, err := control.APIServerProbe(r.cfg.APIServerURL(), r.pki.Files)
	if err != nil {
		return err
	}
	if err := r.sup.Wait(ctx, "kube-apiserver /readyz", apiserverReadyTimeout, probe.Check, probe.Last); err != nil {
		return err
	}
	r.joins.Open()
	return nil
}

// claimOwnName claims the server's node name for this host's node password.
func (r *run) claimOwnName(ctx context.Context) error {
	nc := r.cfg.Node()
	password, err := join.NodePassword(nc.PasswordPath())
	if err != nil {
		return err
	}
	kube, err := r.adminClient()
	if err != nil {
		return err
	}
	return join.ClaimNodeName(ctx, kube, nc.NodeName, password)
}

func (r *run) controllers(ctx context.Context) error {
	sched := control.SchedulerArgs(r.cfg, r.pki.Files)
	cm := control.ControllerManagerArgs(r.cfg, r.pki.Files)
	if r.sharedDatastore() {
		return r.electedControllers(sched, cm)
	}
	r.sup.Go("kube-scheduler", stopController, func(ctx context.Context) error { return r.exec.Scheduler(ctx, sched) })
	r.sup.Go("kube-controller-manager", stopController, func(ctx context.Context) error { return r.exec.ControllerManager(ctx, cm) })
	for _, c := range []struct {
		name string
		port int
	}{{"kube-scheduler", r.cfg.SchedulerPort}, {"kube-controller-manager", r.cfg.ControllerPort}} {
		p := control.LocalProbe(c.port)
		if err := r.sup.Wait(ctx, c.name+" /healthz", controllersReadyTimeout, p.Check, p.Last); err != nil {
			return err
		}
	}
	return nil
}

// nodeNameRelease frees the name of a deleted Node for another host; on
// embedded etcd it also removes the etcd member of a deleted server's
// Node (etcdmember.go).
func (r *run) nodeNameRelease(context.Context) error {
	kube, err := r.adminClient()
	if err != nil {
		return err
	}
	r.sup.Go("node-name-release", stopController, func(ctx context.Context) error { return join.ReleaseDeletedNodeNames(ctx, kube, r.log) })
	if m := r.store.Etcd; m != nil {
		r.sup.Go("etcd-member-removal", stopController, func(ctx context.Context) error {
			return removeDeletedServers(ctx, kube, m, r.log.WithField("component", "etcd-member-removal"))
		})
	}
	return nil
}

// adminClient is k1s's own client of the apiserver, made on first use.
func (r *run) adminClient() (kubernetes.Interface, error) {
	r.admin()
	return r.kube, r.kubeErr
}

// adminConfig is the REST config behind adminClient, for other clients.
func (r *run) adminConfig() (*rest.Config, error) {
	r.admin()
	return r.kubeRC, r.kubeErr
}

// Rate limits of the server's admin client and manifest applier.
const adminQPS, adminBurst = 50, 300

func (r *run) admin() {
	r.kubeOnce.Do(func() {
		r.kubeRC, r.kubeErr = clientcmd.BuildConfigFromFlags("", r.pki.Files.AdminKubeconfig())
		if r.kubeErr == nil {
			// client-go's default of 5 requests/s held the add-ons step
			// (one request per manifest object, and the node waits for it)
			// for ~5 s at every start; the apiserver's own priority and
			// fairness still protects it, as for kubectl (50/300).
			r.kubeRC.QPS, r.kubeRC.Burst = adminQPS, adminBurst
			r.kube, r.kubeErr = kubernetes.NewForConfig(r.kubeRC)
		}
	})
}

// nodeCredentials issues the server's own node credentials and claims its
// name, so that no agent can join under it.
func (r *run) nodeCredentials(ctx context.Context, nc config.Node, dir string) error {
	events, err := pki.EnsureNode(r.pki, dir, nc.NodeName, nc.NodeIP, nc.APIServerURL, time.Now())
	if err != nil {
		return err
	}
	for _, ev := range events {
		r.log.Infof("%s %s", ev.Action, ev.Name)
	}
	if err := r.claimOwnName(ctx); err != nil { // claimed at start-up already; checks it still holds
		return err
	}
	kube, err := r.adminClient()
	if err != nil {
		return err
	}
	return control.EnsureFlannelNodeRBAC(ctx, kube, nc.NodeName)
}
