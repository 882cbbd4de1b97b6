package netpol

import (
	"context"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
)

// Timing of the controller.
const (
	// Debounce gathers a burst of changes (a Deployment's Pods) into one apply.
	Debounce = 200 * time.Millisecond
	// Resync re-applies even without changes: it puts our jumps back in
	// front if another tool inserted rules before them.
	Resync = 30 * time.Second
	// retry is the wait after a failed apply.
	retry = 2 * time.Second
)

// Controller keeps this node's rules in step with the cluster.
type Controller struct {
	Client kubernetes.Interface
	Node   string
	Log    logrus.FieldLogger

	warned map[string]bool // events sent, by policy UID and message
}

// Run watches policies, Pods and Namespaces until ctx ends, applying after
// each burst of changes; ready is called after the first apply.
func (c *Controller) Run(ctx context.Context, ready func()) error {
	a, err := NewApplier()
	if err != nil {
		return err
	}
	defer a.Close()
	c.warned = map[string]bool{}

	bc := record.NewBroadcaster(record.WithContext(ctx))
	bc.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.Client.CoreV1().Events("")})
	defer bc.Shutdown()
	rec := bc.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "k1s-network-policy", Host: c.Node})

	f := informers.NewSharedInformerFactory(c.Client, 0)
	pods := f.Core().V1().Pods()
	// Keep only what the planner reads: a cluster's Pods are most of this
	// controller's memory.
	if err := pods.Informer().SetTransform(slimPod); err != nil {
		return err
	}
	nss := f.Core().V1().Namespaces()
	nps := f.Networking().V1().NetworkPolicies()
	changed := make(chan struct{}, 1)
	poke := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { poke() },
		UpdateFunc: func(any, any) { poke() },
		DeleteFunc: func(any) { poke() },
	}
	for _, inf := range []cache.SharedIndexInformer{pods.Informer(), nss.Informer(), nps.Informer()} {
		if _, err := inf.AddEventHandler(h); err != nil {
			return err
		}
	}
	f.Start(ctx.Done())
	defer f.Shutdown()
	for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
		if !ok {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("network policy: %v informer did not sync", typ)
		}
	}

	apply := func() error {
		in := Input{Node: c.Node}
		var err error
		if in.Policies, err = nps.Lister().List(labels.Everything()); err != nil {
			return err
		}
		if in.Pods, err = pods.Lister().List(labels.Everything()); err != nil {
			return err
		}
		if in.Namespaces, err = nss.Lister().List(labels.Everything()); err != nil {
			return err
		}
		p := Compute(in)
		for _, w := range p.Warnings {
			np, err := nps.Lister().NetworkPolicies(w.Namespace).Get(w.Name)
			if err != nil {
				continue
			}
			k := string(np.UID) + "\x00" + w.Message
			if !c.warned[k] {
				c.warned[k] = true
				c.Log.Warnf("NetworkPolicy %s/%s: %s", w.Namespace, w.Name, w.Message)
				rec.Event(np, corev1.EventTypeWarning, "PolicyNotEnforced", w.Message+" (the rest of the policy is enforced)")
			}
		}
		return a.Apply(p)
	}

	tick := time.NewTicker(Resync)
	defer tick.Stop()
	first := true
	var failed <-chan time.Time
	for {
		if err := apply(); err != nil {
			c.Log.Warnf("network policy rules not applied, retrying in %s: %v", retry, err)
			failed = time.After(retry)
		} else {
			failed = nil
			if first {
				first = false
				ready()
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
			// More changes within the debounce window join this apply.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(Debounce):
			}
			select {
			case <-changed:
			default:
			}
		case <-tick.C:
		case <-failed:
		}
	}
}

// slimPod drops what the planner does not read from a cached Pod.
func slimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	out := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID, Labels: p.Labels, ResourceVersion: p.ResourceVersion},
		Spec:       corev1.PodSpec{NodeName: p.Spec.NodeName, HostNetwork: p.Spec.HostNetwork},
		Status:     corev1.PodStatus{Phase: p.Status.Phase, PodIP: p.Status.PodIP, PodIPs: p.Status.PodIPs},
	}
	for _, ct := range p.Spec.Containers {
		if len(ct.Ports) > 0 {
			out.Spec.Containers = append(out.Spec.Containers, corev1.Container{Name: ct.Name, Ports: ct.Ports})
		}
	}
	return out, nil
}
