// Package nodehosts keeps the NodeHosts key of the kube-system/coredns
// ConfigMap equal to one "<InternalIP> <node name>" line per node address
// (nodes sorted by name, IPv4 and IPv6 alike), so that Pods can resolve node
// names through CoreDNS's hosts plugin.
//
// It changes only that key, with a JSON merge patch: the other keys belong to
// the deploy applier (server-side apply), and the patch leaves them alone. If
// the ConfigMap does not exist (CoreDNS disabled), it does nothing.
package nodehosts

import (
	"context"
	"encoding/json"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

const (
	// Namespace and ConfigMap name the ConfigMap that CoreDNS reads.
	Namespace = "kube-system"
	ConfigMap = "coredns"
	// Key is the ConfigMap key that holds the hosts file.
	Key = "NodeHosts"
	// FieldManager is the field manager of the patches.
	FieldManager = "k1s-nodehosts"
)

// retry delays after a failed patch.
const (
	minRetry = 500 * time.Millisecond
	maxRetry = 30 * time.Second
)

// Run watches Nodes and the CoreDNS ConfigMap and updates the ConfigMap's
// NodeHosts key whenever it differs from what the nodes say. It returns nil
// when ctx is done.
func Run(ctx context.Context, kube kubernetes.Interface, log logrus.FieldLogger) error {
	if log == nil {
		log = logrus.StandardLogger()
	}
	nodeFactory := informers.NewSharedInformerFactory(kube, 0)
	cmFactory := informers.NewSharedInformerFactoryWithOptions(kube, 0,
		informers.WithNamespace(Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", ConfigMap).String()
		}))
	nodes := nodeFactory.Core().V1().Nodes()
	cms := cmFactory.Core().V1().ConfigMaps()

	kick := make(chan struct{}, 1)
	poke := func() {
		select {
		case kick <- struct{}{}:
		default: // a sync is already pending
		}
	}
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { poke() },
		UpdateFunc: func(any, any) { poke() },
		DeleteFunc: func(any) { poke() },
	}
	if _, err := nodes.Informer().AddEventHandler(handler); err != nil {
		return err
	}
	if _, err := cms.Informer().AddEventHandler(handler); err != nil {
		return err
	}
	nodeFactory.Start(ctx.Done())
	cmFactory.Start(ctx.Done())
	defer nodeFactory.Shutdown()
	defer cmFactory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), nodes.Informer().HasSynced, cms.Informer().HasSynced) {
		return nil // ctx done
	}
	poke()

	delay := minRetry
	var retry *time.Timer
	defer func() {
		if retry != nil {
			retry.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-kick:
		}
		err := sync(ctx, kube, nodes.Lister().List, func() (*corev1.ConfigMap, error) {
			return cms.Lister().ConfigMaps(Namespace).Get(ConfigMap)
		}, log)
		if err == nil {
			delay = minRetry
			continue
		}
		if ctx.Err() != nil {
			return nil
		}
		log.Warnf("Cannot update %s in %s/%s, retrying in %v: %v", Key, Namespace, ConfigMap, delay, err)
		if retry != nil {
			retry.Stop()
		}
		retry = time.AfterFunc(delay, poke)
		delay = min(delay*2, maxRetry)
	}
}

func sync(ctx context.Context, kube kubernetes.Interface,
	listNodes func(labels.Selector) ([]*corev1.Node, error),
	getConfigMap func() (*corev1.ConfigMap, error),
	log logrus.FieldLogger) error {
	cm, err := getConfigMap()
	if apierrors.IsNotFound(err) {
		return nil // CoreDNS is not deployed: nothing to do
	}
	if err != nil {
		return err
	}
	list, err := listNodes(labels.Everything())
	if err != nil {
		return err
	}
	want := Hosts(list)
	if have, ok := cm.Data[Key]; ok && have == want {
		return nil
	}
	patch, err := json.Marshal(map[string]any{"data": map[string]string{Key: want}})
	if err != nil {
		return err
	}
	_, err = kube.CoreV1().ConfigMaps(Namespace).Patch(ctx, ConfigMap, types.MergePatchType, patch,
		metav1.PatchOptions{FieldManager: FieldManager})
	if apierrors.IsNotFound(err) {
		return nil // deleted meanwhile: CoreDNS was disabled
	}
	if err != nil {
		return err
	}
	log.Infof("Updated %s in %s/%s: %d nodes", Key, Namespace, ConfigMap, len(list))
	return nil
}

// Hosts renders the hosts file for nodes: one "<ip> <name>" line for each
// InternalIP address of each node, nodes sorted by name, addresses in the
// order the node lists them. A node without a valid InternalIP gets no line.
func Hosts(nodes []*corev1.Node) string {
	sorted := append([]*corev1.Node(nil), nodes...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	var b strings.Builder
	for _, n := range sorted {
		seen := map[string]bool{}
		for _, a := range n.Status.Addresses {
			if a.Type != corev1.NodeInternalIP {
				continue
			}
			ip := net.ParseIP(strings.TrimSpace(a.Address))
			if ip == nil || seen[ip.String()] {
				continue
			}
			seen[ip.String()] = true
			b.WriteString(ip.String())
			b.WriteByte(' ')
			b.WriteString(n.Name)
			b.WriteByte('\n')
		}
	}
	return b.String()
}
