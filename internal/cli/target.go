package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"
	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/k1s-io/k1s/internal/config"
	"github.com/k1s-io/k1s/internal/etcd"
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

// dial connects to the running server's datastore: its kine socket
// (SQLite, PostgreSQL, MySQL), or its embedded etcd member (on loopback
// with the member's client certificate).
func (t *serverTarget) dial(ctx context.Context) (*clientv3.Client, error) {
	s := t.server()
	sock := s.KineSocket()
	if _, err := os.Stat(sock); err == nil {
		return clientv3.New(clientv3.Config{Endpoints: []string{"unix://" + sock}, DialTimeout: 5 * time.Second, Context: ctx})
	}
	if s.HasEtcdData() {
		return etcd.LocalClient(ctx, s)
	}
	return nil, fmt.Errorf("no datastore socket at %s and no embedded etcd in %s: is `k1s server` running with --data-dir %s? (with an external etcd as datastore, read its keys with etcdctl instead)", sock, s.EtcdDir(), t.DataDir)
}
