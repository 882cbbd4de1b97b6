package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/k1s-io/k1s/internal/config"
)

// serverTarget is how a day-2 command (token, certificate, secrets-encrypt,
// snapshot) finds its server: the data dir, and the admin kubeconfig in it
// unless --kubeconfig/KUBECONFIG.
type serverTarget struct {
	DataDir    string
	Kubeconfig string
}

func (t *serverTarget) flags(b *binder, withKubeconfig bool) {
	b.str("data-dir", "the server's data directory", &t.DataDir, config.DefaultDataDir, "d")
	if withKubeconfig {
		b.strEnv("kubeconfig", "KUBECONFIG", "admin kubeconfig (default: <data-dir>/server/cred/admin.kubeconfig)", &t.Kubeconfig)
	}
}

func (t *serverTarget) server() *config.Server { return &config.Server{DataDir: t.DataDir} }

// client connects with the admin kubeconfig.
func (t *serverTarget) client() (kubernetes.Interface, *rest.Config, error) {
	path := t.Kubeconfig
	if path == "" {
		path = filepath.Join(t.server().CredDir(), "admin.kubeconfig")
		if _, err := os.Stat(path); err != nil {
			return nil, nil, fmt.Errorf("no admin kubeconfig at %s (%v): pass the server's --data-dir, or --kubeconfig", path, err)
		}
	}
	rc, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	rc.Timeout = 15 * time.Second
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, nil, err
	}
	return kube, rc, nil
}

// cliFlags is flags as a list, with the command's own flags after them.
func (t *serverTarget) cliFlags(withKubeconfig bool, extra ...cli.Flag) []cli.Flag {
	b := &binder{}
	t.flags(b, withKubeconfig)
	return append(b.flags, extra...)
}

// datastore is the running server's kine socket, through which the stored
// (encrypted) form of Secrets is read.
func (t *serverTarget) datastore() (string, error) {
	sock := t.server().KineSocket()
	if _, err := os.Stat(sock); err != nil {
		return "", fmt.Errorf("no datastore socket at %s: is `k1s server` running with --data-dir %s? (with an external etcd as datastore, read its keys with etcdctl instead)", sock, t.DataDir)
	}
	return "unix://" + sock, nil
}
