package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"

	"github.com/k1s-io/k1s/internal/etcd"
)

// Deleting a server's Node removes its embedded etcd member. A server on
// embedded etcd that runs a node marks its own Node with its member's
// name and peer URL and the finalizer etcd.NodeFinalizer (markOwnNode);
// every server on embedded etcd runs removeDeletedServers, which removes
// the member of a Node being deleted, then its finalizer. Every server
// runs it rather than the holder of the controllers lease only: a removal
// made twice finds no member the second time, which counts as done, and a
// server's own Node is left to the others (etcd.PlanRemoval), so that the
// member that stops is never the one that has to finish the job.

// memberRetry is how soon a refused removal is tried again.
const memberRetry = 30 * time.Second

// markOwnNode adds the member annotations and the finalizer to node when
// it appears, then waits for ctx (the supervisor counts a return as a
// failure).
func markOwnNode(ctx context.Context, kube kubernetes.Interface, node, name, peerURL string) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"annotations": map[string]string{etcd.NodeMemberNameAnnotation: name, etcd.NodePeerURLAnnotation: peerURL},
		"finalizers":  []string{etcd.NodeFinalizer}, // merged into the list (patchStrategy merge)
	}})
	if err != nil {
		return err
	}
	return patchOwnNode(ctx, kube, node, patch, func(n *corev1.Node) bool {
		// A Node being deleted may take no finalizer.
		return n.DeletionTimestamp != nil || marked(n, name, peerURL)
	})
}

func marked(n *corev1.Node, name, peerURL string) bool {
	return n.Annotations[etcd.NodeMemberNameAnnotation] == name && n.Annotations[etcd.NodePeerURLAnnotation] == peerURL &&
		slices.Contains(n.Finalizers, etcd.NodeFinalizer)
}

// pendingRemoval reports whether n is a server's Node being deleted whose
// member is still to be removed.
func pendingRemoval(n *corev1.Node) bool {
	return n.DeletionTimestamp != nil && slices.Contains(n.Finalizers, etcd.NodeFinalizer)
}

// memberRemover removes the members of deleted servers' Nodes.
type memberRemover struct {
	kube   kubernetes.Interface
	member *etcd.Member
	log    logrus.FieldLogger
	// refused remembers the last refusal per Node, logged once.
	refused map[string]string
}

// removeDeletedServers runs memberRemover until ctx ends.
func removeDeletedServers(ctx context.Context, kube kubernetes.Interface, member *etcd.Member, log logrus.FieldLogger) error {
	mr := &memberRemover{kube: kube, member: member, log: log, refused: map[string]string{}}
	factory := informers.NewSharedInformerFactory(kube, 0)
	nodes := factory.Core().V1().Nodes()
	queue := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	enqueue := func(obj any) {
		if n, ok := obj.(*corev1.Node); ok && pendingRemoval(n) {
			queue.Add(n.Name)
		}
	}
	if _, err := nodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	go func() { <-ctx.Done(); queue.ShutDown() }()
	cache.WaitForCacheSync(ctx.Done(), nodes.Informer().HasSynced)
	for {
		name, quit := queue.Get()
		if quit {
			return nil
		}
		n, err := nodes.Lister().Get(name)
		retryIn := time.Duration(0)
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			retryIn = memberRetry
		case pendingRemoval(n):
			retryIn = mr.handle(ctx, n)
		}
		queue.Forget(name)
		if retryIn > 0 && ctx.Err() == nil {
			queue.AddAfter(name, retryIn)
		}
		queue.Done(name)
	}
}

// handle removes n's member and then its finalizer; it returns how soon
// to try again (0: done, or not this server's to do).
func (mr *memberRemover) handle(ctx context.Context, n *corev1.Node) time.Duration {
	peerURL := n.Annotations[etcd.NodePeerURLAnnotation]
	if peerURL == "" {
		mr.log.Warnf("node %s is being deleted with finalizer %s but has no %s annotation: no etcd member to remove", n.Name, etcd.NodeFinalizer, etcd.NodePeerURLAnnotation)
		return mr.dropFinalizer(ctx, n.Name)
	}
	cli, err := mr.member.Client(ctx)
	if err != nil {
		mr.log.Warnf("node %s deleted: etcd client: %v", n.Name, err)
		return memberRetry
	}
	defer cli.Close()
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	list, err := cli.MemberList(lctx)
	cancel()
	if err != nil {
		mr.log.Warnf("node %s deleted, but the etcd member list is unavailable: %v (trying again in %s)", n.Name, err, memberRetry)
		return memberRetry
	}
	plan := etcd.PlanRemoval(list.Members, peerURL, mr.member.ID())
	switch plan.Action {
	case etcd.RemovalElsewhere:
		mr.log.Infof("node %s (this server) is being deleted: another server removes this server's etcd member %s, and this server then stops", n.Name, plan.Name)
		return 0
	case etcd.RemovalRefused:
		mr.refuse(n.Name, plan.Reason)
		return memberRetry
	case etcd.RemovalDone:
		mr.log.Infof("node %s deleted: no etcd member has its peer URL %s (removed already)", n.Name, peerURL)
	case etcd.RemoveMember:
		rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		resp, err := cli.MemberRemove(rctx, plan.ID)
		cancel()
		switch {
		case err == nil:
			mr.log.Infof("node %s deleted: removed its etcd member %s (%x); %d members left", n.Name, plan.Name, plan.ID, len(resp.Members))
		case errors.Is(err, rpctypes.ErrMemberNotFound) || strings.Contains(err.Error(), "member not found"):
			mr.log.Infof("node %s deleted: its etcd member %s (%x) is gone already", n.Name, plan.Name, plan.ID)
		case errors.Is(err, rpctypes.ErrUnhealthy) || errors.Is(err, rpctypes.ErrMemberNotEnoughStarted):
			mr.refuse(n.Name, fmt.Sprintf("etcd refuses to remove member %s (%x): %v: the other members would not keep a quorum of started, connected members (start the servers that are down first)", plan.Name, plan.ID, err))
			return memberRetry
		default:
			mr.log.Warnf("node %s deleted, but removing its etcd member %s (%x) failed: %v (trying again in %s)", n.Name, plan.Name, plan.ID, err, memberRetry)
			return memberRetry
		}
	}
	return mr.dropFinalizer(ctx, n.Name)
}

// refuse logs why node's member stays, once per reason.
func (mr *memberRemover) refuse(node, reason string) {
	if mr.refused[node] == reason {
		return
	}
	mr.refused[node] = reason
	mr.log.Warnf("node %s is being deleted, but its etcd member stays: %s. The Node stays (Terminating) with finalizer %s; k1s tries again every %s. To delete the Node and keep the member: kubectl patch node %s --type=merge -p '{\"metadata\":{\"finalizers\":null}}'",
		node, reason, etcd.NodeFinalizer, memberRetry, node)
}

// dropFinalizer removes etcd.NodeFinalizer from node, letting its deletion
// finish.
func (mr *memberRemover) dropFinalizer(ctx context.Context, node string) time.Duration {
	delete(mr.refused, node)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := mr.kube.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return err
		}
		i := slices.Index(n.Finalizers, etcd.NodeFinalizer)
		if i < 0 {
			return nil
		}
		n.Finalizers = slices.Delete(n.Finalizers, i, i+1)
		_, err = mr.kube.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
		return err
	})
	if err != nil && !apierrors.IsNotFound(err) {
		mr.log.Warnf("node %s: removing finalizer %s: %v (trying again in %s)", node, etcd.NodeFinalizer, err, memberRetry)
		return memberRetry
	}
	return 0
}
