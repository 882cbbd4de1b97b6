package control

import (
	"slices"
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
	got := APIServerArgs(cfg, pki.Files{Dir: "/tls", CredDir: "/cred"}, store)
	for _, want := range []string{
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
}
