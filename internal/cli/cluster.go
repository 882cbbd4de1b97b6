package cli

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/k1s-io/k1s/internal/cluster"
)

// clusterCommand is `k1s cluster`: throwaway multi-node clusters on this
// host, one network namespace per node (package cluster).
func clusterCommand() *cli.Command {
	return &cli.Command{
		Name:  "cluster",
		Usage: "create and delete throwaway multi-node clusters on this host (one network namespace per node)",
		Subcommands: []*cli.Command{
			clusterCreateCommand(),
			{
				Name: "delete", Usage: "stop a cluster's nodes and remove everything it made", ArgsUsage: "NAME…",
				Action: func(c *cli.Context) error {
					if c.NArg() == 0 {
						return fmt.Errorf("k1s cluster delete: name the cluster(s) to delete (`k1s cluster list` shows them)")
					}
					for _, name := range c.Args().Slice() {
						if err := cluster.Delete(name, c.App.Writer); err != nil {
							return err
						}
					}
					return nil
				},
			},
			{
				Name: "list", Usage: "list the clusters on this host",
				Action: func(c *cli.Context) error {
					infos, err := cluster.List()
					if err != nil {
						return err
					}
					w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
					fmt.Fprintln(w, "NAME\tPHASE\tNODES RUNNING\tSUBNET\tSERVER\tKUBECONFIG")
					for _, i := range infos {
						fmt.Fprintf(w, "%s\t%s\t%d/%d\t%s\t%s\t%s\n", i.Name, i.Phase, i.Running, i.Nodes, i.Subnet, i.Server, i.Kubeconfig)
					}
					return w.Flush()
				},
			},
			{
				Name: "kubeconfig", Usage: "print a cluster's kubeconfig (it works from this host)", ArgsUsage: "NAME",
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return fmt.Errorf("k1s cluster kubeconfig: want one cluster name")
					}
					b, err := cluster.Kubeconfig(c.Args().First())
					if err != nil {
						return err
					}
					_, err = c.App.Writer.Write(b)
					return err
				},
			},
			{
				Name: "load", Usage: "import image archives into every node of a cluster", ArgsUsage: "NAME FILE.tar…",
				Action: func(c *cli.Context) error {
					if c.NArg() < 2 {
						return fmt.Errorf("k1s cluster load: want a cluster name and at least one image archive")
					}
					exe, err := os.Executable()
					if err != nil {
						return err
					}
					return cluster.Load(c.Context, c.Args().First(), exe, c.Args().Tail(), c.App.Writer)
				},
			},
			{
				Name: "exec", Usage: "run a command (default /bin/sh) in a node's network namespace", ArgsUsage: "NAME NODE [-- COMMAND…]",
				SkipFlagParsing: true,
				Action: func(c *cli.Context) error {
					args := c.Args().Slice()
					if len(args) < 2 {
						return fmt.Errorf("k1s cluster exec: want NAME NODE [-- COMMAND…]")
					}
					rest := args[2:]
					if len(rest) > 0 && rest[0] == "--" {
						rest = rest[1:]
					}
					if err := cluster.Preflight(); err != nil {
						return err
					}
					argv, env, err := cluster.ExecArgv(args[0], args[1], rest)
					if err != nil {
						return err
					}
					path, err := exec.LookPath(argv[0])
					if err != nil {
						return err
					}
					return syscall.Exec(path, argv, env)
				},
			},
		},
	}
}

func clusterCreateCommand() *cli.Command {
	return &cli.Command{
		Name:      "create",
		Usage:     "create a cluster: a server and agents, each in a network namespace on one bridge",
		ArgsUsage: "[NAME]",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "agents", Usage: "number of agents (default 0, or the agents in --config)"},
			&cli.IntFlag{Name: "servers", Value: 1, Usage: "number of servers: 1, or 3 for an HA control plane on embedded etcd"},
			&cli.StringFlag{Name: "config", Usage: "cluster.yaml: nodes, server flags, port mappings, subnet"},
			&cli.StringSliceFlag{Name: "image", Usage: "image archive (*.tar, *.tar.zst…) imported on every node (repeatable)"},
			&cli.StringSliceFlag{Name: "port", Aliases: []string{"p"}, Usage: "port mapping HOSTPORT:PORT[/udp][@NODE] from this host to a node (repeatable)"},
			&cli.DurationFlag{Name: "wait", Usage: "wait this long for every node Ready and CoreDNS answering (0: do not wait)"},
			&cli.StringFlag{Name: "kubeconfig", Usage: "kubeconfig to write (default ~/.kube/k1s-NAME.yaml; with --merge ~/.kube/config)"},
			&cli.BoolFlag{Name: "merge", Usage: "merge the cluster into the kubeconfig instead of writing a file of its own"},
			&cli.StringFlag{Name: "airgap-bundle", Usage: "the add-on image bundle (default: k1s-airgap-images-ARCH.tar.zst next to k1s or in /var/lib/k1s/agent/images)"},
		},
		OnUsageError: usageError,
		Action: func(c *cli.Context) error {
			if c.NArg() > 1 {
				// urfave stops at the first argument: flags after NAME are
				// parsed again, with NAME moved to the end.
				if argv, ok := flagsFirst(os.Args, c.Args().Slice()); ok {
					return c.App.RunContext(c.Context, argv)
				}
				return fmt.Errorf("k1s cluster create: one cluster name at most, got %q", c.Args().Slice())
			}
			name := c.Args().First()
			if name == "" {
				name = "k1s"
			}
			cfg := &cluster.Config{}
			if f := c.String("config"); f != "" {
				var err error
				if cfg, err = cluster.LoadConfig(f); err != nil {
					return err
				}
			}
			for _, s := range c.StringSlice("port") {
				p, err := cluster.ParsePort(s)
				if err != nil {
					return err
				}
				cfg.Ports = append(cfg.Ports, p)
			}
			agents := -1
			if c.IsSet("agents") {
				agents = c.Int("agents")
				if agents < 0 {
					return fmt.Errorf("--agents %d: want 0 or more", agents)
				}
			}
			servers := 0
			if c.IsSet("servers") {
				servers = c.Int("servers")
			}
			if err := cfg.Resolve(servers, agents); err != nil {
				return err
			}
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			return cluster.Create(c.Context, cluster.CreateOptions{
				Name: name, Config: cfg, Images: c.StringSlice("image"), Bundle: c.String("airgap-bundle"),
				Kubeconfig: c.String("kubeconfig"), Merge: c.Bool("merge"), Wait: c.Duration("wait"),
				Exe: exe, Out: c.App.Writer,
			})
		},
	}
}

// flagsFirst rebuilds `k1s cluster create NAME FLAGS…` (rest: what urfave
// left as arguments) as `k1s cluster create FLAGS… NAME`; ok is false when
// that would not leave exactly one name.
func flagsFirst(argv, rest []string) ([]string, bool) {
	var flags, names []string
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		switch {
		case !strings.HasPrefix(a, "-"):
			names = append(names, a)
		case strings.Contains(a, "=") || a == "--merge" || a == "-merge" || a == "-h" || a == "--help":
			flags = append(flags, a)
		default:
			flags = append(flags, a)
			if i+1 < len(rest) {
				i++
				flags = append(flags, rest[i])
			}
		}
	}
	if len(names) != 1 || len(flags) == 0 || len(argv) < len(rest) {
		return nil, false
	}
	head := argv[:len(argv)-len(rest)]
	out := append(append(append([]string(nil), head...), flags...), names...)
	return out, true
}
