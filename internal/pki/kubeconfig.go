package pki

import (
	"fmt"
	"os"

	clientcmd "k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/k1s-io/k1s/internal/config"
)

// kubeconfig renders a single-context kubeconfig. With embed, certificate
// data is inlined so the file works when copied to another machine.
func kubeconfig(server, user string, caPEM []byte, caFile, certFile, keyFile string, embed bool) ([]byte, error) {
	cluster := &clientcmdapi.Cluster{Server: server}
	auth := &clientcmdapi.AuthInfo{}
	if embed {
		cert, err := os.ReadFile(certFile)
		if err != nil {
			return nil, err
		}
		key, err := os.ReadFile(keyFile)
		if err != nil {
			return nil, err
		}
		cluster.CertificateAuthorityData = caPEM
		auth.ClientCertificateData, auth.ClientKeyData = cert, key
	} else {
		cluster.CertificateAuthority = caFile
		auth.ClientCertificate, auth.ClientKey = certFile, keyFile
	}
	c := clientcmdapi.NewConfig()
	c.Clusters["k1s"] = cluster
	c.AuthInfos[user] = auth
	c.Contexts["k1s"] = &clientcmdapi.Context{Cluster: "k1s", AuthInfo: user}
	c.CurrentContext = "k1s"
	return clientcmd.Write(*c)
}

func writeKubeconfigs(cfg *config.Server, f Files, serverCA []byte) error {
	url := cfg.APIServerURL()
	for _, k := range []struct {
		path, user, cert, key string
		embed                 bool
		mode                  os.FileMode
	}{
		{f.AdminKubeconfig(), "admin", f.AdminCert(), f.AdminKey(), false, 0o600},
		{f.SchedulerKubeconfig(), "kube-scheduler", f.path("client-kube-scheduler.crt"), f.path("client-kube-scheduler.key"), false, 0o600},
		{f.ControllerKubeconfig(), "kube-controller-manager", f.path("client-kube-controller-manager.crt"), f.path("client-kube-controller-manager.key"), false, 0o600},
		{cfg.WriteKubeconfig, "admin", f.AdminCert(), f.AdminKey(), true, cfg.KubeconfigMode()},
	} {
		if k.path == "" {
			continue
		}
		data, err := kubeconfig(url, k.user, serverCA, f.ServerCA(), k.cert, k.key, k.embed)
		if err != nil {
			return err
		}
		if err := writeFileAtomic(k.path, data, k.mode); err != nil {
			return fmt.Errorf("writing kubeconfig %s: %w", k.path, err)
		}
	}
	return nil
}
