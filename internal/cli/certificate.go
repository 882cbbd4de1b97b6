package cli

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

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
				certs, err := pki.Inventory(time.Now(), srv.TLSDir(), filepath.Join(d.DataDir, "agent", "pki"))
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
					return cli.Exit(fmt.Sprintf("k1s: %d certificate(s) expire within %d days: %s; restarting k1s renews leaf certificates with fewer than %d days left",
						len(soon), expiryWarning, strings.Join(soon, ", "), int(pki.RenewBefore.Hours()/24)), 1)
				}
				return nil
			},
		}, certificateRotateCACommand()},
	}
}
