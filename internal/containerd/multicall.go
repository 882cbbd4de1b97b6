package containerd

import (
	"context"
	"fmt"
	"os"

	"github.com/containerd/containerd/v2/cmd/containerd/command"
	ctrapp "github.com/containerd/containerd/v2/cmd/ctr/app"

	// The plugins containerd is built with: CRI, overlayfs, the runc v2 shim manager, …
	_ "github.com/containerd/containerd/v2/cmd/containerd/builtins"
)

// DaemonMain runs containerd itself, as the `k1s containerd` child. It is
// a separate process because containerd installs its own signal handlers
// and global logger, and must outlive a k1s restart's shutdown order.
func DaemonMain(args []string) int {
	if err := command.App().Run(context.Background(), append([]string{"containerd"}, args...)); err != nil {
		fmt.Fprintln(os.Stderr, "containerd:", err)
		return 1
	}
	return 0
}

// CtrMain runs ctr against k1s's containerd and the Kubernetes namespace
// unless told otherwise.
func CtrMain(args []string) int {
	if os.Getenv("CONTAINERD_ADDRESS") == "" {
		os.Setenv("CONTAINERD_ADDRESS", DefaultSocket)
	}
	if os.Getenv("CONTAINERD_NAMESPACE") == "" {
		os.Setenv("CONTAINERD_NAMESPACE", Namespace)
	}
	if err := ctrapp.New().Run(context.Background(), append([]string{"ctr"}, args...)); err != nil {
		fmt.Fprintln(os.Stderr, "ctr:", err)
		return 1
	}
	return 0
}
