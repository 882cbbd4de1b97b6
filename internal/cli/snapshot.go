package cli

import (
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/k1s-io/k1s/internal/etcd"
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
		Usage: "save, list and delete snapshots of the embedded datastore, SQLite or etcd (restore: k1s server --cluster-reset --cluster-reset-restore-path=FILE)",
		Subcommands: []*cli.Command{
			{
				Name:  "save",
				Usage: "take a consistent snapshot while the server runs (embedded etcd: of this server's member, through etcd's snapshot API)",
				Flags: d.cliFlags(false, dirFlag, &cli.StringFlag{Name: "name", Usage: "snapshot name; the time is appended", Value: snapshot.OnDemand, Destination: &name}),
				Action: func(c *cli.Context) error {
					srv := d.server()
					db := srv.SQLiteDB()
					var info snapshot.Info
					var err error
					if srv.HasEtcdData() {
						info, err = etcd.SaveSnapshot(c.Context, srv, snapDir(), name, time.Now())
					} else {
						if _, err := os.Stat(db); err != nil {
							return fmt.Errorf("no SQLite database at %s and no embedded etcd member at %s: with --datastore-endpoint (PostgreSQL, MySQL or etcd) back up with the datastore's own tool (pg_dump, mysqldump, etcdctl snapshot save); otherwise set --data-dir", db, srv.EtcdDir())
						}
						info, err = snapshot.Save(c.Context, db, snapDir(), name, time.Now())
					}
					if err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "saved %s snapshot %s (%d bytes, checksum in %s.sha256)\n", info.Kind, info.Path, info.Size, info.Path)
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
					fmt.Fprintln(w, "NAME\tKIND\tCREATED\tSIZE\tPATH")
					for _, s := range all {
						fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\n", s.Name, s.Kind, s.Created.Format(time.RFC3339), s.Size, s.Path)
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
