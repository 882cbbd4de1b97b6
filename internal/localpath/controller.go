package localpath

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/k1s-io/k1s/internal/localpath/volumedir"
)

const (
	component = "k1s-local-path"
	resync    = 10 * time.Minute
	// Queue keys: "claim/<ns>/<name>" and "volume/<name>".
	claimKey  = "claim/"
	volumeKey = "volume/"
)

// helperTimeout bounds one helper Pod, image start included (a variable
// for the unit tests).
var helperTimeout = 2 * time.Minute

type controller struct {
	cfg      Config
	kube     kubernetes.Interface
	log      logrus.FieldLogger
	claims   corelisters.PersistentVolumeClaimLister
	volumes  corelisters.PersistentVolumeLister
	classes  storagelisters.StorageClassLister
	queue    workqueue.TypedRateLimitingInterface[string]
	recorder record.EventRecorder
}

// Run provisions and deletes local-path volumes until ctx is done, then
// returns nil. kube should act as User (see manifests/local-storage.yaml).
func Run(ctx context.Context, kube kubernetes.Interface, log logrus.FieldLogger, cfg Config) error {
	if _, err := volumedir.Path(cfg.Root, "check"); err != nil {
		return fmt.Errorf("local-path: %w", err) // config.Validate should have caught it
	}
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	defer broadcaster.Shutdown()
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})

	factory := informers.NewSharedInformerFactory(kube, resync)
	defer factory.Shutdown()
	c := &controller{
		cfg:     cfg,
		kube:    kube,
		log:     log,
		claims:  factory.Core().V1().PersistentVolumeClaims().Lister(),
		volumes: factory.Core().V1().PersistentVolumes().Lister(),
		classes: factory.Storage().V1().StorageClasses().Lister(),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			// A disk that is full now may have room later: keep retrying,
			// but no faster than every few minutes in the end.
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](time.Second, 5*time.Minute),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: component}),
		recorder: broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: component}),
	}
	defer c.queue.ShutDown()

	add := func(prefix string) cache.ResourceEventHandlerFuncs {
		enqueue := func(obj any) {
			if key, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
				c.queue.Add(prefix + key)
			}
		}
		return cache.ResourceEventHandlerFuncs{AddFunc: enqueue, UpdateFunc: func(_, cur any) { enqueue(cur) }}
	}
	if _, err := factory.Core().V1().PersistentVolumeClaims().Informer().AddEventHandler(add(claimKey)); err != nil {
		return err
	}
	if _, err := factory.Core().V1().PersistentVolumes().Informer().AddEventHandler(add(volumeKey)); err != nil {
		return err
	}
	factory.Storage().V1().StorageClasses().Informer()
	factory.Start(ctx.Done())
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("local-path: cache for %v did not sync", typ)
		}
	}
	log.Infof("local-path provisioner started (volumes under %s on each node)", cfg.Root)

	// Two workers: one slow helper Pod (an image not yet imported) must not
	// hold up every other claim.
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for c.next(ctx) {
			}
		})
	}
	<-ctx.Done()
	c.queue.ShutDown()
	wg.Wait()
	return nil
}

func isRefusal(err error) bool {
	var r *Refusal
	return errors.As(err, &r)
}

func (c *controller) next(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	var err error
	switch {
	case strings.HasPrefix(key, claimKey):
		err = c.syncClaim(ctx, strings.TrimPrefix(key, claimKey))
	case strings.HasPrefix(key, volumeKey):
		err = c.syncVolume(ctx, strings.TrimPrefix(key, volumeKey))
	}
	if err != nil && ctx.Err() == nil {
		c.log.Warnf("%s: %v (retrying)", key, err)
		c.queue.AddRateLimited(key)
		return true
	}
	c.queue.Forget(key)
	return true
}

func (c *controller) syncClaim(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	claim, err := c.claims.PersistentVolumeClaims(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if claim.Spec.StorageClassName == nil || *claim.Spec.StorageClassName == "" {
		return nil
	}
	class, err := c.classes.Get(*claim.Spec.StorageClassName)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	node, ok := Wanted(claim, class)
	if !ok {
		return nil
	}
	if _, err := c.volumes.Get(VolumeName(claim)); err == nil {
		return nil // made already; the PV controller binds it
	}
	var hostname string
	n, err := c.kube.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		c.fail(claim, fmt.Sprintf("node %s, chosen for this claim, does not exist", node))
		return nil
	case err != nil:
		return err
	default:
		hostname = n.Labels[corev1.LabelHostname]
	}
	pv, err := Plan(c.cfg, claim, class, node, hostname)
	if isRefusal(err) {
		c.fail(claim, err.Error())
		return nil // the claim must change (or be replaced) first
	}
	if err != nil {
		return err
	}
	size := pv.Spec.Capacity[corev1.ResourceStorage]
	if err := c.runHelper(ctx, HelperPod(c.cfg, OpCreate, node, pv.Name, size.Value())); err != nil {
		msg := fmt.Sprintf("node %s: volume %s %v", node, pv.Name, err)
		c.fail(claim, msg)
		return errors.New(msg)
	}
	if _, err := c.kube.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create PV %s: %w", pv.Name, err)
	}
	c.log.Infof("provisioned %s for claim %s on node %s (%s)", pv.Name, key, node, pv.Spec.HostPath.Path)
	c.recorder.Eventf(claim, corev1.EventTypeNormal, "ProvisioningSucceeded",
		"Successfully provisioned volume %s: %s on node %s", pv.Name, pv.Spec.HostPath.Path, node)
	return nil
}

func (c *controller) fail(claim *corev1.PersistentVolumeClaim, msg string) {
	c.recorder.Event(claim, corev1.EventTypeWarning, "ProvisioningFailed", msg)
}

func (c *controller) syncVolume(ctx context.Context, name string) error {
	pv, err := c.volumes.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	node, ok := ToDelete(pv)
	if !ok {
		return nil
	}
	if _, err := c.kube.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		// The node (and its disk) is gone from the cluster: nothing to run
		// a helper on. The directory, if the host comes back, stays.
		c.log.Warnf("volume %s: node %q no longer exists; deleting the PV, its directory %s stays on that host", name, node, pv.Spec.HostPath.Path)
	} else if err != nil {
		return err
	} else if err := c.runHelper(ctx, HelperPod(c.cfg, OpDelete, node, pv.Name, 0)); err != nil {
		msg := fmt.Sprintf("node %s: removing the directory of volume %s: %v", node, pv.Name, err)
		c.recorder.Event(pv, corev1.EventTypeWarning, "VolumeFailedDelete", msg)
		return errors.New(msg)
	}
	err = c.kube.CoreV1().PersistentVolumes().Delete(ctx, name, metav1.DeleteOptions{
		Preconditions: &metav1.Preconditions{UID: &pv.UID},
	})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete PV %s: %w", name, err)
	}
	c.log.Infof("deleted volume %s and its directory on node %s", name, node)
	return nil
}

// runHelper runs pod to completion and removes it. A failure returns the
// helper's message (its termination message) or why it did not run.
func (c *controller) runHelper(ctx context.Context, pod *corev1.Pod) error {
	pods := c.kube.CoreV1().Pods(pod.Namespace)
	// One left over from a k1s that stopped mid-way would block the name.
	if err := c.deletePod(ctx, pod.Name); err != nil {
		return err
	}
	if _, err := pods.Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating helper Pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	defer func() {
		// Its own context: the helper must go even when ctx ended.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := c.deletePod(dctx, pod.Name); err != nil {
			c.log.Warnf("helper Pod %s/%s: %v", pod.Namespace, pod.Name, err)
		}
	}()
	var last *corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, helperTimeout, true, func(ctx context.Context) (bool, error) {
		p, err := pods.Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil // transient; the timeout bounds it
		}
		last = p
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed, nil
	})
	if err != nil {
		return fmt.Errorf("helper Pod %s/%s did not finish within %s: %s", pod.Namespace, pod.Name, helperTimeout, waiting(last))
	}
	if last.Status.Phase == corev1.PodSucceeded {
		return nil
	}
	for _, s := range last.Status.ContainerStatuses {
		if t := s.State.Terminated; t != nil && t.Message != "" {
			return errors.New(strings.TrimSpace(t.Message))
		}
	}
	return fmt.Errorf("helper Pod %s/%s failed: %s", pod.Namespace, pod.Name, last.Status.Message)
}

// waiting says what a helper Pod that did not finish was stuck on.
func waiting(p *corev1.Pod) string {
	if p == nil {
		return "it could not be read"
	}
	for _, s := range p.Status.ContainerStatuses {
		if w := s.State.Waiting; w != nil {
			return fmt.Sprintf("container %s: %s %s (is the local-path helper image in the node's air-gap bundle?)", s.Name, w.Reason, w.Message)
		}
	}
	return fmt.Sprintf("phase %s", p.Status.Phase)
}

// deletePod deletes a helper Pod and waits until it is gone.
func (c *controller) deletePod(ctx context.Context, name string) error {
	pods := c.kube.CoreV1().Pods(c.cfg.Namespace)
	zero := int64(0)
	err := pods.Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("deleting helper Pod %s: %w", name, err)
	}
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := pods.Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}
