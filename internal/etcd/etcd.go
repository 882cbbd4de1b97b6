// Package etcd runs a k1s server's embedded etcd member in the k1s process
// (go.etcd.io/etcd/server/v3/embed, the real etcd), chosen with
// `k1s server --cluster-init` and kept on every later start of that data
// dir. The member keeps its data in <data-dir>/server/db/etcd, serves
// clients (the apiserver, k1s itself) on https://127.0.0.1:2379 only, with
// client certificates required, and talks to other members on
// https://<advertise-address>:2380 with mutual TLS. It has two CAs of its
// own, made with package pki in <data-dir>/server/tls/etcd (all files
// 0600): etcd-server-ca for the client side, etcd-peer-ca for peers; they
// travel to other servers in the cluster's bootstrap bundle. Start returns
// once the member answers a linearizable read (it has a leader and, in a
// cluster of several, quorum); Stop closes it. With --cluster-reset the
// member restarts once as a one-member cluster (etcd's force-new-cluster),
// for a survivor of a quorum loss. Snapshots (snapshot.go) are etcd's own:
// taken through the member's client API, restored with etcd's restore
// // code (etcdutl) into a new one-member cluster of this member. A member
// the cluster removes (its server's Node deleted, `k1s server
// --remove-member` elsewhere, etcdctl) stops on its own: Stopped is
// closed, and RemovedError says what happened and how to join again; the
// data dir remembers it (Member.Removed), so a restart on that data is
// refused at once (with --cluster-reset too). removal.go decides which
// member a deleted Node's removal takes, and when it must be refused.
package etcd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/k1s-io/k1s/internal/config"
	"github.com/k1s-io/k1s/internal/pki"
)

// Ports of the member: clients on loopback, peers on the advertise address.
const (
	ClientPort = 2379
	PeerPort   = 2380
)

// ClientURL is where the member serves clients.
var ClientURL = "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(ClientPort))

// clusterToken keeps k1s members from talking to another etcd's by mistake.
const clusterToken = "k1s"

// PeerURL is the member's peer URL: the server's advertise address.
func PeerURL(cfg *config.Server) string {
	return "https://" + net.JoinHostPort(cfg.AdvertiseAddress, strconv.Itoa(PeerPort))
}

// Name is the member's name: the host name and the advertise address, so
// that servers on hosts of one name (containers, network namespaces) differ.
func Name(cfg *config.Server) string {
	host, _ := os.Hostname()
	if host == "" {
		host = "k1s"
	}
	return host + "-" + cfg.AdvertiseAddress
}

// Files are the member's TLS files.
func Files(cfg *config.Server) pki.EtcdFiles { return pki.EtcdFiles{Dir: cfg.EtcdTLSDir()} }

// Join is how a member enters an existing cluster (nil: it starts a new
// one, or restarts on its data).
type Join struct {
	// InitialCluster is etcd's name=peerURL list, this member included.
	InitialCluster string
}

// MemberConfig is the etcd configuration of cfg's member.
func MemberConfig(cfg *config.Server, join *Join) (*embed.Config, error) {
	peer, err := url.Parse(PeerURL(cfg))
	if err != nil {
		return nil, fmt.Errorf("etcd peer URL: %w", err)
	}
	client, _ := url.Parse(ClientURL)
	f := Files(cfg)
	ec := embed.NewConfig()
	ec.Name = Name(cfg)
	ec.Dir = cfg.EtcdDir()
	ec.ListenClientUrls = []url.URL{*client}
	ec.AdvertiseClientUrls = []url.URL{*client}
	ec.ListenPeerUrls = []url.URL{*peer}
	ec.AdvertisePeerUrls = []url.URL{*peer}
	ec.InitialClusterToken = clusterToken
	ec.InitialCluster = ec.Name + "=" + peer.String()
	ec.ClusterState = embed.ClusterStateFlagNew
	if join != nil {
		ec.InitialCluster = join.InitialCluster
		ec.ClusterState = embed.ClusterStateFlagExisting
	}
	// --cluster-reset: the member forgets the others and forms a
	// one-member cluster with its data (once: see Start). With
	// --cluster-reset-restore-path the restore made that cluster already.
	ec.ForceNewCluster = forceNewCluster(cfg)
	ec.ClientTLSInfo.CertFile, ec.ClientTLSInfo.KeyFile = f.ServingCert(), f.ServingKey()
	ec.ClientTLSInfo.TrustedCAFile = f.ServerCA()
	ec.ClientTLSInfo.ClientCertAuth = true
	ec.PeerTLSInfo.CertFile, ec.PeerTLSInfo.KeyFile = f.PeerCert(), f.PeerKey()
	ec.PeerTLSInfo.TrustedCAFile = f.PeerCA()
	ec.PeerTLSInfo.ClientCertAuth = true
	// No auto-compaction (etcd's default retention 0): the apiserver
	// compacts (--etcd-compaction-interval, 5 minutes).
	// The gRPC gateway stays on (JSON over the same TLS client port, so
	// curl with the client certificate can inspect the member); no
	// metrics listener.
	ec.EnableGRPCGateway = true
	return ec, nil
}

// Member is a running embedded etcd member.
type Member struct {
	etcd  *embed.Etcd
	files pki.EtcdFiles
	// Endpoints, CAFile, CertFile, KeyFile are what a client needs.
	Endpoints                 []string
	CAFile, CertFile, KeyFile string
}

// progressEvery is how often Start says it is still waiting.
const progressEvery = 10 * time.Second

// Start makes the member's certificates, starts it and waits until it
// serves a linearizable read, or ctx ends. A member of a cluster whose
// other members are down waits (and says so) until they return.
func Start(ctx context.Context, cfg *config.Server, join *Join, log logrus.FieldLogger) (*Member, error) {
	f := Files(cfg)
	events, err := pki.EnsureEtcd(f, net.ParseIP(cfg.AdvertiseAddress), time.Now())
	if err != nil {
		return nil, err
	}
	for _, ev := range events {
		log.Infof("%s %s", ev.Action, ev.Name)
	}
	ec, err := MemberConfig(cfg, join)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DBDir(), 0o700); err != nil {
		return nil, err
	}
	if id, removed := WasRemoved(cfg); removed {
		return nil, RemovedError(cfg, id)
	}
	if cfg.Snapshots.ClusterReset && cfg.Snapshots.RestorePath == "" && !ec.ForceNewCluster {
		log.Warnf("--cluster-reset: this member was reset already (%s): starting without resetting again; remove --cluster-reset (or delete that file to reset once more)", resetMarker(cfg))
	}
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zapToLogrus(cfg.Debug))
	began := time.Now()
	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd: %w", err)
	}
	m := &Member{etcd: e, files: f, Endpoints: []string{ClientURL}, CAFile: f.ServerCA(), CertFile: f.ClientCert(), KeyFile: f.ClientKey()}
	fail := func(err error) (*Member, error) {
		e.Close()
		return nil, err
	}
	ticker := time.NewTicker(progressEvery)
	defer ticker.Stop()
	ready := e.Server.ReadyNotify()
	for ready != nil {
		select {
		case <-ready:
			ready = nil
		case err := <-e.Err():
			return fail(fmt.Errorf("embedded etcd: %w", err))
		case <-m.Stopped():
			return fail(m.removed(cfg))
		case <-ticker.C:
			log.Infof("embedded etcd member %s not ready after %s: it waits for a leader (with several servers, a majority of them must be up)", ec.Name, time.Since(began).Round(time.Second))
		case <-ctx.Done():
			return fail(fmt.Errorf("embedded etcd: start-up interrupted: %w", ctx.Err()))
		}
	}
	cli, err := m.Client(ctx)
	if err != nil {
		return fail(err)
	}
	defer cli.Close()
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := cli.Get(rctx, "health")
		cancel()
		if err == nil {
			break
		}
		select {
		case err := <-e.Err():
			return fail(fmt.Errorf("embedded etcd: %w", err))
		case <-m.Stopped():
			return fail(m.removed(cfg))
		case <-ticker.C:
			log.Infof("embedded etcd member %s does not answer reads yet (%v)", ec.Name, err)
		case <-ctx.Done():
			return fail(fmt.Errorf("embedded etcd: start-up interrupted: %w", ctx.Err()))
		case <-time.After(500 * time.Millisecond):
		}
	}
	if ec.ForceNewCluster {
		if err := os.WriteFile(resetMarker(cfg), []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o600); err != nil {
			return fail(err)
		}
		log.Warnf("--cluster-reset: the embedded etcd member is now a one-member cluster with its data; other servers must join it again with --server and a new data dir. Remove --cluster-reset from this server's flags")
	}
	log.Infof("embedded etcd member %s (ID %x) ready in %s: clients %s, peers %s", ec.Name, uint64(e.Server.MemberID()), time.Since(began).Round(time.Millisecond), ClientURL, PeerURL(cfg))
	return m, nil
}

// resetMarker records that --cluster-reset reset this member, so that a
// restart with the same flags (a service manager's) does not reset again
// a cluster that other servers have joined since.
func resetMarker(cfg *config.Server) string { return filepath.Join(cfg.EtcdDir(), "k1s-cluster-reset") }

func forceNewCluster(cfg *config.Server) bool {
	return cfg.Snapshots.ClusterReset && cfg.Snapshots.RestorePath == "" && !resetDone(cfg)
}

func resetDone(cfg *config.Server) bool {
	_, err := os.Stat(resetMarker(cfg))
	return err == nil
}

// Client is a client of the member with its client certificate.
func (m *Member) Client(ctx context.Context) (*clientv3.Client, error) {
	tc, err := ClientTLS(m.CAFile, m.CertFile, m.KeyFile)
	if err != nil {
		return nil, err
	}
	return clientv3.New(clientv3.Config{Endpoints: m.Endpoints, TLS: tc, DialTimeout: 5 * time.Second, Context: ctx})
}

// LocalClient dials the running member of cfg's data dir on loopback with
// its client certificate: how k1s's commands reach it beside the server.
func LocalClient(ctx context.Context, cfg *config.Server) (*clientv3.Client, error) {
	cc, err := ClientConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return clientv3.New(cc)
}

// ClientTLS is the TLS configuration of an etcd client from its files.
func ClientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("%s holds no certificate", caFile)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, Certificates: []tls.Certificate{cert}}, nil
}

// Stop closes the member, waiting up to timeout.
func (m *Member) Stop(timeout time.Duration) error {
	done := make(chan struct{})
	go func() { m.etcd.Close(); close(done) }()
	select {
	case <-done:
		return nil
	case <-time.After(timeout):
		return errors.New("embedded etcd did not close within " + timeout.String())
	}
}

// Err reports the member's fatal errors while it runs.
func (m *Member) Err() <-chan error { return m.etcd.Err() }

// ID is the member's ID in the cluster.
func (m *Member) ID() uint64 { return uint64(m.etcd.Server.MemberID()) }

// Stopped is closed when the member has stopped: by Stop, or on its own,
// which etcd does only when the cluster removed it (it applied its own
// removal, or a peer refused it as removed).
func (m *Member) Stopped() <-chan struct{} { return m.etcd.Server.StopNotify() }

// removed records in the data dir that the cluster removed the member and
// returns RemovedError.
func (m *Member) removed(cfg *config.Server) error {
	if err := os.WriteFile(removedMarker(cfg), []byte(fmt.Sprintf("%x %s\n", m.ID(), time.Now().UTC().Format(time.RFC3339))), 0o600); err != nil {
		etcdLog.Warnf("recording the member's removal: %v", err)
	}
	return RemovedError(cfg, m.ID())
}

// Removed is what a member that stopped on its own (Stopped closed
// before Stop) means: it records the removal in the data dir and returns
// RemovedError.
func (m *Member) Removed(cfg *config.Server) error { return m.removed(cfg) }

// ErrRemoved is the cause of RemovedError.
var ErrRemoved = errors.New("removed from the cluster")

// RemovedError says that member id of cfg was removed from the cluster,
// and how the server joins again.
func RemovedError(cfg *config.Server, id uint64) error {
	return fmt.Errorf("embedded etcd member %s (%x) was %w (its Node was deleted, or `k1s server --remove-member` or etcdctl removed it), so this server stops: its data in %s is no longer the cluster's. "+
		"To join the cluster again, run `k1s server --remove-member` with this server's flags (it moves that directory aside), then start `k1s server --server https://<another server>:%d --token <the cluster's token>`; or start with a new --data-dir and --server",
		Name(cfg), id, ErrRemoved, cfg.EtcdDir(), cfg.HTTPSPort)
}

// removedMarker is written when the cluster removed the member: a restart
// on that data would only be refused by the other members.
func removedMarker(cfg *config.Server) string { return filepath.Join(cfg.EtcdDir(), "k1s-removed") }

// WasRemoved reports whether the data dir's member was removed from the
// cluster (Member.Removed), and its ID.
func WasRemoved(cfg *config.Server) (uint64, bool) {
	b, err := os.ReadFile(removedMarker(cfg))
	if err != nil {
		return 0, false
	}
	var id uint64
	fmt.Sscanf(string(b), "%x", &id)
	return id, true
}

// zapToLogrus is etcd's logger: warnings and errors (everything with
// debug) as lines of k1s's log, component etcd.
func zapToLogrus(debug bool) *zap.Logger {
	level := zapcore.WarnLevel
	if debug {
		level = zapcore.InfoLevel
	}
	enc := zap.NewProductionEncoderConfig()
	enc.TimeKey, enc.CallerKey, enc.StacktraceKey = "", "", ""
	enc.EncodeLevel = zapcore.LowercaseLevelEncoder
	core := zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.AddSync(logWriter{}), level)
	return zap.New(core)
}

// logWriter hands each encoded etcd line ("level\tmessage\tfields") to
// logrus at its level.
type logWriter struct{}

var etcdLog = logrus.WithField("component", "etcd")

func (logWriter) Write(p []byte) (int, error) {
	level, line, _ := strings.Cut(strings.TrimSpace(string(p)), "\t")
	switch level {
	case "debug", "info":
		etcdLog.Info(line)
	case "warn":
		etcdLog.Warn(line)
	default:
		etcdLog.Error(line)
	}
	return len(p), nil
}
