package cluster

import (
	"os"
	"path/filepath"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

func TestKubeconfigMergeAndRemove(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config")
	other := clientcmdapi.NewConfig()
	other.Clusters["prod"] = &clientcmdapi.Cluster{Server: "https://prod:6443"}
	other.AuthInfos["prod"] = &clientcmdapi.AuthInfo{Token: "x"}
	other.Contexts["prod"] = &clientcmdapi.Context{Cluster: "prod", AuthInfo: "prod"}
	other.CurrentContext = "prod"
	if err := clientcmd.WriteToFile(*other, path); err != nil {
		t.Fatal(err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["k1s-ci"] = &clientcmdapi.Cluster{Server: "https://10.220.0.2:6443"}
	cfg.AuthInfos["k1s-ci"] = &clientcmdapi.AuthInfo{ClientCertificateData: []byte("c")}
	cfg.Contexts["k1s-ci"] = &clientcmdapi.Context{Cluster: "k1s-ci", AuthInfo: "k1s-ci"}
	cfg.CurrentContext = "k1s-ci"
	if err := writeUserKubeconfig(cfg, path, true); err != nil {
		t.Fatal(err)
	}
	got, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.CurrentContext != "k1s-ci" || got.Contexts["prod"] == nil || got.Clusters["k1s-ci"].Server != "https://10.220.0.2:6443" {
		t.Fatalf("merged: %+v", got)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode())
	}
	if err := removeUserKubeconfig("ci", path, true); err != nil {
		t.Fatal(err)
	}
	got, err = clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Contexts["k1s-ci"] != nil || got.Clusters["k1s-ci"] != nil || got.AuthInfos["k1s-ci"] != nil || got.Contexts["prod"] == nil {
		t.Fatalf("after remove: %+v", got)
	}
	// A file of its own is removed whole.
	own := filepath.Join(t.TempDir(), "k1s-ci.yaml")
	if err := writeUserKubeconfig(cfg, own, false); err != nil {
		t.Fatal(err)
	}
	if err := removeUserKubeconfig("ci", own, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(own); !os.IsNotExist(err) {
		t.Fatalf("%s still there: %v", own, err)
	}
}
