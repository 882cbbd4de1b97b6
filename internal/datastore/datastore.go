// Package datastore owns the cluster's storage: kine, embedded in the k1s
// process, serving the etcd API to the apiserver over a unix socket and
// keeping the data in SQLite (default), PostgreSQL or MySQL. For https://
// endpoints it steps aside and the apiserver talks to that etcd directly.
// With --cluster-init (or a data dir holding etcd data) it runs an
// embedded etcd member instead (package etcd) and hands the apiserver
// that member's loopback client URL and client certificate.
// Start-up waits for a remote datastore at most --datastore-connect-timeout;
// the embedded SQLite has no deadline (kine vacuums it at start, which takes
// as long as the database is large and the disk slow) and logs progress.
// While it runs, housekeeping keeps the SQLite file and its write-ahead
// log near the size of what kine's compaction leaves (Housekeep).
package datastore

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/k3s-io/kine/pkg/drivers/sqlite"
	"github.com/k3s-io/kine/pkg/endpoint"
	"github.com/k3s-io/kine/pkg/tls"
	"github.com/sirupsen/logrus"

	"github.com/k1s-io/k1s/internal/config"
	"github.com/k1s-io/k1s/internal/etcd"
)

// Store is a running datastore.
type Store struct {
	// Endpoints, and TLS files for etcd, to hand to the apiserver.
	Endpoints                 []string
	CAFile, CertFile, KeyFile string
	// Description is a credential-free name of the backend, for logs.
	Description string
	// SharedSQL: a PostgreSQL or MySQL database that several servers'
	// kine instances may write. kine (v0.17.5) tracks its current revision
	// for watch progress notifications only from its own writes and its
	// poll loop, so with a second writer the revision it reports lags the
	// database's and the apiserver's watch cache waits for it forever
	// ("Too large resource version"). The apiserver runs without its
	// watch cache there (control.APIServerArgs).
	SharedSQL bool
	// Etcd is the embedded etcd member, nil for kine.
	Etcd *etcd.Member

	cancel context.CancelFunc
	wg     *sync.WaitGroup
}

// Endpoint returns the kine endpoint for cfg: the given one, or the SQLite
// file in the data dir (in WAL mode, with incremental auto-vacuum so that
// housekeeping can shrink it while it runs). A sqlite:// endpoint without
// parameters gets the same ones.
func Endpoint(cfg *config.Server) string {
	ep := cfg.Datastore.Endpoint
	if ep == "" {
		return "sqlite://" + cfg.DBDir() + "/state.db?" + sqliteParams
	}
	if strings.HasPrefix(ep, "sqlite://") && !strings.Contains(ep, "?") {
		return ep + "?" + sqliteParams
	}
	return ep
}

// SharedSQL reports whether ep is a SQL database other servers' kine
// instances may write too (see Store.SharedSQL).
func SharedSQL(ep string) bool {
	scheme, _, ok := strings.Cut(ep, "://")
	if !ok {
		return false
	}
	switch strings.ToLower(scheme) {
	case "postgres", "postgresql", "mysql":
		return true
	}
	return false
}

var sqliteParams = sqlite.DefaultParams + "&" + autoVacuumParam

// Describe names an endpoint without its credentials.
func Describe(ep string) string {
	if u, err := url.Parse(ep); err == nil && u.Scheme != "" {
		u.RawQuery = ""
		if u.User != nil {
			u.User = url.User(u.User.Username())
		}
		return u.String()
	}
	scheme, _, _ := strings.Cut(ep, "://")
	return scheme + "://…"
}

// errorHook keeps kine's last error so a timeout can say what went wrong.
type errorHook struct {
	mu   sync.Mutex
	last string
}

func (h *errorHook) Levels() []logrus.Level {
	return []logrus.Level{logrus.ErrorLevel, logrus.WarnLevel}
}
func (h *errorHook) Fire(e *logrus.Entry) error {
	h.mu.Lock()
	h.last = e.Message
	h.mu.Unlock()
	return nil
}
func (h *errorHook) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last
}

var hook = &errorHook{}

func init() { logrus.AddHook(hook) }

// progressEvery is how often start-up says it is still opening SQLite.
const progressEvery = 10 * time.Second

// log is k1s's own logger (logging.Setup's), for lines of this package.
var log = logrus.WithField("component", "k1s")

// SQLitePath is the database file of a SQLite endpoint, "" for another backend.
func SQLitePath(ep string) string {
	rest, ok := strings.CutPrefix(ep, "sqlite://")
	if !ok {
		return ""
	}
	path, _, _ := strings.Cut(rest, "?")
	if path == "" {
		path = "./db/state.db" // kine's default
	}
	return path
}

// Start is StartContext without cancellation.
func Start(cfg *config.Server) (*Store, error) {
	return StartContext(context.Background(), cfg)
}

// StartContext brings the datastore up and returns once it accepts
// connections. A remote backend fails after cfg.Datastore.ConnectTimeout;
// the embedded SQLite is waited for as long as it takes (until ctx ends),
// with a progress line first after min(10 s, the timeout), then every 10 s.
func StartContext(ctx context.Context, cfg *config.Server) (*Store, error) {
	return StartJoin(ctx, cfg, nil)
}

// StartJoin is StartContext for a server whose embedded etcd member joins
// an existing cluster as join says (nil: a new cluster or a restart).
func StartJoin(ctx context.Context, cfg *config.Server, join *etcd.Join) (*Store, error) {
	if cfg.EmbeddedEtcd() || join != nil {
		m, err := etcd.Start(ctx, cfg, join, log)
		if err != nil {
			return nil, err
		}
		return &Store{Endpoints: m.Endpoints, CAFile: m.CAFile, CertFile: m.CertFile, KeyFile: m.KeyFile,
			Description: "embedded etcd " + cfg.EtcdDir(), Etcd: m}, nil
	}
	ep := Endpoint(cfg)
	s := &Store{Description: Describe(ep), SharedSQL: SharedSQL(ep), wg: &sync.WaitGroup{}}
	// The kine socket lives in the server dir whatever the backend.
	if err := os.MkdirAll(cfg.ServerDir(), 0o700); err != nil {
		return nil, err
	}
	if cfg.Datastore.Endpoint == "" {
		if err := os.MkdirAll(cfg.DBDir(), 0o700); err != nil {
			return nil, err
		}
		s.Description = "sqlite://" + cfg.DBDir() + "/state.db"
	}
	// kine's context outlives ctx: it is the store's, cancelled by Stop.
	kctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	backendTLS := tls.Config{CAFile: cfg.Datastore.CAFile, CertFile: cfg.Datastore.CertFile, KeyFile: cfg.Datastore.KeyFile}
	kcfg := endpoint.Config{
		WaitGroup:        s.wg,
		Listener:         "unix://" + cfg.KineSocket(),
		Endpoint:         ep,
		BackendTLSConfig: backendTLS,
		CompactInterval:  cfg.Datastore.CompactInterval,
		CompactTimeout:   cfg.Datastore.CompactTimeout,
		CompactMinRetain: cfg.Datastore.CompactMinRetain,
		CompactBatchSize: cfg.Datastore.CompactBatchSize,
		NotifyInterval:   5 * time.Second,
		PollInterval:     time.Second,
		PollBatchSize:    500,
		// The etcd version kine claims; the apiserver derives features from it.
		EmulatedETCDVersion: "3.6.11",
	}
	// A stale socket from a killed process would make the listen fail.
	_ = os.Remove(cfg.KineSocket())

	type result struct {
		etcd endpoint.ETCDConfig
		err  error
	}
	done := make(chan result, 1)
	go func() {
		etcd, err := endpoint.Listen(kctx, kcfg)
		done <- result{etcd, err}
	}()
	dbPath := SQLitePath(ep)
	var deadline, progress <-chan time.Time
	var ticker *time.Ticker
	if dbPath == "" {
		t := time.NewTimer(cfg.Datastore.ConnectTimeout)
		defer t.Stop()
		deadline = t.C
	} else {
		// First when a remote datastore would have been given up on (if sooner).
		ticker = time.NewTicker(min(progressEvery, cfg.Datastore.ConnectTimeout))
		defer ticker.Stop()
		progress = ticker.C
	}
	began := time.Now()
	for {
		select {
		case r := <-done:
			if r.err != nil {
				cancel()
				return nil, fmt.Errorf("%s: %w", s.Description, r.err)
			}
			s.Endpoints = r.etcd.Endpoints
			s.CAFile, s.CertFile, s.KeyFile = r.etcd.TLSConfig.CAFile, r.etcd.TLSConfig.CertFile, r.etcd.TLSConfig.KeyFile
			if dbPath != "" {
				every := cfg.Datastore.CompactInterval
				if every <= 0 {
					every = config.DefaultCompactInterval
				}
				housekeeper(kctx, s.wg, dbPath, every, log)
			}
			return s, nil
		case <-progress:
			log.Infof("still opening SQLite database %s (%d MB) after %s: kine vacuums it at start, which takes a while for a large database on slow storage; k1s waits (--datastore-connect-timeout applies to remote datastores only)",
				dbPath, sqliteSize(dbPath)>>20, time.Since(began).Round(time.Second))
			ticker.Reset(progressEvery)
		case <-deadline:
			cancel()
			msg := fmt.Sprintf("%s not reachable within %s", s.Description, cfg.Datastore.ConnectTimeout)
			if last := hook.String(); last != "" {
				msg += " (last error: " + last + ")"
			}
			return nil, fmt.Errorf("%s: check --datastore-endpoint and that the database server is running and accepts these credentials", msg)
		case <-ctx.Done():
			cancel()
			return nil, fmt.Errorf("%s: start-up interrupted: %w", s.Description, ctx.Err())
		}
	}
}

// sqliteSize is the size of the database file and its write-ahead log.
func sqliteSize(path string) int64 {
	return fileSize(path) + fileSize(path+"-wal")
}

// Stop closes the backend and waits up to timeout for its connections
// (and the SQLite file) to be released.
func (s *Store) Stop(timeout time.Duration) error {
	if s.Etcd != nil {
		return s.Etcd.Stop(timeout)
	}
	s.cancel()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("datastore did not close within %s", timeout)
	}
}
