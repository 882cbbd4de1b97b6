package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/k1s-io/k1s/internal/config"
	"github.com/k1s-io/k1s/internal/join"
	"github.com/k1s-io/k1s/internal/pki"
)

// expiryWarning is how close to expiry `certificate check` fails.
const expiryWarning = 30

func certificateCommand() *cli.Command {
	d := &serverTarget{}
	var output string
	return &cli.Command{
		Name:  "certificate",
		Usage: "inspect the certificates k1s manages, and replace its CAs",
		Subcommands: []*cli.Command{{
			Name:  "check",
			Usage: fmt.Sprintf("list every certificate with its subject, names and expiry; exit 1 if one expires within %d days", expiryWarning),
			Flags: d.cliFlags(false, &cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "table or json", Value: "table", Destination: &output}),
			Action: func(c *cli.Context) error {
				if output != "table" && output != "json" {
					return fmt.Errorf("--output %q: use table or json", output)
				}
				srv := d.server()
				certs, err := pki.Inventory(time.Now(), srv.TLSDir(), srv.EtcdTLSDir(), filepath.Join(d.DataDir, "agent", "pki"))
				if err != nil {
					return err
				}
				if len(certs) == 0 {
					return fmt.Errorf("no certificates under %s: is --data-dir a k1s server's or agent's data dir?", d.DataDir)
				}
				if output == "json" {
					enc := json.NewEncoder(c.App.Writer)
					enc.SetIndent("", "  ")
					if err := enc.Encode(certs); err != nil {
						return err
					}
				} else {
					w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
					fmt.Fprintln(w, "FILE\tKIND\tSUBJECT\tNAMES\tEXPIRES\tDAYS LEFT")
					for _, ci := range certs {
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\n", ci.Path, ci.Kind, ci.Subject, strings.Join(ci.SANs, ","), ci.NotAfter.Format(time.RFC3339), ci.DaysLeft)
					}
					if err := w.Flush(); err != nil {
						return err
					}
				}
				var soon []string
				for _, ci := range certs {
					if ci.DaysLeft < expiryWarning {
						soon = append(soon, fmt.Sprintf("%s (%d days)", filepath.Base(ci.Path), ci.DaysLeft))
					}
				}
				if len(soon) > 0 {
					return cli.Exit(fmt.Sprintf("k1s: %d certificate(s) expire within %d days: %s; k1s renews leaf certificates with fewer than %d days left at start and every 12 hours; 'k1s certificate rotate' renews them now",
						len(soon), expiryWarning, strings.Join(soon, ", "), int(pki.RenewBefore.Hours()/24)), 1)
				}
				return nil
			},
		}, rotateCommand(), certificateRotateCACommand()},
	}
}

// rotateCommand renews leaf certificates now, on a server's or an agent's
// data dir, while k1s runs or not: the running components reload the
// files (see server.certRenewal). CAs are never touched.
func rotateCommand() *cli.Command {
	d := &serverTarget{}
	var services cli.StringSlice
	var kubeconfig string
	return &cli.Command{
		Name:  "rotate",
		Usage: "renew leaf certificates now (all, or those named by --service); a running k1s picks them up without a restart",
		Flags: d.cliFlags(false,
			&cli.StringSliceFlag{Name: "service", Usage: "certificate to renew, by its file name without .crt as `k1s certificate check` lists it (repeatable; default: all leaf certificates)", Destination: &services},
			&cli.StringFlag{Name: "write-kubeconfig", Aliases: []string{"o"}, Usage: "the admin kubeconfig the server writes (it inlines the admin certificate, so it is updated when client-admin is renewed)", Value: config.DefaultKubeconfig, EnvVars: []string{"K1S_WRITE_KUBECONFIG"}, Destination: &kubeconfig},
		),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("unexpected argument %q: name certificates with --service", c.Args().First())
			}
			srv := d.server()
			nodeDir := filepath.Join(d.DataDir, "agent", "pki")
			now := time.Now()
			var renewed []string
			switch {
			case exists(srv.TLSDir(), "server-ca.crt"):
				valid := pki.ServerLeafNames()
				if exists(nodeDir, "client-kubelet.crt") {
					valid = append(valid, pki.NodeLeafNames...)
				}
				want, err := pki.Select(valid, services.Value())
				if err != nil {
					return err
				}
				for _, dir := range []string{srv.TLSDir(), nodeDir} {
					events, err := pki.Rotate(srv.TLSDir(), dir, want, now)
					for _, ev := range events {
						renewed = append(renewed, filepath.Join(dir, ev.Name+".crt"))
					}
					if err != nil {
						return err
					}
				}
				if want["client-admin"] && kubeconfig != "" {
					f := pki.Files{Dir: srv.TLSDir()}
					changed, err := pki.RefreshInlined(kubeconfig, f.AdminCert(), f.AdminKey())
					if err != nil {
						return fmt.Errorf("updating the admin kubeconfig %s: %w", kubeconfig, err)
					}
					if changed {
						fmt.Fprintf(c.App.Writer, "updated %s with the new admin certificate\n", kubeconfig)
					}
				}
			case exists(nodeDir, "kubelet.kubeconfig"):
				want, err := pki.Select(pki.NodeLeafNames, services.Value())
				if err != nil {
					return err
				}
				names, err := join.RotateNode(c.Context, filepath.Join(d.DataDir, "agent"), want)
				if err != nil {
					return err
				}
				for _, n := range names {
					renewed = append(renewed, filepath.Join(nodeDir, n+".crt"))
				}
			default:
				return fmt.Errorf("no k1s certificates under %s: is --data-dir a k1s server's or agent's data dir?", d.DataDir)
			}
			certs, err := pki.Inventory(now, srv.TLSDir(), nodeDir)
			if err != nil {
				return err
			}
			for _, p := range renewed {
				for _, ci := range certs {
					if ci.Path == p {
						fmt.Fprintf(c.App.Writer, "renewed %s: expires %s\n", p, ci.NotAfter.Format(time.RFC3339))
					}
				}
			}
			fmt.Fprintln(c.App.Writer, "a running k1s uses the new certificates without a restart: serving certificates within a minute, client certificates within 5 minutes")
			return nil
		},
	}
}

func exists(dir, name string) bool {
	_, err := os.Stat(filepath.Join(dir, name))
	return err == nil
}
