// Package control runs the Kubernetes control plane: it turns the k1s
// configuration into the arguments of kube-apiserver, kube-scheduler and
// kube-controller-manager, starts them through the executor seam, and knows
// how to tell when each one is ready.
package control

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/k1s-io/k1s/internal/config"
	"github.com/k1s-io/k1s/internal/datastore"
	"github.com/k1s-io/k1s/internal/pki"
)

// args renders key=value pairs as --key=value in a stable order, after
// applying the user's pass-through arguments, which win over ours.
func args(base map[string]string, extra []string) []string {
	for _, kv := range extra {
		k, v, _ := strings.Cut(strings.TrimLeft(kv, "-"), "=")
		base[k] = v
	}
	keys := make([]string, 0, len(base))
	for k := range base {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, fmt.Sprintf("--%s=%s", k, base[k]))
	}
	return out
}

// APIServerArgs are the kube-apiserver flags for cfg.
func APIServerArgs(cfg *config.Server, f pki.Files, store *datastore.Store) []string {
	issuer := "https://kubernetes.default.svc." + cfg.ClusterDomain
	a := map[string]string{
		"advertise-address":                cfg.AdvertiseAddress,
		"bind-address":                     bindOrAll(cfg.BindAddress),
		"secure-port":                      strconv.Itoa(cfg.HTTPSPort),
		"etcd-servers":                     strings.Join(store.Endpoints, ","),
		"storage-backend":                  "etcd3",
		"tls-cert-file":                    f.ServingCert(),
		"tls-private-key-file":             f.ServingKey(),
		"client-ca-file":                   f.ClientCA(),
		"anonymous-auth":                   "false",
		"authorization-mode":               "Node,RBAC",
		"enable-admission-plugins":         "NodeRestriction",
		"allow-privileged":                 "true",
		"profiling":                        "false",
		"service-cluster-ip-range":         cfg.ServiceCIDR,
		"service-account-issuer":           issuer,
		"api-audiences":                    issuer,
		"service-account-key-file":         f.ServiceAccountKey(),
		"service-account-signing-key-file": f.ServiceAccountKey(),
		"kubelet-client-certificate":       f.KubeletClientCert(),
		"kubelet-client-key":               f.KubeletClientKey(),
		"kubelet-certificate-authority":    f.KubeletServingCA(),
		// Node names need not resolve (edge hosts rarely have DNS); the
		// kubelet's serving certificate names its IP too.
		"kubelet-preferred-address-types":    "InternalIP,ExternalIP,Hostname",
		"requestheader-client-ca-file":       f.RequestHeaderCA(),
		"requestheader-allowed-names":        pki.AuthProxyUser,
		"requestheader-username-headers":     "X-Remote-User",
		"requestheader-group-headers":        "X-Remote-Group",
		"requestheader-extra-headers-prefix": "X-Remote-Extra-",
		"proxy-client-cert-file":             f.AuthProxyCert(),
		"proxy-client-key-file":              f.AuthProxyKey(),
		"enable-aggregator-routing":          "true",
	}
	if store.CAFile != "" {
		a["etcd-cafile"] = store.CAFile
	}
	if store.CertFile != "" {
		a["etcd-certfile"], a["etcd-keyfile"] = store.CertFile, store.KeyFile
	}
	return args(a, cfg.ExtraAPIServerArgs)
}

// SchedulerArgs are the kube-scheduler flags for cfg.
func SchedulerArgs(cfg *config.Server, f pki.Files) []string {
	return args(map[string]string{
		"kubeconfig":                f.SchedulerKubeconfig(),
		"authentication-kubeconfig": f.SchedulerKubeconfig(),
		"authorization-kubeconfig":  f.SchedulerKubeconfig(),
		"bind-address":              "127.0.0.1",
		"secure-port":               strconv.Itoa(cfg.SchedulerPort),
		"leader-elect":              "false",
		"profiling":                 "false",
	}, cfg.ExtraSchedulerArgs)
}

// ControllerManagerArgs are the kube-controller-manager flags for cfg.
func ControllerManagerArgs(cfg *config.Server, f pki.Files) []string {
	return args(map[string]string{
		"kubeconfig":                      f.ControllerKubeconfig(),
		"authentication-kubeconfig":       f.ControllerKubeconfig(),
		"authorization-kubeconfig":        f.ControllerKubeconfig(),
		"bind-address":                    "127.0.0.1",
		"secure-port":                     strconv.Itoa(cfg.ControllerPort),
		"leader-elect":                    "false",
		"profiling":                       "false",
		"controllers":                     "*",
		"use-service-account-credentials": "true",
		// Start-up gives every controller its own ServiceAccount token, a
		// burst of requests the default 20 QPS spreads over ~5 s, delaying
		// the node's Pod CIDR; the apiserver is local.
		"kube-api-qps":                     "100",
		"kube-api-burst":                   "200",
		"service-account-private-key-file": f.ServiceAccountKey(),
		"root-ca-file":                     f.ServerCA(),
		"allocate-node-cidrs":              "true",
		"cluster-cidr":                     cfg.ClusterCIDR,
		"service-cluster-ip-range":         cfg.ServiceCIDR,
		"configure-cloud-routes":           "false",
		// Kubelet client certificates come from the client CA, serving ones from the server CA.
		"cluster-signing-kube-apiserver-client-cert-file": f.ClientCA(),
		"cluster-signing-kube-apiserver-client-key-file":  f.ClientCAKey(),
		"cluster-signing-kubelet-client-cert-file":        f.ClientCA(),
		"cluster-signing-kubelet-client-key-file":         f.ClientCAKey(),
		"cluster-signing-kubelet-serving-cert-file":       f.KubeletServingCA(),
		"cluster-signing-kubelet-serving-key-file":        f.KubeletServingCAKey(),
		"cluster-signing-legacy-unknown-cert-file":        f.ServerCA(),
		"cluster-signing-legacy-unknown-key-file":         f.ServerCAKey(),
	}, cfg.ExtraControllerManagerArgs)
}

func bindOrAll(addr string) string {
	if addr == "" {
		return "0.0.0.0"
	}
	return addr
}
