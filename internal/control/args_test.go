package control

import (
	"slices"
	"strings"
	"testing"

	"github.com/k1s-io/k1s/internal/config"
	"github.com/k1s-io/k1s/internal/datastore"
	"github.com/k1s-io/k1s/internal/pki"
)

func TestUserArgsWinAndOrderIsStable(t *testing.T) {
	got := args(map[string]string{"b": "2", "a": "1"}, []string{"b=override", "--c=3", "feature-gates=A=true,B=false"})
	want := []string{"--a=1", "--b=override", "--c=3", "--feature-gates=A=true,B=false"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestAPIServerArgsFollowConfig(t *testing.T) {
	cfg := &config.Server{AdvertiseAddress: "192.0.2.10", HTTPSPort: 7443,
		Cluster: config.Cluster{ServiceCIDR: "10.96.0.0/16", ClusterDomain: "example.local"}, ExtraAPIServerArgs: []string{"anonymous-auth=true"}}
	store := &datastore.Store{Endpoints: []string{"https://e1:2379", "https://e2:2379"}, CAFile: "/ca", CertFile: "/c", KeyFile: "/k"}
	got := APIServerArgs(cfg, pki.Files{Dir: "/tls", CredDir: "/cred"}, store, "/cred/enc.json")
	for _, want := range []string{
		"--encryption-provider-config=/cred/enc.json", "--encryption-provider-config-automatic-reload=true",
		"--secure-port=7443", "--advertise-address=192.0.2.10", "--service-cluster-ip-range=10.96.0.0/16",
		"--etcd-servers=https://e1:2379,https://e2:2379", "--etcd-cafile=/ca", "--etcd-certfile=/c", "--etcd-keyfile=/k",
		"--service-account-issuer=https://kubernetes.default.svc.example.local", "--authorization-mode=Node,RBAC",
		"--anonymous-auth=true", "--client-ca-file=/tls/client-ca.crt",
	} {
		if !slices.Contains(got, want) {
			t.Errorf("missing %s in %q", want, got)
		}
	}
	if slices.Contains(got, "--anonymous-auth=false") {
		t.Error("user's anonymous-auth=true did not replace the default")
	}
	if _, ok := flagValue(APIServerArgs(cfg, pki.Files{Dir: "/tls"}, store, ""), "encryption-provider-config"); ok {
		t.Error("an encryption configuration is passed with secrets encryption never turned on")
	}
}

// The scheduler and controller-manager serve with certificates from k1s's
// PKI: without a file each makes a self-signed RSA pair at every start.
func TestControllersServeWithK1sCertificates(t *testing.T) {
	cfg := &config.Server{SchedulerPort: 10259, ControllerPort: 10257}
	f := pki.Files{Dir: "/tls", CredDir: "/cred"}
	for _, tc := range []struct {
		name      string
		args      []string
		cert, key string
	}{
		{"kube-scheduler", SchedulerArgs(cfg, f), "/tls/serving-kube-scheduler.crt", "/tls/serving-kube-scheduler.key"},
		{"kube-controller-manager", ControllerManagerArgs(cfg, f), "/tls/serving-kube-controller-manager.crt", "/tls/serving-kube-controller-manager.key"},
	} {
		if v, _ := flagValue(tc.args, "tls-cert-file"); v != tc.cert {
			t.Errorf("%s --tls-cert-file = %q, want %q", tc.name, v, tc.cert)
		}
		if v, _ := flagValue(tc.args, "tls-private-key-file"); v != tc.key {
			t.Errorf("%s --tls-private-key-file = %q, want %q", tc.name, v, tc.key)
		}
	}
}

func TestAPIServerWatchCacheOffOnSharedSQL(t *testing.T) {
	cfg := &config.Server{Cluster: config.Cluster{ServiceCIDR: "10.96.0.0/16"}}
	files := pki.Files{Dir: "/tls"}
	if v, ok := flagValue(APIServerArgs(cfg, files, &datastore.Store{}, ""), "watch-cache"); ok {
		t.Errorf("watch cache set to %q on a datastore only this server writes", v)
	}
	shared := &datastore.Store{SharedSQL: true}
	if v, _ := flagValue(APIServerArgs(cfg, files, shared, ""), "watch-cache"); v != "false" {
		t.Errorf("--watch-cache=%q on a shared SQL datastore, want false", v)
	}
	cfg.ExtraAPIServerArgs = []string{"watch-cache=true"}
	if v, _ := flagValue(APIServerArgs(cfg, files, shared, ""), "watch-cache"); v != "true" {
		t.Errorf("--kube-apiserver-arg watch-cache=true gave %q", v)
	}
}

// flagValue is the value of --name in args, and whether it is there.
func flagValue(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

func TestSecurityListsMergeWithK1s(t *testing.T) {
	const absent = "<absent>"
	for _, c := range []struct {
		name  string
		extra []string
		want  map[string]string // flag -> value, or absent
		notes []string          // substrings, one per expected note
	}{
		{"nothing passed", []string{"v=2"},
			map[string]string{"enable-admission-plugins": "NodeRestriction", "authorization-mode": "Node,RBAC"}, nil},
		{"admission plugin added", []string{"enable-admission-plugins=PodSecurity"},
			map[string]string{"enable-admission-plugins": "PodSecurity,NodeRestriction"},
			[]string{"--enable-admission-plugins=PodSecurity,NodeRestriction (k1s added NodeRestriction; turn one off with --kube-apiserver-arg=disable-admission-plugins=NAME)"}},
		{"admission plugins already there", []string{"--enable-admission-plugins=NodeRestriction,PodSecurity,NodeRestriction"},
			map[string]string{"enable-admission-plugins": "NodeRestriction,PodSecurity"},
			[]string{"(k1s added nothing;"}},
		{"NodeRestriction disabled explicitly", []string{"enable-admission-plugins=PodSecurity", "disable-admission-plugins=NodeRestriction"},
			map[string]string{"enable-admission-plugins": "PodSecurity", "disable-admission-plugins": "NodeRestriction"},
			[]string{"left out NodeRestriction, as --disable-admission-plugins asks"}},
		{"only a disable flag", []string{"disable-admission-plugins=NodeRestriction,ServiceAccount"},
			map[string]string{"enable-admission-plugins": absent, "disable-admission-plugins": "NodeRestriction,ServiceAccount"},
			[]string{"left out NodeRestriction"}},
		{"deprecated admission-control", []string{"admission-control=ServiceAccount,PodSecurity"},
			map[string]string{"admission-control": "ServiceAccount,PodSecurity,NodeRestriction", "enable-admission-plugins": absent},
			[]string{"--admission-control=ServiceAccount,PodSecurity,NodeRestriction (k1s added NodeRestriction"}},
		{"authorization RBAC only", []string{"authorization-mode=RBAC"},
			map[string]string{"authorization-mode": "Node,RBAC"},
			[]string{"--authorization-mode=Node,RBAC (k1s added Node; Node goes first"}},
		{"authorization keeps the user's order", []string{"authorization-mode=Webhook,RBAC"},
			map[string]string{"authorization-mode": "Node,Webhook,RBAC"}, []string{"k1s added Node;"}},
		{"authorization without RBAC", []string{"authorization-mode=Webhook"},
			map[string]string{"authorization-mode": "Node,Webhook,RBAC"}, []string{"k1s added Node,RBAC;"}},
		{"Node moved first", []string{"authorization-mode=RBAC,Node"},
			map[string]string{"authorization-mode": "Node,RBAC"}, []string{"k1s added nothing;"}},
		{"authorization config file", []string{"authorization-config=/etc/authz.yaml"},
			map[string]string{"authorization-mode": absent, "authorization-config": "/etc/authz.yaml"},
			[]string{"--authorization-config=/etc/authz.yaml replaces --authorization-mode (k1s passes none): the file must list the Node and RBAC authorizers"}},
		{"both, left for the apiserver to refuse", []string{"authorization-config=/a.yaml", "authorization-mode=RBAC"},
			map[string]string{"authorization-mode": "RBAC", "authorization-config": "/a.yaml"}, nil},
		{"both lists at once", []string{"enable-admission-plugins=PodSecurity", "authorization-mode=RBAC"},
			map[string]string{"enable-admission-plugins": "PodSecurity,NodeRestriction", "authorization-mode": "Node,RBAC"},
			[]string{"enable-admission-plugins", "authorization-mode"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := &config.Server{ExtraAPIServerArgs: c.extra}
			got := APIServerArgs(cfg, pki.Files{Dir: "/tls"}, &datastore.Store{}, "")
			for flag, want := range c.want {
				v, ok := flagValue(got, flag)
				switch {
				case want == absent && ok:
					t.Errorf("--%s=%s passed, want none", flag, v)
				case want != absent && v != want:
					t.Errorf("--%s=%q (present %v), want %q", flag, v, ok, want)
				}
			}
			notes := APIServerArgNotes(cfg)
			if len(notes) != len(c.notes) {
				t.Fatalf("notes %q, want %d", notes, len(c.notes))
			}
			for i, want := range c.notes {
				if !strings.Contains(notes[i], want) {
					t.Errorf("note %q lacks %q", notes[i], want)
				}
			}
		})
	}
}
