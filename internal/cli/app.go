// Package cli is k1s's command line: it declares every flag once, fills
// config.Server or config.Agent from flags, K1S_* variables and the config
// file, completes and validates it, and only then hands it to package
// server or agent. It also dispatches the multicall tools (kubectl, ctr,
// crictl, containerd) by program name or first argument.
package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/k1s-io/k1s/internal/agent"
	"github.com/k1s-io/k1s/internal/config"
	"github.com/k1s-io/k1s/internal/containerd"
	"github.com/k1s-io/k1s/internal/kubectl"
	"github.com/k1s-io/k1s/internal/nodebin"
	"github.com/k1s-io/k1s/internal/server"
	"github.com/k1s-io/k1s/internal/version"
)

// multicall are the tools k1s also is, by program name or first argument.
var multicall = map[string]func(args []string) int{
	"kubectl":    kubectl.Main,
	"ctr":        containerd.CtrMain,
	"containerd": containerdMain,
	"crictl":     crictlMain,
}

// containerdMain runs the containerd k1s ships (k1s itself runs it as a
// child from the node's bin dir).
func containerdMain(args []string) int {
	err := nodebin.Exec(nodebin.Containerd, args)
	fmt.Fprintln(os.Stderr, "k1s containerd:", err)
	return 1
}

// crictlMain runs the embedded crictl against k1s's containerd unless an
// endpoint is given.
func crictlMain(args []string) int {
	ep := os.Getenv("CONTAINER_RUNTIME_ENDPOINT")
	if ep == "" {
		ep = "unix://" + containerd.DefaultSocket
		os.Setenv("CONTAINER_RUNTIME_ENDPOINT", ep)
	}
	if os.Getenv("IMAGE_SERVICE_ENDPOINT") == "" {
		os.Setenv("IMAGE_SERVICE_ENDPOINT", ep)
	}
	// Without a config file crictl warns on every call; an empty one is valid.
	if _, err := os.Stat("/etc/crictl.yaml"); err != nil && os.Getenv("CRI_CONFIG_FILE") == "" {
		os.Setenv("CRI_CONFIG_FILE", "/dev/null")
	}
	err := nodebin.Exec("crictl", args)
	fmt.Fprintln(os.Stderr, "k1s crictl:", err)
	return 1
}

// Main runs k1s with the given argv and returns the process exit code.
func Main(args []string) int {
	if tool, ok := multicall[filepath.Base(args[0])]; ok {
		return tool(args[1:])
	}
	if len(args) > 1 {
		if tool, ok := multicall[args[1]]; ok {
			return tool(args[2:])
		}
	}
	if err := newApp(os.Stdout, os.Stderr).Run(args); err != nil {
		fmt.Fprintf(os.Stderr, "k1s: %v\n", err)
		return 1
	}
	return 0
}

func newApp(stdout, stderr io.Writer) *cli.App {
	cli.VersionPrinter = func(c *cli.Context) { fmt.Fprintln(c.App.Writer, version.String()) }
	app := &cli.App{
		Name:                   "k1s",
		Usage:                  "a lightweight Kubernetes in one binary",
		Version:                version.Version,
		Writer:                 stdout,
		ErrWriter:              stderr,
		HideHelpCommand:        true,
		UseShortOptionHandling: false,
		// Values such as feature-gates=A=true,B=false must stay whole.
		DisableSliceFlagSeparator: true,
		OnUsageError:              usageError,
		Commands: []*cli.Command{
			serverCommand(),
			agentCommand(),
			tokenCommand(),
			dashboardCommand(),
			certificateCommand(),
			secretsEncryptCommand(),
			snapshotCommand(),
			clusterCommand(),
			{
				Name:            "kubectl",
				Usage:           "run the embedded kubectl (uses the admin kubeconfig when KUBECONFIG is unset)",
				SkipFlagParsing: true,
				// Reached only through `k1s help`; Main dispatches kubectl before urfave.
				Action: func(c *cli.Context) error {
					if code := kubectl.Main(c.Args().Slice()); code != 0 {
						return cli.Exit("", code)
					}
					return nil
				},
			},
		},
	}
	return app
}

func usageError(c *cli.Context, err error, _ bool) error {
	name := "k1s"
	if c.Command != nil && c.Command.Name != "" {
		name = "k1s " + c.Command.Name
	}
	return fmt.Errorf("%v (run '%s --help' to see the valid flags)", err, name)
}

func serverCommand() *cli.Command {
	cfg := &config.Server{}
	return command("server", "run the control plane (and, unless --disable-agent, a node)",
		serverFlags(cfg), &cfg.ConfigFile, cfg, func(ctx context.Context) error { return server.Run(ctx, cfg) })
}

func agentCommand() *cli.Command {
	cfg := &config.Agent{}
	return command("agent", "run a worker node that joins a k1s server (--server URL --token TOKEN)",
		agentFlags(cfg), &cfg.ConfigFile, cfg, func(ctx context.Context) error { return agent.Run(ctx, cfg) })
}

// completer is a config that fills in its defaults and host-derived
// values, then checks itself without changing anything.
type completer interface {
	Complete() error
	Validate() error
}

// command is a k1s command that takes only flags: it loads the config
// (flags, environment, config file), completes and validates it, and runs
// until a signal. run never sees an incomplete or invalid config.
func command(name, usage string, flags *binder, configFile *string, cfg completer, run func(context.Context) error) *cli.Command {
	return &cli.Command{
		Name:         name,
		Usage:        usage,
		Flags:        flags.flags,
		OnUsageError: usageError,
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("unexpected argument %q: k1s %s takes only flags (run 'k1s %s --help')", c.Args().First(), name, name)
			}
			if err := load(c, *configFile, flags); err != nil {
				return err
			}
			if err := cfg.Complete(); err != nil {
				return err
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			ctx, stop := signalContext()
			defer stop()
			return run(ctx)
		},
	}
}

// load completes the config after flag parsing: config file values for
// what flags and environment left unset, then the list flags.
func load(c *cli.Context, configFile string, flags *binder) error {
	if err := applyConfigFile(c, configFile, c.IsSet("config")); err != nil {
		return err
	}
	flags.collect(c)
	return nil
}

// signalContext is cancelled by the first SIGINT/SIGTERM; a second one
// exits at once, for an operator who does not want to wait.
func signalContext() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-ch
		cancel()
		<-ch
		fmt.Fprintln(os.Stderr, "k1s: second signal, exiting without a clean shutdown")
		os.Exit(1)
	}()
	return ctx, func() { signal.Stop(ch); cancel() }
}
