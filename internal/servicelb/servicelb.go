// Package servicelb is k1s's service load balancer. It owns the
// status.loadBalancer of Services of type LoadBalancer that set no
// loadBalancerClass: it writes the addresses of the Ready nodes there, and
// kube-proxy, which programs rules for every ingress IP, carries the
// traffic. No pods and no extra data path are involved. Because every such
// Service shares the same node IPs, each (port, protocol) goes to one
// Service: the oldest holds it, later ones stay pending with a PortInUse
// event.
package servicelb

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
)

const (
	component      = "k1s-servicelb"
	reasonPortUsed = "PortInUse"
	// resync re-checks everything now and then in case a status was
	// changed behind our back without an event we act on.
	resync = 10 * time.Minute
)

type controller struct {
	kube     kubernetes.Interface
	log      logrus.FieldLogger
	services corelisters.ServiceLister
	nodes    corelisters.NodeLister
	queue    workqueue.TypedRateLimitingInterface[string]
	recorder record.EventRecorder

	// warned holds the last PortInUse message sent per Service, so the
	// event is emitted once per change, not on every sync. Only the single
	// worker touches it.
	warned map[string]string

	reserved map[string]string
}

// Run assigns node IPs to LoadBalancer Services until ctx is done, then
// returns nil. reserved ports ("6443/TCP" → "the kube-apiserver") are
// refused to every Service.
func Run(ctx context.Context, kube kubernetes.Interface, log logrus.FieldLogger, reserved map[string]string) error {
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	defer broadcaster.Shutdown()
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})

	factory := informers.NewSharedInformerFactory(kube, resync)
	defer factory.Shutdown() // waits for the informer goroutines

	c := &controller{
		kube:     kube,
		log:      log,
		services: factory.Core().V1().Services().Lister(),
		nodes:    factory.Core().V1().Nodes().Lister(),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			// Fast retries for update conflicts, capped so a long apiserver
			// outage doesn't push retries out for many minutes.
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](10*time.Millisecond, time.Minute),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: component}),
		recorder: broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: component}),
		warned:   map[string]string{},
		reserved: reserved,
	}
	defer c.queue.ShutDown()

	if _, err := factory.Core().V1().Services().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.serviceChanged,
		UpdateFunc: c.serviceUpdated,
		DeleteFunc: c.serviceChanged,
	}); err != nil {
		return fmt.Errorf("servicelb: watch services: %w", err)
	}
	if _, err := factory.Core().V1().Nodes().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { c.enqueueAll() },
		UpdateFunc: func(old, cur any) {
			o, ok1 := old.(*corev1.Node)
			n, ok2 := cur.(*corev1.Node)
			if ok1 && ok2 && nodeSignature(o) == nodeSignature(n) {
				return // heartbeat or unrelated change
			}
			c.enqueueAll()
		},
		DeleteFunc: func(any) { c.enqueueAll() },
	}); err != nil {
		return fmt.Errorf("servicelb: watch nodes: %w", err)
	}

	factory.Start(ctx.Done())
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("servicelb: cache for %v did not sync", typ)
		}
	}
	log.Info("Service load balancer started")

	// One worker: plan() looks at all Services anyway, and it keeps warned
	// free of locking.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		wait.UntilWithContext(ctx, c.worker, time.Second)
	}()
	<-ctx.Done()
	c.queue.ShutDown()
	wg.Wait()
	return nil
}

func (c *controller) serviceChanged(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	svc, ok := obj.(*corev1.Service)
	if !ok || !ours(svc) {
		return
	}
	// The changed Service itself is queued too: after a delete it is no
	// longer in the lister, and its warned entry must be dropped.
	c.queue.Add(key(svc))
	c.enqueueAll()
}

func (c *controller) serviceUpdated(old, cur any) {
	o, ok1 := old.(*corev1.Service)
	n, ok2 := cur.(*corev1.Service)
	if !ok1 || !ok2 || (!ours(o) && !ours(n)) {
		return
	}
	// A Service that stops being ours frees its ports for the others.
	c.queue.Add(key(n))
	c.enqueueAll()
}

// enqueueAll queues every Service we own: a change to one Service or node
// can give or take ports and IPs from all of them.
func (c *controller) enqueueAll() {
	all, err := c.services.List(labels.Everything())
	if err != nil {
		c.log.WithError(err).Error("Service load balancer: listing services")
		return
	}
	for _, s := range all {
		if ours(s) {
			c.queue.Add(key(s))
		}
	}
}

func (c *controller) worker(ctx context.Context) {
	for c.next(ctx) {
	}
}

func (c *controller) next(ctx context.Context) bool {
	k, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(k)
	if err := c.sync(ctx, k); err != nil {
		switch {
		case ctx.Err() != nil:
		case apierrors.IsConflict(err):
			// Normal: our cached copy was stale; the retry reads a newer one.
			c.log.WithField("service", k).Debug("Service load balancer: status conflict, retrying")
		default:
			c.log.WithError(err).WithField("service", k).Warn("Service load balancer: will retry")
		}
		c.queue.AddRateLimited(k)
		return true
	}
	c.queue.Forget(k)
	return true
}

func (c *controller) sync(ctx context.Context, k string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(k)
	if err != nil {
		return nil // not a key we made; retrying can't help
	}
	svc, err := c.services.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		delete(c.warned, k)
		return nil
	}
	if err != nil {
		return err
	}
	if !ours(svc) {
		// Not ours any more; whatever status it has is left alone.
		delete(c.warned, k)
		return nil
	}

	services, err := c.services.List(labels.Everything())
	if err != nil {
		return err
	}
	nodes, err := c.nodes.List(labels.Everything())
	if err != nil {
		return err
	}
	res, ok := planWith(services, nodes, c.reserved)[k]
	if !ok {
		return nil
	}

	log := c.log.WithField("service", k)
	if res.conflict != "" {
		if c.warned[k] != res.conflict {
			c.warned[k] = res.conflict
			c.recorder.Event(svc, corev1.EventTypeWarning, reasonPortUsed, res.conflict)
			log.Warn("Service load balancer: " + res.conflict)
		}
	} else if _, was := c.warned[k]; was {
		delete(c.warned, k)
		log.Info("Service load balancer: ports are free now")
	}

	want := ingress(res.ips)
	if sameIngress(svc.Status.LoadBalancer.Ingress, want) {
		return nil
	}
	upd := svc.DeepCopy()
	upd.Status.LoadBalancer.Ingress = want
	if _, err := c.kube.CoreV1().Services(ns).UpdateStatus(ctx, upd, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("update status: %w", err)
	}
	log.WithField("ingress", res.ips).Info("Service load balancer: updated ingress")
	return nil
}

func ingress(ips []string) []corev1.LoadBalancerIngress {
	if len(ips) == 0 {
		return nil
	}
	out := make([]corev1.LoadBalancerIngress, len(ips))
	for i, ip := range ips {
		mode := corev1.LoadBalancerIPModeVIP
		out[i] = corev1.LoadBalancerIngress{IP: ip, IPMode: &mode}
	}
	return out
}

// sameIngress compares exactly what we write; any other field set by
// someone else counts as a difference, since the Service is ours.
func sameIngress(have, want []corev1.LoadBalancerIngress) bool {
	if len(have) != len(want) {
		return false
	}
	for i := range have {
		h, w := have[i], want[i]
		if h.IP != w.IP || h.Hostname != "" || len(h.Ports) != 0 ||
			h.IPMode == nil || *h.IPMode != *w.IPMode {
			return false
		}
	}
	return true
}
