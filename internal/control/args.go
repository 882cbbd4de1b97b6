// Package control derives what the control plane needs from the k1s
// configuration: the arguments of kube-apiserver, kube-scheduler and
// kube-controller-manager (the user's pass-through arguments applied, with
// security-relevant lists merged rather than replaced) and the probes that
// tell when each one is ready; it also creates the RBAC bindings k1s's own
// identities need once the apiserver runs. Starting the components is the
// server's job (through the executor seam).
package control

import (
	"fmt"
	"slices"
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
	for k, v := range userArgs(extra) {
		base[k] = v
	}
	return render(base)
}

// userArgs reads pass-through arguments (key=value, leading dashes
// optional); a later one for the same key wins.
func userArgs(extra []string) map[string]string {
	m := make(map[string]string, len(extra))
	for _, kv := range extra {
		k, v, _ := strings.Cut(strings.TrimLeft(kv, "-"), "=")
		m[k] = v
	}
	return m
}

func render(base map[string]string) []string {
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
// encryptionConfig is the encryption configuration file, "" for none.
func APIServerArgs(cfg *config.Server, f pki.Files, store *datastore.Store, encryptionConfig string) []string {
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
		flagAuthzMode:                      k1sAuthzModes,
		flagAdmission:                      k1sAdmission,
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
	if encryptionConfig != "" {
		a["encryption-provider-config"] = encryptionConfig
		// Key rotation rewrites the file while the apiserver runs.
		a["encryption-provider-config-automatic-reload"] = "true"
	}
	if store.SharedSQL {
		// See datastore.Store.SharedSQL: reads and watches go to kine.
		a["watch-cache"] = "false"
	}
	if store.CAFile != "" {
		a["etcd-cafile"] = store.CAFile
	}
	if store.CertFile != "" {
		a["etcd-certfile"], a["etcd-keyfile"] = store.CertFile, store.KeyFile
	}
	user := userArgs(cfg.ExtraAPIServerArgs)
	mergeSecurityLists(a, user)
	for k, v := range user {
		a[k] = v
	}
	return render(a)
}

// APIServerArgNotes says, one line per flag, what became of the
// security-relevant kube-apiserver lists the user passed (see
// mergeSecurityLists); empty when the user passed none of them.
func APIServerArgNotes(cfg *config.Server) []string {
	a := map[string]string{flagAdmission: k1sAdmission, flagAuthzMode: k1sAuthzModes}
	return mergeSecurityLists(a, userArgs(cfg.ExtraAPIServerArgs))
}

// SchedulerArgs are the kube-scheduler flags for cfg.
func SchedulerArgs(cfg *config.Server, f pki.Files) []string {
	return args(map[string]string{
		"kubeconfig":                f.SchedulerKubeconfig(),
		"authentication-kubeconfig": f.SchedulerKubeconfig(),
		"authorization-kubeconfig":  f.SchedulerKubeconfig(),
		"bind-address":              "127.0.0.1",
		"secure-port":               strconv.Itoa(cfg.SchedulerPort),
		"tls-cert-file":             f.SchedulerServingCert(),
		"tls-private-key-file":      f.SchedulerServingKey(),
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
		"tls-cert-file":                   f.ControllerServingCert(),
		"tls-private-key-file":            f.ControllerServingKey(),
		"leader-elect":                    "false",
		"profiling":                       "false",
		"controllers":                     "*,tokencleaner", // upstream's defaults and the expired bootstrap-token cleaner
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

// Security-relevant list flags of kube-apiserver. A user value for one of
// them is merged with k1s's instead of replacing it, so that
// enable-admission-plugins=PodSecurity does not silently drop
// NodeRestriction, nor authorization-mode=RBAC the Node authorizer: those
// two keep a node's credentials confined to its own Node and Pods.
// Removing one of k1s's takes the upstream way to say so:
// disable-admission-plugins, or an authorization-config file (which
// replaces authorization-mode altogether).
//
// Other list flags k1s sets were considered and keep "the user's value
// wins": api-audiences, requestheader-allowed-names (narrowing or widening
// them is the user's explicit choice and adds no access by itself) and the
// controller-manager's controllers (k1s sets "*,tokencleaner").
const (
	flagAdmission       = "enable-admission-plugins"
	flagAdmissionOff    = "disable-admission-plugins"
	flagAdmissionLegacy = "admission-control" // deprecated; excludes the two above
	flagAuthzMode       = "authorization-mode"
	flagAuthzConfig     = "authorization-config" // excludes authorization-mode
	k1sAdmission        = "NodeRestriction"
	k1sAuthzModes       = "Node,RBAC"
	nodeAuthz           = "Node"
)

// mergeSecurityLists folds the user's values of the flags above into a
// (k1s's values), removes them from user so they do not overwrite the
// merge, and returns one line per flag saying what the apiserver gets.
func mergeSecurityLists(a, user map[string]string) []string {
	var notes []string
	ours := splitList(a[flagAdmission])
	off := splitList(user[flagAdmissionOff])
	if legacy, ok := user[flagAdmissionLegacy]; ok {
		merged, added := union(splitList(legacy), ours)
		user[flagAdmissionLegacy] = strings.Join(merged, ",")
		delete(a, flagAdmission)
		notes = append(notes, fmt.Sprintf("kube-apiserver --%s=%s (k1s added %s; this deprecated flag is passed instead of --%s)",
			flagAdmissionLegacy, user[flagAdmissionLegacy], orNone(added), flagAdmission))
	} else if theirs, ok := user[flagAdmission]; ok || len(off) > 0 {
		var keep, dropped []string
		for _, p := range ours {
			if slices.Contains(off, p) {
				dropped = append(dropped, p)
			} else {
				keep = append(keep, p)
			}
		}
		merged, added := union(splitList(theirs), keep)
		delete(user, flagAdmission)
		if len(merged) == 0 {
			delete(a, flagAdmission)
		} else {
			a[flagAdmission] = strings.Join(merged, ",")
		}
		note := fmt.Sprintf("kube-apiserver --%s=%s (k1s added %s", flagAdmission, a[flagAdmission], orNone(added))
		if len(dropped) > 0 {
			note += fmt.Sprintf("; left out %s, as --%s asks", strings.Join(dropped, ","), flagAdmissionOff)
		} else {
			note += fmt.Sprintf("; turn one off with --kube-apiserver-arg=%s=NAME", flagAdmissionOff)
		}
		notes = append(notes, note+")")
	}

	if cfgFile, ok := user[flagAuthzConfig]; ok {
		if _, both := user[flagAuthzMode]; !both {
			delete(a, flagAuthzMode)
			notes = append(notes, fmt.Sprintf("kube-apiserver --%s=%s replaces --%s (k1s passes none): the file must list the Node and RBAC authorizers, or node credentials are no longer confined to their own objects",
				flagAuthzConfig, cfgFile, flagAuthzMode))
		}
		// Both given: passed as given, and the apiserver names the conflict.
	} else if theirs, ok := user[flagAuthzMode]; ok {
		// Authorizers are asked in order: Node first, then the user's order,
		// then k1s's modes the user left out.
		merged := []string{nodeAuthz}
		for _, m := range splitList(theirs) {
			if !slices.Contains(merged, m) {
				merged = append(merged, m)
			}
		}
		var added []string
		for _, m := range splitList(a[flagAuthzMode]) {
			if !slices.Contains(splitList(theirs), m) {
				added = append(added, m)
			}
			if !slices.Contains(merged, m) {
				merged = append(merged, m)
			}
		}
		a[flagAuthzMode] = strings.Join(merged, ",")
		delete(user, flagAuthzMode)
		notes = append(notes, fmt.Sprintf("kube-apiserver --%s=%s (k1s added %s; Node goes first; to choose the authorizers yourself, pass --kube-apiserver-arg=%s=FILE instead)",
			flagAuthzMode, a[flagAuthzMode], orNone(added), flagAuthzConfig))
	}
	return notes
}

// splitList reads a comma-separated flag value, without empty items.
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// union is theirs followed by the items of ours it lacks (which it also
// returns), without duplicates.
func union(theirs, ours []string) (merged, added []string) {
	for _, s := range theirs {
		if !slices.Contains(merged, s) {
			merged = append(merged, s)
		}
	}
	for _, s := range ours {
		if !slices.Contains(merged, s) {
			merged = append(merged, s)
			added = append(added, s)
		}
	}
	return merged, added
}

func orNone(items []string) string {
	if len(items) == 0 {
		return "nothing"
	}
	return strings.Join(items, ",")
}
