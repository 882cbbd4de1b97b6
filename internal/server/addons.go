package server

import (
	"context"
	"encoding/base64"
	"fmt"
	"path/filepath"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/k1s-io/k1s/internal/deploy"
	"github.com/k1s-io/k1s/internal/etcd"
	"github.com/k1s-io/k1s/internal/localpath"
	"github.com/k1s-io/k1s/internal/nodehosts"
	"github.com/k1s-io/k1s/internal/servicelb"
	"github.com/k1s-io/k1s/manifests"
)

// IngressImageTag is the tag of the ingress controller image that
// `make images` builds (INGRESS_TAG in the Makefile); bump both together
// when internal/ingress changes.
const IngressImageTag = "v0.1.0"

// MetricsServerImageTag is the version of sigs.k8s.io/metrics-server that
// `make images` builds (METRICS_SERVER_VERSION in the Makefile).
const MetricsServerImageTag = "v0.8.0"

// LocalPathHelperTag is the tag of the local-path helper image (cmd/k1s-local-path;
// LOCAL_PATH_TAG in the Makefile); bump both together when it changes.
const LocalPathHelperTag = "v0.1.0"

// HelmControllerTag is the tag of the helm-controller image
// (cmd/k1s-helm-controller; HELM_CONTROLLER_TAG in the Makefile); bump both
// together when internal/helmctl changes.
const HelmControllerTag = "v0.1.0"

// DashboardImageTag is the tag of the k1s-dashboard image (cmd/k1s-dashboard;
// DASHBOARD_TAG in the Makefile); bump both together when it changes.
const DashboardImageTag = "v0.1.0"

// manifestVars fill the placeholders of the built-in add-ons.
func (r *run) manifestVars() map[string]string {
	reg := r.cfg.SystemDefaultRegistry
	if reg != "" {
		reg += "/"
	}
	return map[string]string{
		"CLUSTER_DNS":             r.cfg.ClusterDNS,
		"CLUSTER_DOMAIN":          r.cfg.ClusterDomain,
		"SYSTEM_DEFAULT_REGISTRY": reg,
		"K1S_INGRESS_TAG":         IngressImageTag,
		"METRICS_SERVER_TAG":      MetricsServerImageTag,
		"HELM_CONTROLLER_TAG":     HelmControllerTag,
		"K1S_DASHBOARD_TAG":       DashboardImageTag,
		// metrics-server verifies the kubelets with it.
		"KUBELET_SERVING_CA_B64": base64.StdEncoding.EncodeToString(r.pki.KubeletServingCA.CertPEM),
	}
}

// reservedPorts are what k1s listens on at node IPs; a LoadBalancer
// Service there would cut nodes off from the apiserver or the kubelet.
func (r *run) reservedPorts() map[string]string {
	return map[string]string{
		fmt.Sprintf("%d/TCP", r.cfg.HTTPSPort): "the kube-apiserver",
		"10250/TCP":                            "the kubelet",
		"10256/TCP":                            "kube-proxy's health check",
		"8472/UDP":                             "flannel's vxlan",
	}
}

// addons writes the built-in add-ons into the manifests folder, deletes
// what a newly disabled one had deployed, applies the folder once, and
// keeps applying it (and the in-process add-ons running) from then on.
// A manifest that fails to apply is logged, not fatal: the cluster runs,
// and the file is retried.
func (r *run) addons(ctx context.Context) error {
	dir := filepath.Join(r.cfg.ServerDir(), "manifests")
	builtin := manifests.Builtin()
	vars := r.manifestVars()
	disabled := map[string]bool{}
	for name := range builtin {
		disabled[name] = r.cfg.Disabled(name)
	}
	changes, err := deploy.Stage(dir, builtin, vars, disabled)
	if err != nil {
		return err
	}
	for _, c := range changes {
		r.log.Infof("add-on %s: %s %s", c.Name, c.Action, c.Path)
	}
	rc, err := r.adminConfig()
	if err != nil {
		return err
	}
	ap, err := deploy.New(rc, dir, filepath.Join(r.cfg.ServerDir(), "manifests-applied.json"), r.log.WithField("component", "deploy"))
	if err != nil {
		return err
	}
	// Retried at every start, so a delete that failed once is not forgotten.
	for name, content := range builtin {
		if !disabled[name] {
			continue
		}
		rendered, err := deploy.Render(name, content, vars)
		if err == nil {
			err = ap.Remove(ctx, name, rendered)
		}
		if err != nil {
			r.log.Warnf("add-on %s is disabled but its objects could not all be removed: %v", name, err)
		}
	}
	if err := ap.ApplyAll(ctx); err != nil {
		r.log.Errorf("manifests in %s: %v (k1s retries every %s)", dir, err, deploy.DefaultInterval)
	}
	r.sup.Go("deploy", stopController, func(ctx context.Context) error { return ap.Run(ctx, deploy.DefaultInterval) })

	kube, err := r.adminClient()
	if err != nil {
		return err
	}
	if !r.cfg.DisableAgent {
		node := r.cfg.Node().NodeName
		r.sup.Go("node-role", stopController, func(ctx context.Context) error { return labelOwnNode(ctx, kube, node) })
		if r.store.Etcd != nil {
			name, peer := etcd.Name(r.cfg), etcd.PeerURL(r.cfg)
			r.sup.Go("etcd-member-node", stopController, func(ctx context.Context) error { return markOwnNode(ctx, kube, node, name, peer) })
		}
	}
	if !r.cfg.Disabled("coredns") {
		r.sup.Go("nodehosts", stopController, func(ctx context.Context) error {
			return nodehosts.Run(ctx, kube, r.log.WithField("component", "nodehosts"))
		})
	}
	if r.cfg.Disabled("servicelb") {
		r.log.Info("servicelb disabled: LoadBalancer Services stay Pending unless another controller serves them")
	} else {
		r.sup.Go("servicelb", stopController, func(ctx context.Context) error {
			return servicelb.Run(ctx, kube, r.log.WithField("component", "servicelb"), r.reservedPorts())
		})
	}
	if !r.cfg.Disabled("local-storage") {
		// Acting as its own user, the provisioner can do only what
		// manifests/local-storage.yaml grants it.
		lrc := rest.CopyConfig(rc)
		lrc.Impersonate = rest.ImpersonationConfig{UserName: localpath.User}
		lkube, err := kubernetes.NewForConfig(lrc)
		if err != nil {
			return err
		}
		lcfg := localpath.Config{
			Root:        r.cfg.DefaultLocalStoragePath,
			HelperImage: vars["SYSTEM_DEFAULT_REGISTRY"] + "k1s-io/local-path-helper:" + LocalPathHelperTag,
			Namespace:   "kube-system",
		}
		r.sup.Go("local-path", stopController, func(ctx context.Context) error {
			return localpath.Run(ctx, lkube, r.log.WithField("component", "local-path"), lcfg)
		})
	}
	return nil
}
