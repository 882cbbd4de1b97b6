package helmctl

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"sync"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/cli"
	"helm.sh/helm/v3/pkg/registry"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/storage/driver"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
)

// Component names the controller in Events.
const Component = "k1s-helm-controller"

// Event reasons on a HelmChart.
const (
	ReasonInstalled   = "Installed"
	ReasonUpgraded    = "Upgraded"
	ReasonUninstalled = "Uninstalled"
	ReasonFailed      = "Failed"
)

// Config is how the controller reaches the API and where Helm may write.
type Config struct {
	// Kubeconfig is a kubeconfig file; empty means in-cluster.
	Kubeconfig string
	// CacheDir is a writable folder for Helm's repository cache and the
	// discovery cache.
	CacheDir string
	// Timeout bounds one install, upgrade or uninstall.
	Timeout time.Duration
	// Debug logs Helm's own messages.
	Debug bool
}

type controller struct {
	cfg      Config
	dyn      dynamic.Interface
	charts   cache.GenericLister
	configs  cache.GenericLister
	queue    workqueue.TypedRateLimitingInterface[string]
	recorder record.EventRecorder
	settings *cli.EnvSettings
}

// Run reconciles HelmCharts until ctx is done, then returns nil.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Minute
	}
	rc, err := newFlags(cfg, "").ToRESTConfig()
	if err != nil {
		return fmt.Errorf("API client config: %w", err)
	}
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return err
	}
	// Helm reads its folders from the environment (HELM_CACHE_HOME, ...):
	// point what is unset at the writable cache folder.
	for env, sub := range map[string]string{"HELM_CACHE_HOME": "cache", "HELM_CONFIG_HOME": "config", "HELM_DATA_HOME": "data"} {
		if os.Getenv(env) == "" {
			if err := os.Setenv(env, cfg.CacheDir+"/helm/"+sub); err != nil {
				return err
			}
		}
	}

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	defer broadcaster.Shutdown()
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})

	factory := dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0)
	defer factory.Shutdown()
	c := &controller{
		cfg: cfg,
		dyn: dyn,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			// A broken chart is retried, but in the end only every few minutes.
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](5*time.Second, 5*time.Minute),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: Component}),
		recorder: broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: Component}),
		settings: cli.New(),
	}
	defer c.queue.ShutDown()

	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			c.queue.Add(key)
		}
	}
	chartInf := factory.ForResource(ChartResource)
	if _, err := chartInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue,
		// Not on every update: the controller's own status writes would
		// start a failing chart again at once, past the backoff.
		UpdateFunc: func(old, cur any) {
			o, n := old.(*unstructured.Unstructured), cur.(*unstructured.Unstructured)
			if o.GetGeneration() != n.GetGeneration() || n.GetDeletionTimestamp() != nil {
				enqueue(cur)
			}
		},
	}); err != nil {
		return err
	}
	configInf := factory.ForResource(ConfigResource)
	// A HelmChartConfig has the name of its HelmChart: its key is the chart's.
	if _, err := configInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, cur any) { enqueue(cur) },
		DeleteFunc: enqueue,
	}); err != nil {
		return err
	}
	c.charts, c.configs = chartInf.Lister(), configInf.Lister()
	factory.Start(ctx.Done())
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("cache for %v did not sync (are the helm.k1s.io CRDs installed?)", typ)
		}
	}
	log.Printf("%s started", Component)

	// Two workers: one slow chart must not hold up the others. The queue
	// never hands the same HelmChart to both.
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

func (c *controller) next(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	if err := c.sync(ctx, key); err != nil && ctx.Err() == nil {
		log.Printf("%s: %v (retrying)", key, err)
		c.queue.AddRateLimited(key)
		return true
	}
	c.queue.Forget(key)
	return true
}

func (c *controller) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	obj, err := c.charts.ByNamespace(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil // gone, and uninstalled before the finalizer let it go
	}
	if err != nil {
		return err
	}
	u := obj.(*unstructured.Unstructured).DeepCopy()
	hc, err := FromUnstructured(u)
	if err != nil {
		c.recorder.Event(u, corev1.EventTypeWarning, ReasonFailed, err.Error())
		return c.setFailed(ctx, u, hc, err, "")
	}
	if u.GetDeletionTimestamp() != nil {
		return c.remove(ctx, u, hc)
	}
	if !hasFinalizer(u) {
		u.SetFinalizers(append(u.GetFinalizers(), Finalizer))
		if u, err = c.dyn.Resource(ChartResource).Namespace(ns).Update(ctx, u, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	if err := hc.Validate(); err != nil {
		c.recorder.Event(u, corev1.EventTypeWarning, ReasonFailed, err.Error())
		_ = c.setFailed(ctx, u, hc, err, "")
		return nil // retrying cannot help; an edit of the spec comes back here
	}
	var config *ConfigSpec
	if cobj, err := c.configs.ByNamespace(ns).Get(name); err == nil {
		cs, err := ConfigFromUnstructured(cobj.(*unstructured.Unstructured))
		if err != nil {
			c.recorder.Event(u, corev1.EventTypeWarning, ReasonFailed, err.Error())
			return c.setFailed(ctx, u, hc, err, "")
		}
		config = &cs
	} else if !apierrors.IsNotFound(err) {
		return err
	}
	target := hc.TargetNamespace()
	want := Want(hc.Spec, config, target)
	st := readStatus(u)
	if st.Want == want && st.ReleaseNamespace == target && st.Ready {
		return nil
	}
	// The target namespace changed: the old release goes first.
	if st.ReleaseNamespace != "" && st.ReleaseNamespace != target {
		if err := c.uninstall(name, st.ReleaseNamespace); err != nil {
			c.recorder.Eventf(u, corev1.EventTypeWarning, ReasonFailed, "uninstall %s from namespace %s: %v", name, st.ReleaseNamespace, err)
			return c.setFailed(ctx, u, hc, err, st.ReleaseNamespace)
		}
		c.recorder.Eventf(u, corev1.EventTypeNormal, ReasonUninstalled, "release %s uninstalled from namespace %s (targetNamespace changed)", name, st.ReleaseNamespace)
	}
	rel, reason, err := c.apply(ctx, hc, config)
	if err != nil {
		c.recorder.Event(u, corev1.EventTypeWarning, ReasonFailed, err.Error())
		if serr := c.setFailed(ctx, u, hc, err, target); serr != nil {
			log.Printf("%s: status: %v", key, serr)
		}
		return err
	}
	msg := fmt.Sprintf("release %s revision %d in namespace %s: chart %s-%s", rel.Name, rel.Version, rel.Namespace,
		rel.Chart.Metadata.Name, rel.Chart.Metadata.Version)
	c.recorder.Event(u, corev1.EventTypeNormal, reason, msg)
	log.Printf("%s: %s %s", key, reason, msg)
	return c.writeStatus(ctx, u, hc.Generation, want, target, int64(rel.Version), true, reason, msg)
}

// apply installs or upgrades the release.
func (c *controller) apply(ctx context.Context, hc *Chart, config *ConfigSpec) (*release.Release, string, error) {
	target := hc.TargetNamespace()
	cfg, err := c.helm(target)
	if err != nil {
		return nil, "", err
	}
	ch, err := c.loadChart(hc)
	if err != nil {
		return nil, "", err
	}
	vals, err := Values(hc.Spec, config)
	if err != nil {
		return nil, "", err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	_, err = cfg.Releases.Deployed(hc.Name)
	switch {
	case err == nil:
		up := action.NewUpgrade(cfg)
		up.Namespace = target
		up.MaxHistory = 10
		up.Timeout = c.cfg.Timeout
		rel, err := up.RunWithContext(ctx, hc.Name, ch, vals)
		if err != nil {
			return nil, "", fmt.Errorf("helm upgrade %s in namespace %s: %w", hc.Name, target, err)
		}
		return rel, ReasonUpgraded, nil
	case errors.Is(err, driver.ErrNoDeployedReleases) || errors.Is(err, driver.ErrReleaseNotFound):
		in := action.NewInstall(cfg)
		in.Namespace = target
		in.ReleaseName = hc.Name
		in.CreateNamespace = true
		// Reuse the name of a failed first install.
		in.Replace = true
		in.Timeout = c.cfg.Timeout
		rel, err := in.RunWithContext(ctx, ch, vals)
		if err != nil {
			return nil, "", fmt.Errorf("helm install %s in namespace %s: %w", hc.Name, target, err)
		}
		return rel, ReasonInstalled, nil
	default:
		return nil, "", fmt.Errorf("read release %s in namespace %s: %w", hc.Name, target, err)
	}
}

func (c *controller) loadChart(hc *Chart) (*chart.Chart, error) {
	if hc.Spec.ChartContent != "" {
		return LoadContent(hc.Spec.ChartContent)
	}
	reg, err := registry.NewClient(registry.ClientOptCredentialsFile(c.settings.RegistryConfig))
	if err != nil {
		return nil, err
	}
	in := action.NewInstall(&action.Configuration{RegistryClient: reg})
	in.SetRegistryClient(reg)
	in.RepoURL, in.Version = hc.Spec.Repo, hc.Spec.Version
	path, err := in.LocateChart(hc.Spec.Chart, c.settings)
	if err != nil {
		return nil, fmt.Errorf("fetch chart %q (repo %q, version %q): %w", hc.Spec.Chart, hc.Spec.Repo, hc.Spec.Version, err)
	}
	return loader.Load(path)
}

func (c *controller) remove(ctx context.Context, u *unstructured.Unstructured, hc *Chart) error {
	if !hasFinalizer(u) {
		return nil
	}
	target := readStatus(u).ReleaseNamespace
	if target == "" {
		target = hc.TargetNamespace()
	}
	if err := c.uninstall(hc.Name, target); err != nil {
		c.recorder.Eventf(u, corev1.EventTypeWarning, ReasonFailed, "uninstall %s from namespace %s: %v", hc.Name, target, err)
		return err
	}
	c.recorder.Eventf(u, corev1.EventTypeNormal, ReasonUninstalled, "release %s uninstalled from namespace %s", hc.Name, target)
	log.Printf("%s/%s: uninstalled release from namespace %s", hc.Namespace, hc.Name, target)
	var keep []string
	for _, f := range u.GetFinalizers() {
		if f != Finalizer {
			keep = append(keep, f)
		}
	}
	u.SetFinalizers(keep)
	_, err := c.dyn.Resource(ChartResource).Namespace(u.GetNamespace()).Update(ctx, u, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// uninstall removes a release; one that is not there is not an error.
func (c *controller) uninstall(name, namespace string) error {
	cfg, err := c.helm(namespace)
	if err != nil {
		return err
	}
	un := action.NewUninstall(cfg)
	un.IgnoreNotFound = true
	un.Timeout = c.cfg.Timeout
	_, err = un.Run(name)
	return err
}

// helm is a Helm configuration for releases in namespace.
func (c *controller) helm(namespace string) (*action.Configuration, error) {
	cfg := new(action.Configuration)
	debug := func(string, ...any) {}
	if c.cfg.Debug {
		debug = func(format string, v ...any) { log.Printf("helm: "+format, v...) }
	}
	if err := cfg.Init(newFlags(c.cfg, namespace), namespace, "secret", debug); err != nil {
		return nil, fmt.Errorf("helm in namespace %s: %w", namespace, err)
	}
	return cfg, nil
}

func hasFinalizer(u *unstructured.Unstructured) bool {
	for _, f := range u.GetFinalizers() {
		if f == Finalizer {
			return true
		}
	}
	return false
}

// newFlags are the client settings Helm's kube client takes, with
// namespace as the default one.
func newFlags(cfg Config, namespace string) *genericclioptions.ConfigFlags {
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig = ptr.To(cfg.Kubeconfig)
	flags.CacheDir = ptr.To(cfg.CacheDir + "/kube")
	if namespace != "" {
		flags.Namespace = ptr.To(namespace)
	}
	// Helm sends one request per object; client-go's default 5 QPS would
	// make a chart of a few dozen objects take seconds.
	flags.WrapConfigFn = func(c *rest.Config) *rest.Config {
		c.QPS, c.Burst = 50, 100
		return c
	}
	return flags
}
