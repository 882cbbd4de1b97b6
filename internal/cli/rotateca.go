package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/k1s-io/k1s/internal/datadir"
	"github.com/k1s-io/k1s/internal/pki"
)

// certificateRotateCACommand replaces the cluster's CAs. It needs the
// server stopped: it takes the data-dir lock, which names a running holder.
func certificateRotateCACommand() *cli.Command {
	var t serverTarget
	b := &binder{}
	t.flags(b, false)
	return &cli.Command{
		Name:         "rotate-ca",
		Usage:        "replace every CA of the cluster (server stopped); every agent then joins again with the new token",
		Flags:        b.flags,
		OnUsageError: usageError,
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			s := t.server()
			// Before the lock, which would create a missing data dir.
			if _, err := os.Stat(filepath.Join(s.TLSDir(), "server-ca.crt")); err != nil {
				return fmt.Errorf("no server CA under %s (%v): is --data-dir a k1s server's data dir?", s.TLSDir(), err)
			}
			lock, err := datadir.Acquire(t.DataDir)
			if err != nil {
				return fmt.Errorf("%w (k1s certificate rotate-ca needs the server stopped)", err)
			}
			defer lock.Release()
			r, err := pki.RotateCAs(s.TLSDir(), s.TokenPath(), time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintln(c.App.Writer, r.Token)
			fmt.Fprintf(c.App.ErrWriter, `new CAs in %s (server CA hash %s…, was %s…); the old files and token are in %s.
Next:
  1. start the server: it issues every certificate from the new CAs, its own node's included;
  2. give every agent the new server token above (K1S_TOKEN in its service's env file, --token-file or token: in
     its config file) and restart it: its old certificates are refused, and it joins again with the token;
  3. copies of the admin kubeconfig (--write-kubeconfig) made before now no longer work: copy the new one;
  4. Pods that talk to the apiserver read the CA at start: restart them (kubectl rollout restart), kube-system's
     coredns and k1s-ingress included. Their ServiceAccount tokens stay valid.
Bootstrap tokens stay valid with the new hash: K10%s::<id>.<secret>.
`, s.TLSDir(), r.NewHash[:12], r.OldHash[:12], r.BackupDir, r.NewHash)
			return nil
		},
	}
}
