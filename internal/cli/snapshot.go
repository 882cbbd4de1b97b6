package cli

import (
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/k1s-io/k1s/internal/snapshot"
)

func snapshotCommand() *cli.Command {
	d := &serverTarget{}
	var dir, name string
	dirFlag := &cli.StringFlag{Name: "snapshot-dir", Aliases: []string{"etcd-snapshot-dir"}, Usage: "where snapshots are (default <data-dir>/server/snapshots)", EnvVars: []string{envName("snapshot-dir")}, Destination: &dir}
	snapDir := func() string {
		if dir != "" {
			return dir
		}
		return d.server().SnapshotDir()
	}
	return &cli.Command{
		Name:  "snapshot",
		Usage: "save, list and delete snapshots of the SQLite datastore (restore: k1s server --cluster-reset --cluster-reset-restore-path=FILE)",
		Subcommands: []*cli.Command{
			{
				Name:  "save",
				Usage: "take a consistent snapshot while the server runs",
				Flags: d.cliFlags(false, dirFlag, &cli.StringFlag{Name: "name", Usage: "snapshot name; the time is appended", Value: snapshot.OnDemand, Destination: &name}),
				Action: func(c *cli.Context) error {
					srv := d.server()
					db := srv.SQLiteDB()
					if srv.HasEtcdData() {
						tls := srv.EtcdTLSDir()
						return fmt.Errorf("%s holds an embedded etcd, which k1s snapshots do not cover yet: take an etcd snapshot with `etcdctl --endpoints https://127.0.0.1:2379 --cacert %s/server-ca.crt --cert %s/client.crt --key %s/client.key snapshot save FILE` on the server", srv.DataDir, tls, tls, tls)
					}
					if _, err := os.Stat(db); err != nil {
						return fmt.Errorf("no SQLite database at %s: with --datastore-endpoint (PostgreSQL, MySQL or etcd) back up with the datastore's own tool (pg_dump, mysqldump, etcdctl snapshot save); otherwise set --data-dir", db)
					}
					info, err := snapshot.Save(c.Context, db, snapDir(), name, time.Now())
					if err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "saved %s (%d bytes, checksum in %s.sha256)\n", info.Path, info.Size, info.Path)
					return nil
				},
			},
			{
				Name:    "ls",
				Aliases: []string{"list"},
				Usage:   "list snapshots",
				Flags:   d.cliFlags(false, dirFlag),
				Action: func(c *cli.Context) error {
					all, err := snapshot.List(snapDir())
					if err != nil {
						return err
					}
					w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
					fmt.Fprintln(w, "NAME\tCREATED\tSIZE\tPATH")
					for _, s := range all {
						fmt.Fprintf(w, "%s\t%s\t%d\t%s\n", s.Name, s.Created.Format(time.RFC3339), s.Size, s.Path)
					}
					return w.Flush()
				},
			},
			{
				Name:      "delete",
				Usage:     "delete snapshots by name",
				ArgsUsage: "NAME...",
				Flags:     d.cliFlags(false, dirFlag),
				Action: func(c *cli.Context) error {
					if c.NArg() == 0 {
						return fmt.Errorf("name the snapshots to delete (see `k1s snapshot ls`)")
					}
					for _, n := range c.Args().Slice() {
						if err := snapshot.Delete(snapDir(), n); err != nil {
							return err
						}
						fmt.Fprintf(c.App.Writer, "deleted %s\n", n)
					}
					return nil
				},
			},
		},
	}
}
