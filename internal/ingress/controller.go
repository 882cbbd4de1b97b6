package ingress

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"net/http/httputil"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	networkingv1client "k8s.io/client-go/kubernetes/typed/networking/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/k1s-io/k1s/internal/selfsigned"
)

// Options configure a Controller. Zero values take the defaults.
type Options struct {
	HTTPAddr   string // plain HTTP proxy; default ":8000"
	HTTPSAddr  string // TLS proxy; default ":8443"
	HealthAddr string // /healthz and /readyz; default ":9000"
	// PublishService is the "namespace/name" of the Service whose
	// status.loadBalancer is copied to the Ingresses; empty disables
	// status updates.
	PublishService string
	// Resolve gives the address to dial for a Service port; default
	// DefaultResolve (ClusterIP:port).
	Resolve ResolveFunc
	// Debounce is how long a rebuild waits for more events; default 200ms.
	Debounce time.Duration
	// ShutdownTimeout bounds the graceful shutdown of the servers; default
	// 10s.
	ShutdownTimeout time.Duration
	// Log defaults to the logrus standard logger.
	Log logrus.FieldLogger
}

// Client is what the controller uses of the API. A kubernetes.Interface is
// one; k1s-ingress builds only these two typed clients, which keeps every
// other API group's client out of its binary.
type Client interface {
	CoreV1() corev1client.CoreV1Interface
	NetworkingV1() networkingv1client.NetworkingV1Interface
}

// Controller watches the API and serves the Ingresses of class
// ControllerName.
type Controller struct {
	client  Client
	opts    Options
	log     logrus.FieldLogger
	pubNS   string
	pubName string

	ingresses, classes, services, secrets cache.SharedIndexInformer

	table    atomic.Pointer[Table]
	ready    atomic.Bool
	fallback *tls.Certificate
	proxy    *httputil.ReverseProxy
	kick     chan struct{}
	certs    *certCache
	warned   map[string]bool
	pubGone  bool // the publish Service was missing at the last rebuild

	listenMu                  sync.Mutex
	httpLn, httpsLn, healthLn net.Listener
}

// New makes a controller; it does nothing until Run.
func New(client Client, opts Options) (*Controller, error) {
	if opts.HTTPAddr == "" {
		opts.HTTPAddr = ":8000"
	}
	if opts.HTTPSAddr == "" {
		opts.HTTPSAddr = ":8443"
	}
	if opts.HealthAddr == "" {
		opts.HealthAddr = ":9000"
	}
	if opts.Resolve == nil {
		opts.Resolve = DefaultResolve
	}
	if opts.Debounce <= 0 {
		opts.Debounce = 200 * time.Millisecond
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = 10 * time.Second
	}
	if opts.Log == nil {
		opts.Log = logrus.StandardLogger()
	}
	c := &Controller{
		client: client,
		opts:   opts,
		log:    opts.Log,
		kick:   make(chan struct{}, 1),
		certs:  newCertCache(),
		warned: map[string]bool{},
	}
	if opts.PublishService != "" {
		ns, name, ok := strings.Cut(opts.PublishService, "/")
		if !ok || ns == "" || name == "" {
			return nil, fmt.Errorf("publish service %q: want namespace/name", opts.PublishService)
		}
		c.pubNS, c.pubName = ns, name
	}
	var err error
	if c.fallback, err = selfsigned.New(FallbackCommonName, nil, time.Now(), 10*365*24*time.Hour); err != nil {
		return nil, fmt.Errorf("generating the fallback certificate: %w", err)
	}
	c.proxy = newReverseProxy(c.log)

	net1 := client.NetworkingV1()
	core := client.CoreV1()
	c.ingresses = newInformer(client, &networkingv1.Ingress{},
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return net1.Ingresses("").List(ctx, o)
		},
		func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return net1.Ingresses("").Watch(ctx, o)
		})
	c.classes = newInformer(client, &networkingv1.IngressClass{},
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return net1.IngressClasses().List(ctx, o)
		},
		func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return net1.IngressClasses().Watch(ctx, o)
		})
	c.services = newInformer(client, &corev1.Service{},
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return core.Services("").List(ctx, o)
		},
		func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return core.Services("").Watch(ctx, o)
		})
	tlsOnly := "type=" + string(corev1.SecretTypeTLS)
	c.secrets = newInformer(client, &corev1.Secret{},
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = tlsOnly
			return core.Secrets("").List(ctx, o)
		},
		func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = tlsOnly
			return core.Secrets("").Watch(ctx, o)
		})
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.trigger() },
		UpdateFunc: func(any, any) { c.trigger() },
		DeleteFunc: func(any) { c.trigger() },
	}
	for _, inf := range c.informers() {
		if _, err := inf.AddEventHandler(handler); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func newInformer(client Client, example runtime.Object,
	list func(context.Context, metav1.ListOptions) (runtime.Object, error),
	watchFn func(context.Context, metav1.ListOptions) (watch.Interface, error),
) cache.SharedIndexInformer {
	lw := &cache.ListWatch{ListWithContextFunc: list, WatchFuncWithContext: watchFn}
	inf := cache.NewSharedIndexInformerWithOptions(
		cache.ToListWatcherWithWatchListSemantics(lw, client), example, cache.SharedIndexInformerOptions{})
	// Keep the cache small: managed fields and kubectl's copy of the last
	// applied object (for Secrets, a second copy of the key) are never read.
	_ = inf.SetTransform(func(obj any) (any, error) {
		if m, ok := obj.(metav1.Object); ok {
			m.SetManagedFields(nil)
			if a := m.GetAnnotations(); a != nil {
				delete(a, corev1.LastAppliedConfigAnnotation)
			}
		}
		return obj, nil
	})
	return inf
}

func (c *Controller) informers() []cache.SharedIndexInformer {
	return []cache.SharedIndexInformer{c.ingresses, c.classes, c.services, c.secrets}
}

// trigger asks for a rebuild; it never blocks.
func (c *Controller) trigger() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// Table is the routing table in use, nil before the first build.
func (c *Controller) Table() *Table { return c.table.Load() }

// Ready reports whether the informers have synced and the first table is
// built.
func (c *Controller) Ready() bool { return c.ready.Load() }

// Listen binds the three ports; Run calls it when it has not been called.
// Binding early lets a caller learn the addresses of ":0" ports.
func (c *Controller) Listen() error {
	c.listenMu.Lock()
	defer c.listenMu.Unlock()
	if c.httpLn != nil {
		return nil
	}
	var lns []net.Listener
	for _, addr := range []string{c.opts.HTTPAddr, c.opts.HTTPSAddr, c.opts.HealthAddr} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return err
		}
		lns = append(lns, ln)
	}
	c.httpLn, c.httpsLn, c.healthLn = lns[0], lns[1], lns[2]
	return nil
}

// Addrs are the bound HTTP, HTTPS and health addresses (nil before Listen).
func (c *Controller) Addrs() (httpAddr, httpsAddr, healthAddr net.Addr) {
	c.listenMu.Lock()
	defer c.listenMu.Unlock()
	if c.httpLn == nil {
		return nil, nil, nil
	}
	return c.httpLn.Addr(), c.httpsLn.Addr(), c.healthLn.Addr()
}

// Run serves until ctx is cancelled, then shuts the servers down
// gracefully (within Options.ShutdownTimeout). It returns an error when a
// port cannot be bound or a server fails. Call it once.
func (c *Controller) Run(ctx context.Context) error {
	if err := c.Listen(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// The servers' own errors (TLS handshakes of scanners, ...) are debug.
	errLog := stdlog.New(debugWriter{c.log}, "", 0)
	health := &http.Server{Handler: c.healthHandler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: errLog}
	plain := &http.Server{Handler: c, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, ErrorLog: errLog}
	secure := &http.Server{
		Handler:           c,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          errLog,
		TLSConfig: &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: c.getCertificate,
		},
	}
	servers := []*http.Server{health, plain, secure}
	errCh := make(chan error, len(servers))
	serve := func(name string, f func() error) {
		if err := f(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errCh <- fmt.Errorf("%s server: %w", name, err)
		}
	}
	var serving sync.WaitGroup
	serving.Add(3)
	go func() { defer serving.Done(); serve("health", func() error { return health.Serve(c.healthLn) }) }()
	go func() { defer serving.Done(); serve("http", func() error { return plain.Serve(c.httpLn) }) }()
	go func() {
		defer serving.Done()
		serve("https", func() error { return secure.ServeTLS(c.httpsLn, "", "") })
	}()

	var watching sync.WaitGroup
	for _, inf := range c.informers() {
		watching.Add(1)
		go func() { defer watching.Done(); inf.RunWithContext(ctx) }()
	}
	c.log.Info("ingress controller: waiting for informer caches")
	synced := make(chan bool, 1)
	go func() {
		synced <- cache.WaitForCacheSync(ctx.Done(),
			c.ingresses.HasSynced, c.classes.HasSynced, c.services.HasSynced, c.secrets.HasSynced)
	}()

	var runErr error
	select {
	case ok := <-synced:
		if ok {
			select {
			case <-c.kick: // the initial adds; the build below covers them
			default:
			}
			c.rebuild(ctx)
			c.ready.Store(true)
			c.log.Infof("ingress controller ready: http %s, https %s, health %s",
				c.httpLn.Addr(), c.httpsLn.Addr(), c.healthLn.Addr())
			watching.Add(1)
			go func() { defer watching.Done(); c.loop(ctx) }()
			select {
			case <-ctx.Done():
			case runErr = <-errCh:
			}
		}
	case runErr = <-errCh:
	}

	c.ready.Store(false)
	c.log.Info("ingress controller: shutting down")
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.ShutdownTimeout)
	defer scancel()
	var shut sync.WaitGroup
	for _, s := range servers {
		shut.Add(1)
		go func() {
			defer shut.Done()
			if err := s.Shutdown(sctx); err != nil {
				s.Close()
			}
		}()
	}
	shut.Wait()
	serving.Wait()
	cancel()
	watching.Wait()
	return runErr
}

// loop rebuilds the table after events, at most once per Debounce.
func (c *Controller) loop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
		}
		t := time.NewTimer(c.opts.Debounce)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		select { // events during the wait are covered by this build
		case <-c.kick:
		default:
		}
		c.rebuild(ctx)
	}
}

func listOf[T any](inf cache.SharedIndexInformer) []T {
	objs := inf.GetStore().List()
	out := make([]T, 0, len(objs))
	for _, o := range objs {
		if t, ok := o.(T); ok {
			out = append(out, t)
		}
	}
	return out
}

// rebuild builds a table from the informer caches, swaps it in, logs and
// updates the Ingresses' status.
func (c *Controller) rebuild(ctx context.Context) {
	snap := Snapshot{
		Ingresses:      listOf[*networkingv1.Ingress](c.ingresses),
		IngressClasses: listOf[*networkingv1.IngressClass](c.classes),
		Services:       listOf[*corev1.Service](c.services),
		Secrets:        listOf[*corev1.Secret](c.secrets),
	}
	t := build(snap, c.opts.Resolve, c.certs)
	c.certs.commit()
	c.table.Store(t)

	c.log.Infof("serving %d Ingresses, %d hosts", len(t.ingresses), t.Hosts())
	// Warn once per problem, not on every rebuild.
	now := map[string]bool{}
	for _, w := range t.warnings {
		if !c.warned[w] {
			c.log.Warn(w)
		}
		now[w] = true
	}
	c.warned = now

	if c.pubName != "" {
		c.updateStatus(ctx, t)
	}
}

// updateStatus copies the published Service's load balancer status to the
// served Ingresses whose status differs.
func (c *Controller) updateStatus(ctx context.Context, t *Table) {
	obj, exists, err := c.services.GetStore().GetByKey(c.pubNS + "/" + c.pubName)
	if err != nil || !exists {
		if !c.pubGone {
			c.log.Warnf("publish service %s/%s not found; not updating Ingress status", c.pubNS, c.pubName)
		}
		c.pubGone = true
		return
	}
	c.pubGone = false
	want := ingressLBStatus(obj.(*corev1.Service))
	failed := false
	for _, ing := range t.ingresses {
		if equality.Semantic.DeepEqual(ing.Status.LoadBalancer.Ingress, want) {
			continue
		}
		cp := ing.DeepCopy()
		cp.Status.LoadBalancer.Ingress = want
		if _, err := c.client.NetworkingV1().Ingresses(cp.Namespace).UpdateStatus(ctx, cp, metav1.UpdateOptions{}); err != nil {
			if ctx.Err() != nil {
				return
			}
			c.log.Warnf("ingress %s/%s: updating status: %v", cp.Namespace, cp.Name, err)
			failed = true
			continue
		}
		c.log.Debugf("ingress %s/%s: status set to %s", cp.Namespace, cp.Name, lbString(want))
	}
	if failed {
		time.AfterFunc(5*time.Second, c.trigger)
	}
}

func ingressLBStatus(svc *corev1.Service) []networkingv1.IngressLoadBalancerIngress {
	var out []networkingv1.IngressLoadBalancerIngress
	for _, lb := range svc.Status.LoadBalancer.Ingress {
		in := networkingv1.IngressLoadBalancerIngress{IP: lb.IP, Hostname: lb.Hostname}
		for _, p := range lb.Ports {
			in.Ports = append(in.Ports, networkingv1.IngressPortStatus{Port: p.Port, Protocol: p.Protocol, Error: p.Error})
		}
		out = append(out, in)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].IP != out[j].IP {
			return out[i].IP < out[j].IP
		}
		return out[i].Hostname < out[j].Hostname
	})
	return out
}

// getCertificate picks the certificate for a TLS handshake by SNI.
func (c *Controller) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if t := c.table.Load(); t != nil {
		if cert := t.Certificate(hello.ServerName); cert != nil {
			return cert, nil
		}
	}
	return c.fallback, nil
}

func lbString(lbs []networkingv1.IngressLoadBalancerIngress) string {
	var addrs []string
	for _, lb := range lbs {
		if lb.IP != "" {
			addrs = append(addrs, lb.IP)
		} else {
			addrs = append(addrs, lb.Hostname)
		}
	}
	return "[" + strings.Join(addrs, " ") + "]"
}

type debugWriter struct{ log logrus.FieldLogger }

func (w debugWriter) Write(p []byte) (int, error) {
	w.log.Debug(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
